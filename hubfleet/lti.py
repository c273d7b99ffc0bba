"""What an LMS administrator types in to add a course's hub as an LTI tool.

`lti_config(store, name)` is the one source: `hubfleet lti-config` prints it and the portal shows
it. It holds the LTI 1.1 consumer secret, so it goes only where secrets may go.
"""

from __future__ import annotations

import datetime as dt

from hubfleet.auth import LTI11_SECRET_SECRET, consumer_key
from hubfleet.descriptor import Lti11, Lti13, parse_course
from hubfleet.errors import HubfleetError
from hubfleet.state import StateStore

LAUNCH_PATH_11 = "/hub/lti/launch"
LOGIN_PATH_13 = "/hub/lti13/oauth_login"
CALLBACK_PATH_13 = "/hub/lti13/oauth_callback"
KEYSET_PATH_13 = "/hub/lti13/jwks"
TOOL_PATH_13 = "/hub/user-redirect/lab"  # the student's JupyterLab, started on the way if need be
NOTEBOOK_EXAMPLE = "/hub/user-redirect/lab/tree/intro.ipynb"


def lti_config(store: StateStore, name: str) -> dict[str, str]:
    """The LMS-side settings of course `name`, as one flat mapping of strings (JSON and the portal).

    Raises HubfleetError when the course does not log in by LTI or has no URL yet.
    """
    instance = store.get(name)
    course = parse_course(instance.descriptor, source="recorded descriptor", today=dt.date.min)
    auth = course.authenticator
    if not isinstance(auth, (Lti11, Lti13)):
        raise HubfleetError(f"course {name!r} logs in with {auth.kind}, not LTI",
                            hint="set authenticator.kind to lti11 or lti13 in its descriptor and run create again")
    url = instance.outputs.get("url")
    if not url:
        raise HubfleetError(f"course {name!r} has no URL yet", hint=f"run `hubfleet create` for {name} first")
    url = url.rstrip("/")
    if isinstance(auth, Lti11):
        secret = store.get_secret(name, LTI11_SECRET_SECRET)
        if not secret:
            raise HubfleetError(f"course {name!r} has no LTI consumer secret yet",
                                hint=f"run `hubfleet create` for {name}: it creates the secret")
        key = consumer_key(course)
        return {
            "lti_version": "1.1",
            "launch_url": url + LAUNCH_PATH_11,
            "consumer_key": key,
            "consumer_secret": secret,
            "edx_lti_id": name,
            "edx_lti_passport": f"{name}:{key}:{secret}",
            "custom_parameter_to_open_a_notebook": f"next={NOTEBOOK_EXAMPLE}",
            "username_from": auth.username_key,
            "lms_origin": auth.lms_origin or "",
        }
    return {
        "lti_version": "1.3",
        "tool_url": url + TOOL_PATH_13,
        "initiate_login_url": url + LOGIN_PATH_13,
        "redirection_uris": url + CALLBACK_PATH_13,
        "public_keyset_url": url + KEYSET_PATH_13,
        "tool_url_to_open_a_notebook": url + NOTEBOOK_EXAMPLE,
        "platform_issuer": auth.issuer,
        "client_id": auth.client_id,
        "deployment_ids": ", ".join(auth.deployment_ids) or "(any)",
        "platform_authorize_url": auth.authorize_url,
        "platform_jwks_url": auth.jwks_url,
        "username_from": auth.username_key,
        "lms_origin": auth.lms_origin or "",
    }
