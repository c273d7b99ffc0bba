"""Hub usernames from the identities people arrive with: readable when they can be, never merged, never reserved.

This file is also the hub's module `hubfleet_usernames` (roles/hub installs it beside
jupyterhub_config.py; roles/hub/files/hubfleet_usernames.py links here), where hubfleet's
authenticators import it: Python's standard library only. docs/identity.md is the long form.

    hub_username(identity)    an LMS identity (LTI user_id, sub, ...), exactly as the LMS sent it
    typed_username(login)     a name a person types (shared password, LDAP): case and outer spaces do not count

The mapping, and why it never merges two identities:
- A *plain* identity is its own username: [a-z0-9._@-], a letter or digit at both ends, no "--",
  not reserved, and short enough that every name built from it fits (DockerSpawner escapes all but
  [a-z0-9] to -XX; a Swarm service `jupyter-<escaped>` has at most 63 characters).
- Every other identity becomes STEM--DIGEST. STEM is a readable hint (accents dropped, lowercased,
  anything else turned into "-", cut to fit); DIGEST is 16 base32 characters (80 bits) of SHA-256
  over the identity's exact UTF-8 bytes. Only these names contain "--", so a plain name never
  equals a digested one, and two digested names are equal only if SHA-256 collides on 80 bits
  (2^80 work for a chosen target).
- No username starts with "hubfleet" or is one of RESERVED_NAMES: plain names exclude them, and
  a stem that would start with "hubfleet" gets "u-" in front. The health probe, PROBE_USER, is
  therefore a name no identity maps to.
"""

from __future__ import annotations

import base64
import hashlib
import re
import string
import unicodedata

ADMIN_USER = "admin"  # the operator's own account on every hub
# The identity `status` logs in with as a student would (its account is removed right after; a real
# student of that name is never removed). Not reserved: the login form must take it.
HEALTH_LOGIN = "health-check-login"
PROBE_USER = "hubfleet--probe"  # the health probe: starts with the reserved prefix and is no STEM--DIGEST
RESERVED_PREFIX = "hubfleet"  # hubfleet's own accounts
# Accounts of the hub, its services and the servers' system user: no identity may become one of them.
RESERVED_NAMES = frozenset({ADMIN_USER, "administrator", "root", "jovyan", "jupyterhub", "idle-culler",
                            "nobody", "superuser", "system"})

SEPARATOR = "--"  # only digested names contain it
DIGEST_CHARS = 16  # base32 characters: 80 bits
DIGEST_DOMAIN = b"hubfleet-username-v1\0"  # a changed mapping must change every digest
# "jupyter-" + the escaped name is a Swarm service name: 63 characters at most.
MAX_ESCAPED = 63 - len("jupyter-")
_STEM_MAX_ESCAPED = MAX_ESCAPED - 3 * len(SEPARATOR) - DIGEST_CHARS
_STEM_INPUT = 256  # the stem is a hint: the first characters are plenty
_SAFE = frozenset(string.ascii_lowercase + string.digits)
_PLAIN = re.compile(r"[a-z0-9](?:[a-z0-9._@-]*[a-z0-9])?")
_STEM_OTHER = re.compile(r"[^a-z0-9._@]+")
_DIGESTED = re.compile(r"[a-z0-9](?:[a-z0-9._@-]*[a-z0-9])?--[a-z2-7]{16}")

assert not any(SEPARATOR in name for name in RESERVED_NAMES)


class ReservedName(ValueError):
    """A login name that belongs to the hub itself (the admin, the probe, services)."""


def spawner_escape(name: str) -> str:
    """The name as DockerSpawner 14 writes it into service and volume names (escapism, then lowercased):
    [a-z0-9] kept, every other UTF-8 byte "-" and its hex value (unpadded: a newline is -a)."""
    return "".join(c if c in _SAFE else "".join(f"-{b:x}" for b in c.encode("utf-8", "surrogatepass"))
                   for c in name)


def spawner_unescape(escaped: str) -> str | None:
    """The username a volume or service name was escaped from, or None when it cannot be told for sure."""
    raw = re.sub(rb"-([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), escaped.encode("ascii", "replace"))
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return name if spawner_escape(name) == escaped else None


def escaped_length(name: str) -> int:
    return len(spawner_escape(name))


def is_reserved(name: str) -> bool:
    """The hub's own names: the admin, the probe, service and system accounts, anything starting with `hubfleet`."""
    return name in RESERVED_NAMES or name.startswith(RESERVED_PREFIX)


def is_plain(identity: str) -> bool:
    """An identity that is its own username."""
    return (_PLAIN.fullmatch(identity) is not None and SEPARATOR not in identity and not is_reserved(identity)
            and escaped_length(identity) <= MAX_ESCAPED)


def is_digested(name: str) -> bool:
    """A STEM--DIGEST name (what a non-plain identity becomes)."""
    return _DIGESTED.fullmatch(name) is not None


def digest(identity: str) -> str:
    raw = hashlib.sha256(DIGEST_DOMAIN + identity.encode("utf-8", "surrogatepass")).digest()
    return base64.b32encode(raw[: DIGEST_CHARS * 5 // 8]).decode("ascii").lower()


def stem(identity: str) -> str:
    """A readable ASCII hint of the identity: not unique (the digest is), never empty, never reserved."""
    text = unicodedata.normalize("NFKD", identity[:_STEM_INPUT])
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = _STEM_OTHER.sub("-", text).strip("-._@")  # one "-" per run: the stem never holds "--"
    kept, used = [], 0
    for c in text:
        cost = 1 if c in _SAFE else 3
        if used + cost > _STEM_MAX_ESCAPED:
            break
        kept.append(c)
        used += cost
    text = "".join(kept).rstrip("-._@") or "u"
    return "u-" + text if text.startswith(RESERVED_PREFIX) else text


def hub_username(identity: str) -> str:
    """The hub username of an identity, exactly as it was sent (LTI): a plain identity itself, else STEM--DIGEST."""
    if not isinstance(identity, str) or not identity:
        raise ValueError("an identity is a non-empty string")
    if is_plain(identity):
        return identity
    name = f"{stem(identity)}{SEPARATOR}{digest(identity)}"
    assert escaped_length(name) <= MAX_ESCAPED and not is_reserved(name)
    return name


def typed_username(login: str) -> str:
    """The hub username of a name a person typed (shared password, LDAP): case and outer spaces do not count.

    Raises ReservedName for the hub's own names (`admin` included: the caller decides whether
    the admin's password came with it).
    """
    folded = login.strip().lower()
    if not folded:
        raise ValueError("the name is empty")
    if is_reserved(folded):
        raise ReservedName(f"{folded!r} is reserved for the hub itself")
    return hub_username(folded)
