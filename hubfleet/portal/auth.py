"""Who is signing in: local accounts (argon2 hashes), the institution's LDAP, and the sign-in throttle."""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hubfleet.descriptor import Ldap
from hubfleet.portal.config import LoginLimits
from hubfleet.portal.models import TEACHER, PortalStore, User
from hubfleet.state import utcnow

log = logging.getLogger("hubfleet.portal")

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")  # what may go into an LDAP DN template
MIN_PASSWORD = 12

_hasher = PasswordHasher()
# Verifying against this when the account does not exist takes as long as a real check.
_DUMMY_HASH = _hasher.hash("hubfleet-no-such-account")

LdapBind = Callable[[Ldap, str, str], bool]  # (settings, username, password) -> the directory accepted it


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_new_password(password: str) -> str | None:
    """Why this password cannot be used, or None."""
    if len(password) < MIN_PASSWORD:
        return f"the password is {len(password)} characters — use at least {MIN_PASSWORD}"
    return None


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def ldap3_bind(settings: Ldap, username: str, password: str) -> bool:
    """Direct bind with each template in turn (the ldap3 package, imported only when LDAP is configured)."""
    try:
        import ldap3
        from ldap3.core.exceptions import LDAPException
    except ImportError:
        log.error("LDAP sign-in is configured but the ldap3 package is missing: pip install ldap3")
        return False
    server = ldap3.Server(settings.server_uri, use_ssl=settings.server_uri.startswith("ldaps://"), connect_timeout=10)
    for template in settings.bind_dn_template:
        dn = template.format(username=ldap3.utils.dn.escape_rdn(username))
        try:
            conn = ldap3.Connection(server, user=dn, password=password, receive_timeout=10)
            if settings.starttls:
                conn.open()
                conn.start_tls()
            if conn.bind():
                conn.unbind()
                return True
        except LDAPException as exc:
            log.warning("LDAP bind for a user failed: %s", type(exc).__name__)
    return False


@dataclass
class Throttle:
    """Failed sign-ins, counted per account and per address, in the database (shared by all processes)."""

    store: PortalStore
    limits: LoginLimits

    def _since(self) -> dt.datetime:
        return utcnow() - dt.timedelta(seconds=self.limits.window_seconds)

    def blocked(self, login: str, address: str) -> str | None:
        """Why sign-in is paused for this account or address, or None."""
        since = self._since()
        minutes = max(1, self.limits.window_seconds // 60)
        if self.store.failures_since(f"account:{login}", since) >= self.limits.per_account:
            return (f"Too many failed sign-ins for this account. Sign-in is paused for up to {minutes} minutes; "
                    "wait, or ask an operator to reset your password.")
        if self.store.failures_since(f"ip:{address}", since) >= self.limits.per_ip:
            return (f"Too many failed sign-ins from your network address. Sign-in is paused for up to {minutes} "
                    "minutes; wait and try again.")
        return None

    def failed(self, login: str, address: str) -> None:
        self.store.record_failure(f"account:{login}", f"ip:{address}")
        self.store.forget_failures_before(self._since())

    def succeeded(self, login: str) -> None:
        self.store.clear_failures(f"account:{login}")


@dataclass
class Authenticator:
    store: PortalStore
    ldap: Ldap | None = None
    ldap_mail_domain: str | None = None
    ldap_bind: LdapBind = ldap3_bind

    def authenticate(self, login: str, password: str) -> User | None:
        """The user these credentials belong to, or None; directory users become teachers on first sign-in."""
        login = login.strip().lower()
        user = self.store.user_by_login(login)
        if user is not None and user.source == "local":
            return user if verify_password(user.password_hash, password) else None
        if self.ldap is None or not USERNAME_RE.match(login) or not password:
            verify_password(None, password)  # same time as a real check
            return None
        if not self.ldap_bind(self.ldap, login, password):
            return None
        if user is None:
            user = self.store.ensure_user(login, email=f"{login}@{self.ldap_mail_domain}", role=TEACHER,
                                          source="ldap")
        return user
