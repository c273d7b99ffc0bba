"""Signed-in sessions kept on the server: the cookie carries a random token, the database its hash.

Flask's own session is a signed cookie that stays valid until it expires, even after sign-out; a
copy of it would sign its holder in. Here sign-out deletes the token's row, so every copy of the
cookie is worthless from that moment, and a password change signs the account out everywhere.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from flask import session

from hubfleet.portal.models import PortalStore, User
from hubfleet.state import utcnow

TOKEN_KEY = "sid"
LIFETIME = dt.timedelta(hours=12)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(db: PortalStore, user: User) -> None:
    """A new session for `user`: nothing from the session before sign-in is kept."""
    session.clear()
    token = secrets.token_urlsafe(32)
    db.add_session(_hash(token), user.id)
    db.forget_sessions_before(utcnow() - LIFETIME)
    session.permanent = True
    session[TOKEN_KEY] = token


def user_of(db: PortalStore) -> User | None:
    """The signed-in user of this request's session, if the server still knows the session."""
    token = session.get(TOKEN_KEY)
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return None
    return db.session_user(_hash(token), utcnow() - LIFETIME)


def end(db: PortalStore) -> None:
    """Sign out: the session's row goes, so copies of its cookie sign nobody in."""
    token = session.get(TOKEN_KEY)
    if isinstance(token, str):
        db.end_session(_hash(token))
    session.clear()
