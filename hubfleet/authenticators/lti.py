"""LTI 1.1 (edX, Moodle's legacy mode) and LTI 1.3 (Moodle 4, Canvas): students arrive from the LMS, by roles/lti."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from hubfleet.authenticators.base import ADMIN_USER, AuthKind
from hubfleet.authenticators.form import lines, put
from hubfleet.errors import HubfleetError
from hubfleet.teaching import DEFAULT_GROUP, lms_role_table
from hubfleet.oauth1 import sign_form
from hubfleet.usernames import HEALTH_LOGIN, hub_username

if TYPE_CHECKING:
    from hubfleet.descriptor import Course
    from hubfleet.state import Instance, StateStore

LTI11_KEY_SECRET = "lti11-key"
LTI11_SECRET_SECRET = "lti11-secret"
LTI13_TOOL_KEY_SECRET = "lti13-tool-key"
OPERATOR_PASSWORD_SECRET = "admin-password"  # the same secret as the shared-password kind's admin
OPERATOR_LOGIN_PATH = "/hub/operator-login"
LAUNCH_BOOK = "/srv/jupyterhub/lms.sqlite"  # launches, roster and grade postings (the hub's data directory)
TRUST_STORE = "/etc/ssl/certs/ca-certificates.crt"  # roles/trust makes it the hosts' one store

LAUNCH_PATH_11 = "/hub/lti/launch"
LOGIN_PATH_13 = "/hub/lti13/oauth_login"
CALLBACK_PATH_13 = "/hub/lti13/oauth_callback"
KEYSET_PATH_13 = "/hub/lti13/jwks"
TOOL_PATH_13 = "/hub/user-redirect/lab"  # the student's JupyterLab, started on the way if need be
NOTEBOOK_EXAMPLE = "/hub/user-redirect/lab/tree/intro.ipynb"

LTI11_USERNAME_KEYS = ("user_id", "lis_person_sourcedid", "ext_user_username", "lis_person_contact_email_primary")
LTI13_USERNAME_KEYS = ("sub", "email", "name", "preferred_username")


class _LtiKind(AuthKind):
    role = "lti"
    from_lms = True
    version: str
    secret_labels = {OPERATOR_PASSWORD_SECRET: "admin password (at /hub/operator-login)"}

    def own_variables(self, course: "Course") -> dict:
        origin = course.authenticator.lms_origin
        return {
            "lti_version": self.version,
            "lti_username_key": course.authenticator.username_key,
            "lti_frame_ancestors": [origin] if origin else [],
            # Inside an LMS iframe only SameSite=None; Secure cookies survive; every hub is HTTPS.
            "lti_secure_cookies": True,
            "lti_lms_roles": lms_role_table(),
            "lti_default_group": DEFAULT_GROUP,
            "lti_launch_book": LAUNCH_BOOK if course.grading else "",
            "lti_ca_bundle": TRUST_STORE,
        }

    def ensure_secrets(self, store: "StateStore", course: "Course") -> dict:
        # An LTI course has no log-in form: the operator's admin account has its own page and password.
        return {"lti_operator_password": store.ensure_secret(course.name, OPERATOR_PASSWORD_SECRET, nbytes=32)}

    def hub_username(self, identity: str) -> str:
        """An LMS identity exactly as the LMS sends it: case, spaces and every character count."""
        return hub_username(identity)

    def login_hints(self, course: "Course") -> list[str]:
        return [f"students and teachers arrive from the LMS: `hubfleet lti-config {course.name}` prints what to "
                "enter there (the LMS's roles make teachers)",
                f"admin: user '{ADMIN_USER}' at {OPERATOR_LOGIN_PATH}, password from `hubfleet credentials "
                f"{course.name}`"]

    def grading_variables(self, course: "Course") -> dict:
        return {"grading_lms": self.version, "grading_lms_roles": lms_role_table(),
                "grading_default_group": DEFAULT_GROUP, "grading_username_key": course.authenticator.username_key,
                "grading_ca_bundle": TRUST_STORE, **self.own_grading_variables(course)}

    def own_grading_variables(self, course: "Course") -> dict:
        return {}

    def admin_hint(self, course: "Course") -> str:
        return ("Teachers arrive from the LMS like the students: the course's Instructors in the LMS are the "
                "hub's teachers (they go in first when the hub is full, and grade where grading is on). The "
                "hub's own admin account is the operators'.")

    def teacher_hint(self) -> str:
        return "Students arrive from your LMS: paste the settings shown on the request's page into your course."

    def lms_settings(self, store: "StateStore", instance: "Instance", course: "Course") -> dict[str, str]:
        url = instance.outputs.get("url")
        if not url:
            raise HubfleetError(f"course {course.name!r} has no URL yet",
                                hint=f"run `hubfleet create` for {course.name} first")
        return self._settings(store, course, url.rstrip("/"))

    def _settings(self, store: "StateStore", course: "Course", url: str) -> dict[str, str]:
        raise NotImplementedError


class Lti11Kind(_LtiKind):
    kind = "lti11"
    choice = "edX or Moodle, LTI 1.1"
    version = "1.1"
    secret_labels = {**_LtiKind.secret_labels, LTI11_KEY_SECRET: "LTI 1.1 consumer key",
                     LTI11_SECRET_SECRET: "LTI 1.1 consumer secret"}
    form_prefix = "lti11"
    username_keys = LTI11_USERNAME_KEYS

    def own_variables(self, course: "Course") -> dict:
        return {**super().own_variables(course), "lti_consumer_key": consumer_key(course)}

    def ensure_secrets(self, store: "StateStore", course: "Course") -> dict:
        key = consumer_key(course)
        if ":" in key or not re.fullmatch(r"[\x21-\x7e]+", key):
            raise HubfleetError(f"authenticator.consumer_key: {key!r} has a colon, a space or a non-ASCII character",
                                hint="use letters, digits, dots and hyphens: edX splits its LTI passport on colons")
        secret = store.ensure_secret(course.name, LTI11_SECRET_SECRET, course.authenticator.secret, nbytes=24)
        if len(secret) < 16:
            raise HubfleetError(f"authenticator.secret: the consumer secret is {len(secret)} characters; "
                                "anyone could guess it", hint="give 16 characters or more, or write `generate`")
        if store.get_secret(course.name, LTI11_KEY_SECRET) != key:
            store.set_secret(course.name, LTI11_KEY_SECRET, key)  # shown by `credentials` beside the secret
        return {**super().ensure_secrets(store, course), "lti_consumer_secret": secret}

    def own_grading_variables(self, course: "Course") -> dict:
        return {"grading_consumer_key": consumer_key(course)}

    def student_login(self, store: "StateStore", course: "Course", url: str, session: Any) -> str | None:
        """A launch signed with the course's own key and secret, as edX or Moodle signs a student's (in a
        context of its own, so the course's launches and rosters are not mixed with it)."""
        secret = store.get_secret(course.name, LTI11_SECRET_SECRET)
        if not secret:
            raise HubfleetError("no LTI consumer secret is recorded", hint=f"run `hubfleet create` for {course.name}")
        fields = {"lti_message_type": "basic-lti-launch-request", "lti_version": "LTI-1p0",
                  "resource_link_id": "hubfleet-health-check", "context_id": "hubfleet-health-check",
                  "roles": "Learner", "user_id": HEALTH_LOGIN, "lis_person_sourcedid": HEALTH_LOGIN,
                  "ext_user_username": HEALTH_LOGIN, "lis_person_contact_email_primary": f"{HEALTH_LOGIN}@example.invalid"}
        launch = url.rstrip("/") + LAUNCH_PATH_11
        response = session.post(launch, data=sign_form(launch, consumer_key(course), secret, fields),
                                allow_redirects=False, timeout=30)
        if response.status_code not in (302, 303):
            raise HubfleetError(f"a launch signed with the course's key was refused ({response.status_code})")
        return self.hub_username(fields[course.authenticator.username_key])

    def grading_secrets(self, store: "StateStore", course: "Course") -> dict:
        # Basic Outcomes are signed with the consumer secret; the grades service keeps its own copy.
        return {"grading_consumer_secret": store.get_secret(course.name, LTI11_SECRET_SECRET)
                or self.ensure_secrets(store, course)["lti_consumer_secret"]}

    def _settings(self, store: "StateStore", course: "Course", url: str) -> dict[str, str]:
        secret = store.get_secret(course.name, LTI11_SECRET_SECRET)
        if not secret:
            raise HubfleetError(f"course {course.name!r} has no LTI consumer secret yet",
                                hint=f"run `hubfleet create` for {course.name}: it creates the secret")
        key = consumer_key(course)
        return {
            "lti_version": "1.1",
            "launch_url": url + LAUNCH_PATH_11,
            "consumer_key": key,
            "consumer_secret": secret,
            "edx_lti_id": course.name,
            "edx_lti_passport": f"{course.name}:{key}:{secret}",
            "custom_parameter_to_open_a_notebook": f"next={NOTEBOOK_EXAMPLE}",
            "username_from": course.authenticator.username_key,
            "lms_origin": course.authenticator.lms_origin or "",
            # Basic Outcomes: a graded activity names its nbgrader assignment; the launch says where its grade goes.
            "custom_parameter_of_a_graded_activity": "assignment=<nbgrader assignment>" if course.grading else "",
        }

    def form_fields(self) -> tuple[str, ...]:
        return ("lti11_consumer_key", "lti11_username_key", "lti11_lms_origin")

    def from_form(self, values: dict[str, str]) -> dict:
        auth = {"kind": self.kind, "secret": "generate"}
        for key in ("consumer_key", "username_key", "lms_origin"):
            put(auth, key, values[f"lti11_{key}"])
        return auth


class Lti13Kind(_LtiKind):
    kind = "lti13"
    choice = "Moodle 4 / Canvas, LTI 1.3"
    version = "1.3"
    form_prefix = "lti13"
    username_keys = LTI13_USERNAME_KEYS
    student_login_note = ("an LTI 1.3 launch is signed with the LMS's own key, which hubfleet does not hold: "
                          "students' launches are tried from the LMS")

    def own_variables(self, course: "Course") -> dict:
        auth = course.authenticator
        return {**super().own_variables(course), "lti_issuer": auth.issuer, "lti_client_ids": [auth.client_id],
                "lti_deployment_ids": list(auth.deployment_ids), "lti_authorize_url": auth.authorize_url,
                "lti_jwks_url": auth.jwks_url}

    def ensure_secrets(self, store: "StateStore", course: "Course") -> dict:
        # Public, but derived from a secret the inventory builder never sees: it travels with the secrets.
        return {**super().ensure_secrets(store, course),
                "lti_tool_jwks": json.dumps(ensure_tool_keyset(store, course.name), sort_keys=True)}

    def own_grading_variables(self, course: "Course") -> dict:
        auth = course.authenticator
        return {"grading_client_id": auth.client_id, "grading_token_url": auth.token_url or ""}

    def grading_secrets(self, store: "StateStore", course: "Course") -> dict:
        # The tool's private key signs its token requests; it goes to the grades service only.
        ensure_tool_keyset(store, course.name)
        return {"grading_tool_key": store.get_secret(course.name, LTI13_TOOL_KEY_SECRET)}

    def _settings(self, store: "StateStore", course: "Course", url: str) -> dict[str, str]:
        auth = course.authenticator
        return {
            "lti_version": "1.3",
            "tool_url": url + TOOL_PATH_13,
            "initiate_login_url": url + LOGIN_PATH_13,
            "redirection_uris": url + CALLBACK_PATH_13,
            "public_keyset_url": url + KEYSET_PATH_13,
            "tool_url_to_open_a_notebook": url + NOTEBOOK_EXAMPLE,
            "platform_issuer": auth.issuer,
            "client_id": auth.client_id,
            "deployment_ids": ", ".join(auth.deployment_ids) or "(any)",
            "platform_authorize_url": auth.authorize_url,
            "platform_jwks_url": auth.jwks_url,
            "username_from": auth.username_key,
            "lms_origin": auth.lms_origin or "",
            "services": ("IMS LTI Assignment and Grade Services: grade sync and column management; "
                         "IMS LTI Names and Role Provisioning: retrieve members' information") if course.grading else "",
            "platform_token_url": auth.token_url or "",
        }

    def form_fields(self) -> tuple[str, ...]:
        return ("lti13_issuer", "lti13_client_id", "lti13_deployment_ids", "lti13_authorize_url", "lti13_jwks_url",
                "lti13_username_key", "lti13_lms_origin")

    def from_form(self, values: dict[str, str]) -> dict:
        auth: dict = {"kind": self.kind}
        for key in ("issuer", "client_id", "authorize_url", "jwks_url", "username_key", "lms_origin"):
            put(auth, key, values[f"lti13_{key}"])
        put(auth, "deployment_ids", lines(values["lti13_deployment_ids"]))
        return auth


def consumer_key(course: "Course") -> str:
    """The LTI 1.1 consumer key: the descriptor's, or the course name."""
    return getattr(course.authenticator, "consumer_key", None) or course.name


def ensure_tool_keyset(store: "StateStore", name: str) -> dict:
    """The tool's own RSA key for LTI 1.3 (created once); returns only its public JWKS.

    The platform asks for a tool keyset URL at registration; the private half stays in the state
    store for services that sign requests to the platform (grades).
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
