"""Authenticators: what each kind needs from the state store (secrets) and gives the roles (variables).

shared-password is configured by roles/hub itself; lti11 and lti13 by roles/lti; ldap by roles/ldap.
Each role reads only variables that start with its name; secrets reach it as extra variables.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from urllib.parse import urlsplit

from hubfleet.descriptor import Course, Ldap, Lti11, Lti13
from hubfleet.errors import HubfleetError
from hubfleet.state import StateStore

ADMIN_USER = "admin"
LDAP_DEFAULT_PORTS = {"ldap": 389, "ldaps": 636}
LTI11_KEY_SECRET = "lti11-key"
LTI11_SECRET_SECRET = "lti11-secret"
LTI13_TOOL_KEY_SECRET = "lti13-tool-key"
LDAP_BIND_PASSWORD_SECRET = "ldap-bind-password"


def role_variables(course: Course) -> dict:
    """Non-secret variables of the course's authenticator, for the inventory."""
    auth = course.authenticator
    origin = getattr(auth, "lms_origin", None)
    variables = {
        "hub_authenticator": auth.kind,
        "hub_admin_users": sorted({ADMIN_USER, *getattr(auth, "admin_users", [])}),
        "proxy_frame_ancestors": [origin] if origin else [],
    }
    if isinstance(auth, Lti11):
        variables.update(_lti_common(course, origin), lti_version="1.1",
                         lti_consumer_key=consumer_key(course), lti_username_key=auth.username_key)
    elif isinstance(auth, Lti13):
        variables.update(_lti_common(course, origin), lti_version="1.3", lti_issuer=auth.issuer,
                         lti_client_ids=[auth.client_id], lti_deployment_ids=list(auth.deployment_ids),
                         lti_authorize_url=auth.authorize_url, lti_jwks_url=auth.jwks_url,
                         lti_username_key=auth.username_key)
    elif isinstance(auth, Ldap):
        variables.update(_ldap_variables(auth))
    return variables


def _lti_common(course: Course, origin: str | None) -> dict:
    return {
        "lti_frame_ancestors": [origin] if origin else [],
        # Browsers only keep SameSite=None cookies that are also Secure, which needs HTTPS.
        "lti_secure_cookies": course.tls is not None,
    }


def _ldap_variables(auth: Ldap) -> dict:
    parts = urlsplit(auth.server_uri)
    scheme = parts.scheme
    if scheme == "ldaps":
        strategy = "on_connect"
    elif auth.starttls:
        strategy = "before_bind"
    else:
        strategy = "insecure"  # the descriptor allows this only towards a loopback address
    variables = {
        "ldap_server_address": parts.hostname,
        "ldap_server_port": parts.port or LDAP_DEFAULT_PORTS[scheme],
        "ldap_tls_strategy": strategy,
        "ldap_bind_dn_templates": list(auth.bind_dn_template),
        "ldap_allowed_groups": list(auth.allowed_groups),
        "ldap_lookup_dn": auth.search is not None,
    }
    if auth.search is not None:
        variables.update(ldap_search_user=auth.search.bind_dn, ldap_search_base=auth.search.base_dn,
                         ldap_user_attribute=auth.search.user_attribute)
    return variables


def consumer_key(course: Course) -> str:
    """The LTI 1.1 consumer key: the descriptor's, or the course name."""
    auth = course.authenticator
    return (auth.consumer_key if isinstance(auth, Lti11) else None) or course.name


def ensure_secrets(store: StateStore, course: Course) -> dict:
    """The authenticator's secrets as role variables, created once and kept across re-runs."""
    auth = course.authenticator
    secrets: dict[str, str] = {}
    if auth.kind == "shared-password":
        password = store.ensure_secret(course.name, "shared-password", auth.password, nbytes=12)
        if len(password) < auth.min_length:
            raise HubfleetError(f"authenticator.password: the shared password is {len(password)} characters, "
                                f"shorter than min_length {auth.min_length}",
                                hint="give a longer password or lower authenticator.min_length")
        secrets["hub_shared_password"] = password
    elif isinstance(auth, Lti11):
        secrets["lti_consumer_secret"] = _ensure_lti11(store, course, auth)
    elif isinstance(auth, Lti13):
        # Public, but derived from a secret the inventory builder never sees: it travels with the secrets.
        secrets["lti_tool_jwks"] = json.dumps(ensure_tool_keyset(store, course.name), sort_keys=True)
    elif isinstance(auth, Ldap) and auth.search is not None:
        if auth.search.bind_password == "generate":
            raise HubfleetError("authenticator.search.bind_password: `generate` cannot work, the directory "
                                "already has this account's password",
                                hint="write env:VAR or file:/path with the password the directory's administrators gave")
        secrets["ldap_search_password"] = store.ensure_secret(course.name, LDAP_BIND_PASSWORD_SECRET,
                                                              auth.search.bind_password)
    return secrets


def _ensure_lti11(store: StateStore, course: Course, auth: Lti11) -> str:
    key = consumer_key(course)
    if ":" in key or not re.fullmatch(r"[\x21-\x7e]+", key):
        raise HubfleetError(f"authenticator.consumer_key: {key!r} has a colon, a space or a non-ASCII character",
                            hint="use letters, digits, dots and hyphens: edX splits its LTI passport on colons")
    secret = store.ensure_secret(course.name, LTI11_SECRET_SECRET, auth.secret, nbytes=24)
    if len(secret) < 16:
        raise HubfleetError(f"authenticator.secret: the consumer secret is {len(secret)} characters; "
                            "anyone could guess it", hint="give 16 characters or more, or write `generate`")
    if store.get_secret(course.name, LTI11_KEY_SECRET) != key:
        store.set_secret(course.name, LTI11_KEY_SECRET, key)  # shown by `credentials` beside the secret
    return secret


def ensure_tool_keyset(store: StateStore, name: str) -> dict:
    """The tool's own RSA key for LTI 1.3 (created once); returns only its public JWKS.

    The platform asks for a tool keyset URL at registration; the private half stays in the state
    store for services that sign requests to the platform (grades), none of which run yet.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = store.get_secret(name, LTI13_TOOL_KEY_SECRET)
    if pem is None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        store.set_secret(name, LTI13_TOOL_KEY_SECRET, pem)
    public = serialization.load_pem_private_key(pem.encode(), password=None).public_key()
    numbers = public.public_numbers()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": hashlib.sha256(der).hexdigest()[:16],
                      "n": _b64_uint(numbers.n), "e": _b64_uint(numbers.e)}]}


def _b64_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
