"""What every authenticator kind answers: one class per kind, asked by the CLI, the portal and the inventory.

Nobody outside hubfleet/authenticators/ branches on `authenticator.kind`: they look the kind up in
the registry (`hubfleet.authenticators.kind_of`) and ask it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from hubfleet.errors import FieldProblem, InvalidInput
from hubfleet.usernames import ADMIN_USER, ReservedName, typed_username

if TYPE_CHECKING:
    from hubfleet.descriptor import Course
    from hubfleet.state import Instance, StateStore


class AuthKind:
    """One way students log in: its descriptor model, role, variables, secrets, hints and form."""

    kind: ClassVar[str]  # the descriptor's authenticator.kind
    choice: ClassVar[str]  # how the portal's form offers it
    role: ClassVar[str]  # the Ansible role that writes its settings into the hub's conf.d
    secret_labels: ClassVar[dict[str, str]] = {}  # state-store secret name -> what `credentials` calls it
    form_prefix: ClassVar[str] = ""  # the portal form's fields of this kind start with `<prefix>_`
    from_lms: ClassVar[bool] = False  # students arrive by launches from an LMS (which needs the tool's settings)

    # --- the hub ---------------------------------------------------------------------------

    def role_variables(self, course: "Course") -> dict:
        """Non-secret variables for the inventory: the common ones, then the kind's own role's."""
        auth = course.authenticator
        origin = getattr(auth, "lms_origin", None)
        return {
            "hub_auth_role": self.role,
            "hub_admin_users": self.hub_admin_users(getattr(auth, "admin_users", [])),
            "proxy_frame_ancestors": [origin] if origin else [],
            **self.own_variables(course),
        }

    def own_variables(self, course: "Course") -> dict:
        return {}

    # --- who is who on the hub (hubfleet/usernames.py, docs/identity.md) ------------------------

    def hub_username(self, identity: str) -> str:
        """The hub username this kind's authenticator gives `identity` (on the hub, the same module decides).

        Typed names by default (shared password, LDAP): case and outer spaces do not count; the
        hub's own names raise ReservedName.
        """
        return typed_username(identity)

    def hub_admin_users(self, admin_users: list[str]) -> list[str]:
        """The operator's `admin` and the descriptor's admin users as hub usernames."""
        names, problems = {ADMIN_USER}, []
        for index, identity in enumerate(admin_users):
            if identity == ADMIN_USER:
                continue
            try:
                names.add(self.hub_username(identity))
            except ReservedName:
                problems.append(FieldProblem(f"authenticator.admin_users[{index}]",
                                             f"{identity!r} is reserved for the hub itself — name a person's account"))
        if problems:
            raise InvalidInput(problems, source="descriptor")
        return sorted(names)

    def ensure_secrets(self, store: "StateStore", course: "Course") -> dict:
        """The kind's secrets as role variables, created once and kept across re-runs."""
        return {}

    # --- grading (roles/grading) ------------------------------------------------------------

    def grading_variables(self, course: "Course") -> dict:
        """roles/grading's variables that depend on how people log in: where grades go (none here)."""
        return {"grading_lms": "none"}

    def grading_secrets(self, store: "StateStore", course: "Course") -> dict:
        """Secrets the grades service needs to send scores to the LMS (none here)."""
        return {}

    # --- people ----------------------------------------------------------------------------

    def login_hints(self, course: "Course") -> list[str]:
        """Lines for the operator after `create`: how students (and the operator) get in."""
        raise NotImplementedError

    def teacher_hint(self) -> str:
        """One sentence for the teacher's email: how students get in."""
        raise NotImplementedError

    # Why `student_login` cannot be tried for this kind (shown by `status`), when it cannot.
    student_login_note = "hubfleet cannot log in as a student of this kind"

    def student_login(self, store: "StateStore", course: "Course", url: str, session: Any) -> str | None:
        """Log in to the hub at `url` as a student would, into `session` (a requests.Session); the hub
        username that became, or None when hubfleet cannot try it (`student_login_note` says why).
        Raises HubfleetError (or requests' errors) when the hub refuses."""
        return None

    def admin_hint(self, course: "Course") -> str:
        """One sentence for the teacher's page: how the hub's admins (the descriptor's admin_users) log in."""
        return ""

    def lms_settings(self, store: "StateStore", instance: "Instance", course: "Course") -> dict[str, str] | None:
        """What an LMS administrator types in to add the hub as a tool; None for kinds with no LMS."""
        return None

    def teacher_secrets(self, store: "StateStore", name: str) -> dict[str, str]:
        """Secrets the teacher's page shows (the shared password); none for most kinds."""
        return {}

    # --- the portal's request form -----------------------------------------------------------

    def form_fields(self) -> tuple[str, ...]:
        """Names of the form's text fields that belong to this kind."""
        return ()

    def from_form(self, values: dict[str, str]) -> dict[str, Any]:
        """The descriptor's `authenticator` mapping from the form's values."""
        return {"kind": self.kind}

    def form_field(self, key: str, values: dict[str, str]) -> str | None:
        """The form field a problem with `authenticator.<key>` belongs beside (None: the kind chooser)."""
        if key == "admin_users" and "admin_users" in values:
            return "admin_users"
        candidate = f"{self.form_prefix}_{key}"
        return candidate if candidate in values else None
