"""Authenticator kinds: the only place that maps `authenticator.kind` to what it means.

    kind_of(course).role_variables(course)    # inventory
    kind_of(course).ensure_secrets(store, c)  # secrets the role needs
    kind_of(course).login_hint(course)        # what `create` prints
    KINDS["lti13"].from_form(values)          # the portal's form
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hubfleet.authenticators.base import ADMIN_USER, AuthKind
from hubfleet.authenticators.ldap import LdapKind
from hubfleet.authenticators.lti import Lti11Kind, Lti13Kind
from hubfleet.authenticators.shared_password import SharedPasswordKind

if TYPE_CHECKING:
    from hubfleet.descriptor import Course

KINDS: dict[str, AuthKind] = {k.kind: k for k in (SharedPasswordKind(), Lti11Kind(), Lti13Kind(), LdapKind())}


def kind_of(course: "Course") -> AuthKind:
    """The class of the course's authenticator."""
    return KINDS[course.authenticator.kind]


def secret_labels() -> dict[str, str]:
    """Every kind's secrets as `credentials` names them."""
    return {name: label for kind in KINDS.values() for name, label in kind.secret_labels.items()}


__all__ = ["ADMIN_USER", "KINDS", "AuthKind", "kind_of", "secret_labels"]
