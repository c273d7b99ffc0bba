"""The request form: what a teacher types, turned into a course descriptor and checked by `parse_course`.

The descriptor model is the only judge; this module only builds its input from the form and maps
each FieldProblem's path back to the form field it came from, so the message shows beside it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import Mapping

from hubfleet.authenticators import KINDS
from hubfleet.authenticators.form import put as _put
from hubfleet.descriptor import Course, parse_course
from hubfleet.errors import FieldProblem, InvalidInput
from hubfleet.inputs import show, text_problem, whole_number
from hubfleet.portal.config import PortalConfig
from hubfleet.portal.models import ImageRow
from hubfleet.sizing import Plan, load_catalogue, plan_course

FORM_ERROR = ""  # problems with no field of their own are shown above the form

AUTH_CHOICES = {kind: k.choice for kind, k in KINDS.items()}
LTI11_USERNAME_KEYS = KINDS["lti11"].username_keys
LTI13_USERNAME_KEYS = KINDS["lti13"].username_keys

TEXT_FIELDS = (
    "name", "title", "students", "at_once", "start", "end", "image", "auth_kind", "domain", "notes",
    "admin_users", *(name for kind in KINDS.values() for name in kind.form_fields()),
)
CHECKBOXES = ("ldap_starttls",)
MULTILINE = ("notes", "admin_users", "lti13_deployment_ids", "ldap_bind_dn_template", "ldap_allowed_groups")
MAX_FIELD = 4000  # longer than any honest value; keeps the database and pages small
MAX_NOTES = 2000


# Each field's label, as the form shows it: the error summary names fields by them, and a message of
# the descriptor's model that names another field (`dates.start`) names it by its label instead.
FIELD_LABELS = {
    "name": "Short name", "title": "Title students see", "domain": "Own domain (optional)",
    "students": "Expected students", "at_once": "Working at the same time", "start": "First day",
    "end": "Last day", "image": "Notebook image", "auth_kind": "How students log in",
    "lti11_consumer_key": "Consumer key (optional)", "lti11_username_key": "Username from",
    "lti11_lms_origin": "LMS address (optional)", "lti13_issuer": "Platform issuer", "lti13_client_id": "Client id",
    "lti13_deployment_ids": "Deployment ids (optional)", "lti13_authorize_url": "Authentication request URL",
    "lti13_jwks_url": "Public keyset URL", "lti13_username_key": "Username from",
    "lti13_lms_origin": "LMS address (optional)", "ldap_server_uri": "Server",
    "ldap_bind_dn_template": "Bind DN templates", "ldap_allowed_groups": "Allowed groups (optional)",
    "admin_users": "Hub admins (optional)", "notes": "Notes for the operators",
}
PATH_WORDS = {"dates.start": "the first day", "dates.end": "the last day", "load.students": "the expected students",
              "load.concurrent": "the students working at the same time"}


def in_labels(message: str) -> str:
    """A model's message with the descriptor paths it names put in the form's words."""
    for path, words in PATH_WORDS.items():
        message = message.replace(path, words)
    return message


@dataclass
class FormResult:
    values: dict[str, str]
    errors: dict[str, list[str]] = field(default_factory=dict)
    course: Course | None = None
    plan: Plan | None = None
    # Messages only standing in for a better one (a length past any field's bound): the field's own
    # check replaces them, so one problem never gets two messages.
    stand_ins: set[tuple[str, str]] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.errors and self.course is not None

    def add(self, name: str, message: str, *, stand_in: bool = False) -> None:
        messages = self.errors.setdefault(name, [])
        for old in [m for m in messages if (name, m) in self.stand_ins]:
            messages.remove(old)
        if stand_in:
            self.stand_ins.add((name, message))
        if message not in messages:  # the form's own check and the model may say the same thing
            messages.append(message)


def read_form(form: Mapping[str, str]) -> dict[str, str]:
    """Only the fields the form has, as stripped text (checkboxes as 'on' or '')."""
    values = {name: str(form.get(name, "")).strip() for name in TEXT_FIELDS}
    values.update({name: "on" if form.get(name) else "" for name in CHECKBOXES})
    return values


def share_at_once(at_once: int, students: int) -> float:
    """at_once/students as a short decimal that sizing (ceil of students x share) turns back into at_once."""
    # 7/100 is 0.07, but 100 x 0.07 is 7.000000000000001: then aim half a student lower.
    for target in (at_once, at_once - 0.5):
        for digits in range(2, 9):
            share = round(target / students, digits)
            if 0 < share <= 1 and math.ceil(students * share) == at_once:
                return share
    return (at_once - 0.5) / students


def authenticator_data(values: dict[str, str]) -> dict | None:
    kind = KINDS.get(values["auth_kind"])
    return kind.from_form(values) if kind else None


def descriptor_data(values: dict[str, str], config: PortalConfig, image: ImageRow | None,
                    result: FormResult) -> dict:
    """The descriptor mapping this form describes; form-only problems go straight into `result`."""
    data: dict = {"provider": config.provider}
    _put(data, "name", values["name"])
    _put(data, "title", values["title"])
    if image is not None:
        data["image"] = image.image
    if config.teachers_choose_domain and values["domain"]:
        data["domain"] = values["domain"]
    elif values["name"]:
        data["domain"] = f"{values['name']}.{config.base_domain}"

    load: dict = {"disk_per_user": config.course_defaults.disk_per_user}
    if image is not None:
        load.update(memory_per_user=image.memory_per_user, cpu_per_user=image.cpu_per_user)
    # Only ASCII digits become numbers ('²'.isdigit() is true, int('²') is not); the model judges the rest.
    students = whole_number(values["students"])
    _put(load, "students", students if students is not None else values["students"])
    at_once_text = values["at_once"]
    at_once = whole_number(at_once_text)
    if not at_once_text:
        result.add("at_once", "missing — give how many students work at the same time at the busiest hour")
    elif at_once is None or at_once < 1:
        result.add("at_once", f"{show(at_once_text)} is not a whole number of students — write e.g. 15")
    elif students:
        if at_once > students:
            result.add("at_once", f"{at_once} is more than the {students} students expected — "
                                  f"write at most {students}")
        else:
            load["concurrent"] = share_at_once(at_once, students)
    data["load"] = load

    dates: dict = {}
    _put(dates, "start", values["start"])
    _put(dates, "end", values["end"])
    data["dates"] = dates
    data["culling"] = {"idle_timeout": config.course_defaults.idle_timeout}
    if config.tls is not None:  # else the descriptor's own default: HTTPS from the provider's ACME server
        data["tls"] = config.tls.model_dump(mode="json", exclude_none=True)

    auth = authenticator_data(values)
    if auth is None:
        result.add("auth_kind", "choose how students log in")
    else:
        data["authenticator"] = auth
    return data


def form_field(path: str, values: dict[str, str], config: PortalConfig) -> str:
    """The form field a descriptor path came from (FORM_ERROR when none)."""
    path = re.sub(r"\[\d+\]", "", path)
    if path in ("name", "title", "image"):
        return path
    if path == "domain":
        return "domain" if config.teachers_choose_domain and values["domain"] else "name"
    if path == "provider" or path.startswith(("tls", "culling", "load.disk_per_user")):
        return FORM_ERROR  # from the portal's settings, not from the teacher
    if path in ("load.memory_per_user", "load.cpu_per_user"):
        return "image"
    if path in ("load.concurrent", "load"):
        return "at_once"
    if path == "load.students":
        return "students"
    if path.startswith("dates"):
        return "end" if path == "dates.end" else "start"
    if path == "authenticator":  # a problem of the whole mapping: beside the kind's first field
        kind = KINDS.get(values["auth_kind"])
        return (kind.form_fields() or ("auth_kind",))[0] if kind else "auth_kind"
    if path == "authenticator.kind":
        return "auth_kind"
    if path.startswith("authenticator."):
        kind = KINDS.get(values["auth_kind"])
        return (kind.form_field(path.split(".")[1], values) if kind else None) or "auth_kind"
    return FORM_ERROR


def validate_request(form: Mapping[str, str], config: PortalConfig, images: list[ImageRow], *,
                     name_problem=None, today: dt.date | None = None) -> FormResult:
    """Check a submitted request the way the CLI checks a descriptor, then size it.

    `name_problem(name)` says why a valid name is still not available (another course holds it).
    """
    values = read_form(form)
    result = FormResult(values=values)
    for key, value in values.items():
        if len(value) > MAX_FIELD:
            result.add(key, f"is {len(value)} characters long — keep it under {MAX_FIELD}", stand_in=True)
        # Text areas keep their lines; nothing keeps a NUL, an escape or a line separator (no database
        # stores a NUL, no config file survives the others).
        problem = text_problem(value.replace("\r\n", "\n").replace("\n", " ").replace("\t", " ")
                               if key in MULTILINE else value)
        if problem:
            result.add(key, problem)
    if len(values["notes"]) > MAX_NOTES:
        result.add("notes", f"is {len(values['notes'])} characters long — keep it under {MAX_NOTES}")
    image = next((i for i in images if i.image == values["image"]), None)
    if image is None:
        choices = ", ".join(i.label for i in images) or "none yet — ask an operator to add one"
        result.add("image", "choose one of the images in the list" + ("" if values["image"] == "" else
                   " (that one is not offered)") + f": {choices}")
    data = descriptor_data(values, config, image, result)
    try:
        course = parse_course(data, source="request form", today=today)
    except InvalidInput as exc:
        for problem in exc.problems:
            where = form_field(problem.path, values, config)
            if problem.path == "domain" and where == "name" and "name" in result.errors:
                continue  # the derived domain is wrong only because the name is
            result.add(where, in_labels(problem.message) if where else in_labels(str(problem)))
        return result
    if result.errors:
        return result
    if name_problem is not None:
        why = name_problem(course.name)
        if why:
            result.add("name", why)
            return result
    try:
        plan = plan_course(course, load_catalogue(course.provider))
    except InvalidInput as exc:
        for problem in exc.problems:
            result.add(form_field(problem.path, values, config), _plan_message(problem))
        return result
    result.course, result.plan = course, plan
    return result


def _plan_message(problem: FieldProblem) -> str:
    return problem.message.replace("lower load.concurrent, memory_per_user or cpu_per_user",
                                   "ask for fewer students at once, or a smaller image")
