"""Who is signing in: local accounts (argon2 hashes), the institution's LDAP, and the sign-in throttle."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hubfleet.descriptor import Ldap
from hubfleet.portal.config import LoginLimits
from hubfleet.portal.models import TEACHER, PortalStore, User
from hubfleet.state import utcnow

log = logging.getLogger("hubfleet.portal")

EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")  # whole match: `$` would let a trailing newline in
USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # what may go into an LDAP DN template (whole match)
MIN_PASSWORD = 12

_hasher = PasswordHasher()
# Verifying against this when the account does not exist takes as long as a real check.
_DUMMY_HASH = _hasher.hash("hubfleet-no-such-account")

# (settings, username, password, CA file or None for the system's) -> the directory accepted the password
LdapBind = Callable[[Ldap, str, str, "Path | None"], bool]


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


def ldap3_bind(settings: Ldap, username: str, password: str, ca_file: Path | None = None) -> bool:
    """Direct bind with each template in turn, over TLS whose certificate is verified (the ldap3 package,
    imported only when LDAP is configured).

    The directory must prove its name with a certificate from `ca_file` (or the system's CAs): a
    password never goes to a server that only claims to be the directory.
    """
    try:
        import ldap3
        from ldap3.core.exceptions import LDAPException
    except ImportError:
        log.error("LDAP sign-in is configured but the ldap3 package is missing: pip install ldap3")
        return False
    parts = urlsplit(settings.server_uri)
    host, secure = parts.hostname or "", parts.scheme == "ldaps"
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, version=ssl.PROTOCOL_TLS_CLIENT,
                    ca_certs_file=str(ca_file) if ca_file else None, sni=None if _is_ip(host) else host)
    server = ldap3.Server(host, port=parts.port, use_ssl=secure, tls=tls, connect_timeout=10)
    for template in settings.bind_dn_template:
        dn = template.format(username=ldap3.utils.dn.escape_rdn(username))
        try:
            conn = ldap3.Connection(server, user=dn, password=password, receive_timeout=10, raise_exceptions=False)
            if settings.starttls:
                conn.open()
                conn.start_tls()  # raises unless the certificate verifies and names the server
            if conn.bind():
                conn.unbind()
                return True
        except LDAPException as exc:
            # The reason's kind only (a certificate problem, a timeout): never the DN or the password.
            log.warning("LDAP bind for a user failed: %s", type(exc).__name__)
    return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def source_of(address: str) -> str:
    """Where a sign-in comes from, as the throttle counts it: an IPv4 address, or an IPv6 /64 (one site's
    network: an attacker there has millions of addresses)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass
class Throttle:
    """Failed sign-ins, counted in the database (shared by all processes) per account *and* source, and per source.

    Never per account alone: then anyone could lock a teacher out from anywhere by typing wrong
    passwords for them. Guessing one account stays slow (argon2, and `per_account` tries per source).
    """

    store: PortalStore
    limits: LoginLimits

    def _since(self) -> dt.datetime:
        return utcnow() - dt.timedelta(seconds=self.limits.window_seconds)

    def blocked(self, login: str, address: str) -> str | None:
        """Why sign-in is paused for this account from this address, or for this address, or None."""
        since, source = self._since(), source_of(address)
        minutes = max(1, self.limits.window_seconds // 60)
        if self.store.failures_since(f"account:{login[:200]}|{source}", since) >= self.limits.per_account:
            return (f"Too many failed sign-ins for this account from your network address. Sign-in is paused "
                    f"for up to {minutes} minutes; wait, or ask an operator to reset your password.")
        if self.store.failures_since(f"ip:{source}", since) >= self.limits.per_ip:
            return (f"Too many failed sign-ins from your network address. Sign-in is paused for up to {minutes} "
                    "minutes; wait and try again.")
        return None

    def failed(self, login: str, address: str) -> None:
        source = source_of(address)
        self.store.record_failure(f"account:{login[:200]}|{source}", f"ip:{source}")
        self.store.forget_failures_before(self._since())

    def succeeded(self, login: str, address: str) -> None:
        self.store.clear_failures(f"account:{login[:200]}|{source_of(address)}")


@dataclass
class Authenticator:
    store: PortalStore
    ldap: Ldap | None = None
    ldap_mail_domain: str | None = None
    ldap_bind: LdapBind = ldap3_bind
    ldap_ca_file: Path | None = None

    def authenticate(self, login: str, password: str) -> User | None:
        """The user these credentials belong to, or None; directory users become teachers on first sign-in."""
        login = login.strip().lower()
        user = self.store.user_by_login(login)
        if user is not None and user.source == "local":
            return user if verify_password(user.password_hash, password) else None
        if self.ldap is None or not USERNAME_RE.fullmatch(login) or not password:
            verify_password(None, password)  # same time as a real check
            return None
        if not self.ldap_bind(self.ldap, login, password, self.ldap_ca_file):
            return None
        if user is None:
            user = self.store.ensure_user(login, email=f"{login}@{self.ldap_mail_domain}", role=TEACHER,
                                          source="ldap")
        return user
