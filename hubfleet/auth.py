"""Authenticators: what each kind needs from the state store (secrets) and gives the roles (variables)."""

from __future__ import annotations

from hubfleet.descriptor import Course
from hubfleet.errors import HubfleetError
from hubfleet.state import StateStore

ADMIN_USER = "admin"


def role_variables(course: Course) -> dict:
    """Non-secret variables of the course's authenticator, for the inventory."""
    auth = course.authenticator
    origin = getattr(auth, "lms_origin", None)
    return {
        "hub_authenticator": auth.kind,
        "hub_admin_users": sorted({ADMIN_USER, *getattr(auth, "admin_users", [])}),
        "proxy_frame_ancestors": [origin] if origin else [],
    }


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
    return secrets
