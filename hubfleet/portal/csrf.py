"""CSRF: one random token per session, in every form, checked on every state-changing request."""

from __future__ import annotations

import hmac
import secrets

from flask import abort, request, session

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def rotate_csrf_token() -> str:
    """A fresh token at sign-in, so a token seen before it is worthless after."""
    session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> None:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    expected = session.get("csrf")
    given = request.form.get(FIELD) or request.headers.get(HEADER) or ""
    if not expected or not hmac.compare_digest(str(expected), str(given)):
        abort(403, description="This form has expired or did not come from the portal. "
                               "Reload the page and send it again (cookies must be on).")
