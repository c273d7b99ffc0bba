"""OAuth 1.0a HMAC-SHA1 form signing (RFC 5849), as an LTI 1.1 consumer signs a launch.

hubfleet signs one kind of request with it: the health check's launch into an LTI 1.1 course, made
the way edX and Moodle make students' launches, with the course's own consumer key and secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from urllib.parse import quote, urlsplit, urlunsplit


def _encode(text: str) -> str:
    return quote(text, safe="-._~")  # RFC 5849 3.6: only the unreserved characters stay


def base_url(url: str) -> str:
    """The URL as the signature base string takes it (3.4.1.2): lower-case scheme and host, no query,
    no default port."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port
    netloc = host if port is None or (parts.scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", "", ""))


def sign_form(url: str, key: str, secret: str, fields: dict[str, str], *, nonce: str | None = None,
              timestamp: int | None = None) -> dict[str, str]:
    """`fields` with the oauth_* fields and their signature, ready to POST as a form."""
    form = {**fields, "oauth_consumer_key": key, "oauth_signature_method": "HMAC-SHA1",
            "oauth_timestamp": str(timestamp if timestamp is not None else int(time.time())),
            "oauth_nonce": nonce or secrets.token_hex(16), "oauth_version": "1.0"}
    pairs = sorted((_encode(k), _encode(v)) for k, v in form.items())
    normalized = "&".join(f"{k}={v}" for k, v in pairs)
    base = "&".join(("POST", _encode(base_url(url)), _encode(normalized)))
    digest = hmac.new(f"{_encode(secret)}&".encode(), base.encode(), hashlib.sha1).digest()
    return {**form, "oauth_signature": base64.b64encode(digest).decode()}
