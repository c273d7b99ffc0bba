"""One password for everybody (workshops): JupyterHub's SharedPasswordAuthenticator, by roles/shared_password."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hubfleet.authenticators.base import ADMIN_USER, AuthKind
from hubfleet.authenticators.form import lines, put
from hubfleet.errors import HubfleetError
from hubfleet.jupyter import login_with_password
from hubfleet.usernames import HEALTH_LOGIN, typed_username

if TYPE_CHECKING:
    from hubfleet.descriptor import Course
    from hubfleet.state import StateStore

SHARED_PASSWORD_SECRET = "shared-password"
ADMIN_PASSWORD_SECRET = "admin-password"


class SharedPasswordKind(AuthKind):
    kind = "shared-password"
    choice = "One shared password (workshops)"
    role = "shared_password"
    secret_labels = {SHARED_PASSWORD_SECRET: "shared password (students)", ADMIN_PASSWORD_SECRET: "admin password"}
    form_prefix = "shared"

    def ensure_secrets(self, store: "StateStore", course: "Course") -> dict:
        auth = course.authenticator
        password = store.ensure_secret(course.name, SHARED_PASSWORD_SECRET, auth.password, nbytes=12)
        if len(password) < auth.min_length:
            raise HubfleetError(f"authenticator.password: the shared password is {len(password)} characters, "
                                f"shorter than min_length {auth.min_length}",
                                hint="give a longer password or lower authenticator.min_length")
        return {"shared_password_user": password,
                "shared_password_admin": store.ensure_secret(course.name, ADMIN_PASSWORD_SECRET, nbytes=32)}

    def login_hints(self, course: "Course") -> list[str]:
        return [f"log in: any username, with the shared password from `hubfleet credentials {course.name}`",
                f"admin: user '{ADMIN_USER}', password from `hubfleet credentials {course.name}`"]

    def teacher_hint(self) -> str:
        return "Students log in with any username and the shared password shown on the request's page."

    def student_login(self, store: "StateStore", course: "Course", url: str, session: Any) -> str | None:
        password = store.get_secret(course.name, SHARED_PASSWORD_SECRET)
        if not password:
            raise HubfleetError("no shared password is recorded", hint=f"run `hubfleet create` for {course.name}")
        login_with_password(url, HEALTH_LOGIN, password, session=session)
        return typed_username(HEALTH_LOGIN)

    def admin_hint(self, course: "Course") -> str:
        admins = course.authenticator.admin_users
        if not admins:
            return "The hub has no admins of the course (the request named none): the operators run it."
        return (f"Hub admins ({', '.join(admins)}) log in with their name and the admin password below, not "
                "the students' one; keep it from the students. The hub's Admin page lists the students and "
                "their servers.")

    def teacher_secrets(self, store: "StateStore", name: str) -> dict[str, str]:
        password = store.get_secret(name, SHARED_PASSWORD_SECRET)
        secrets = {"shared_password": password} if password else {}
        instance = store.find(name)
        admins = (instance.descriptor.get("authenticator") or {}).get("admin_users") if instance else None
        admin_password = store.get_secret(name, ADMIN_PASSWORD_SECRET) if admins else None
        return {**secrets, "admin_password": admin_password} if admin_password else secrets

    def from_form(self, values: dict[str, str]) -> dict:
        auth = {"kind": self.kind, "password": "generate"}  # hubfleet makes it; the teacher reads it on the page
        put(auth, "admin_users", lines(values["admin_users"]))
        return auth
