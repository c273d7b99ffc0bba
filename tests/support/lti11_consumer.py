"""LTI 1.1 launches signed the way edX and Moodle sign them (OAuth 1.0a, HMAC-SHA1 over the form).

edX builds the launch with oauthlib's Client in header mode and copies the Authorization header's
parameters into the form it auto-submits; Moodle signs the form parameters themselves. Both
end as one application/x-www-form-urlencoded POST carrying oauth_* fields.
"""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qsl, unquote, urlencode

from oauthlib.oauth1 import SIGNATURE_HMAC, SIGNATURE_TYPE_AUTH_HEADER, SIGNATURE_TYPE_BODY, Client
from oauthlib.oauth1.rfc5849 import utils

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def launch_fields(user_id: str | None, **extra: str) -> dict[str, str]:
    """The fields an LMS sends for a student opening an LTI activity (LTI 1.1 basic launch)."""
    fields = {
        "lti_message_type": "basic-lti-launch-request",
        "lti_version": "LTI-1p0",
        "resource_link_id": "block-v1:hubfleet+lti+2027+type@lti+block@intro",
        "context_id": "course-v1:hubfleet+lti+2027",
        "context_title": "Understanding Queues",
        "roles": "Student",
        "launch_presentation_return_url": "",
        "lis_person_sourcedid": "student-sourcedid",
        "oauth_callback": "about:blank",
    }
    if user_id is not None:
        fields["user_id"] = user_id
    fields.update(extra)
    return fields


def sign(url: str, key: str, secret: str, fields: dict[str, str], *, style: str = "moodle",
         nonce: str | None = None, timestamp: int | None = None) -> dict[str, str]:
    """The launch form, signed for `url` as edX (style="edx") or Moodle (style="moodle") would."""
    nonce = nonce or uuid.uuid4().hex
    timestamp = str(timestamp if timestamp is not None else int(time.time()))
    if style == "moodle":
        client = Client(key, client_secret=secret, signature_method=SIGNATURE_HMAC,
                        signature_type=SIGNATURE_TYPE_BODY, nonce=nonce, timestamp=timestamp)
        _, _, body = client.sign(url, http_method="POST", body=urlencode(fields), headers=FORM)
        return dict(parse_qsl(body, keep_blank_values=True))
    if style == "edx":
        client = Client(key, client_secret=secret, signature_method=SIGNATURE_HMAC,
                        signature_type=SIGNATURE_TYPE_AUTH_HEADER, nonce=nonce, timestamp=timestamp)
        _, headers, _ = client.sign(url, http_method="POST", body=fields, headers=FORM)
        oauth = dict(utils.parse_authorization_header(headers["Authorization"]))
        oauth.pop("realm", None)
        return {**fields, **{k: unquote(v) for k, v in oauth.items()}}
    raise ValueError(f"unknown signing style {style!r}")

