"""The university's LDAP directory (ldapauthenticator), by roles/ldap."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hubfleet.authenticators.base import AuthKind
from hubfleet.authenticators.form import lines, lines_keep_commas, put
from hubfleet.errors import HubfleetError
from hubfleet.jupyter import login_with_password

if TYPE_CHECKING:
    from hubfleet.descriptor import Course
    from hubfleet.state import StateStore

LDAP_DEFAULT_PORTS = {"ldap": 389, "ldaps": 636}
LDAP_BIND_PASSWORD_SECRET = "ldap-bind-password"
LDAP_HEALTH_PASSWORD_SECRET = "ldap-health-password"  # the health account's (authenticator.health_account)


class LdapKind(AuthKind):
    kind = "ldap"
    choice = "The university's LDAP directory"
    role = "ldap"
    secret_labels = {LDAP_BIND_PASSWORD_SECRET: "LDAP bind password",
                     LDAP_HEALTH_PASSWORD_SECRET: "LDAP health account's password"}
    form_prefix = "ldap"

    def own_variables(self, course: "Course") -> dict:
        auth = course.authenticator
        parts = urlsplit(auth.server_uri)
        if parts.scheme == "ldaps":
            strategy = "on_connect"
        elif auth.starttls:
            strategy = "before_bind"
        else:
            strategy = "insecure"  # the descriptor allows this only towards a loopback address
        variables = {
            "ldap_server_address": parts.hostname,
            "ldap_server_port": parts.port or LDAP_DEFAULT_PORTS[parts.scheme],
            "ldap_tls_strategy": strategy,
            "ldap_bind_dn_templates": list(auth.bind_dn_template),
            "ldap_allowed_groups": list(auth.allowed_groups),
            "ldap_lookup_dn": auth.search is not None,
        }
        if auth.search is not None:
            variables.update(ldap_search_user=auth.search.bind_dn, ldap_search_base=auth.search.base_dn,
                             ldap_user_attribute=auth.search.user_attribute)
        return variables

    def ensure_secrets(self, store: "StateStore", course: "Course") -> dict:
        search = course.authenticator.search
        if search is None:
            return {}
        if search.bind_password == "generate":
            raise HubfleetError("authenticator.search.bind_password: `generate` cannot work, the directory "
                                "already has this account's password",
                                hint="write env:VAR or file:/path with the password the directory's administrators gave")
        return {"ldap_search_password": store.ensure_secret(course.name, LDAP_BIND_PASSWORD_SECRET,
                                                             search.bind_password)}

    def login_hints(self, course: "Course") -> list[str]:
        return ["log in: with the directory's username and password"]

    student_login_note = "name an account in authenticator.health_account to have status log in with it"

    def student_login(self, store: "StateStore", course: "Course", url: str, session: Any) -> str | None:
        account = course.authenticator.health_account
        if account is None:
            return None
        password = store.ensure_secret(course.name, LDAP_HEALTH_PASSWORD_SECRET, account.password)
        login_with_password(url, account.username, password, session=session)
        return self.hub_username(account.username)

    def admin_hint(self, course: "Course") -> str:
        admins = course.authenticator.admin_users
        if not admins:
            return "The hub has no admins of the course (the request named none): the operators run it."
        return (f"Hub admins ({', '.join(admins)}) log in like everybody, with their own university username "
                "and password; the hub then shows them its Admin page (students and their servers).")

    def teacher_hint(self) -> str:
        return "Students log in with their university username and password."

    def form_fields(self) -> tuple[str, ...]:
        return ("ldap_server_uri", "ldap_bind_dn_template", "ldap_allowed_groups")

    def from_form(self, values: dict[str, str]) -> dict:
        auth: dict = {"kind": self.kind, "starttls": values.get("ldap_starttls") == "on"}
        put(auth, "server_uri", values["ldap_server_uri"])
        put(auth, "bind_dn_template", lines_keep_commas(values["ldap_bind_dn_template"]))
        put(auth, "allowed_groups", lines_keep_commas(values["ldap_allowed_groups"]))
        put(auth, "admin_users", lines(values["admin_users"]))
        return auth
