"""The course descriptor: the only door for a course (CLI, portal and state all pass through it).

One pydantic model is the source of truth; `json_schema()` publishes it. Every error is turned
into a FieldProblem that names the field path, what is wrong and how to fix it.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hubfleet.errors import FieldProblem, InvalidInput
from hubfleet.usernames import ADMIN_USER, is_reserved

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
IMAGE_RE = re.compile(
    r"^(?:[a-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
QUANTITY_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|k)?\s*$")
UNITS = {
    "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
    "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
}
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
IDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")
SECRET_SOURCE_HELP = "write `generate` (hubfleet creates and stores it), `env:VAR` or `file:/path`"


def parse_quantity(value: Any) -> int:
    """'512Mi' -> bytes. A bare number is refused: the unit is never guessed."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{value!r} is not a size — write e.g. 512Mi or 2Gi")
    text = str(value)
    m = QUANTITY_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size — write e.g. 512Mi or 2Gi")
    number, unit = m.groups()
    if unit is None:
        raise ValueError(f'"{text}" has no unit — write {text}Mi or 1Gi')
    size = int(float(number) * UNITS[unit])
    if size <= 0:
        raise ValueError(f"{text!r} must be larger than zero")
    return size


def format_bytes(size: int) -> str:
    """Bytes in the largest binary unit that keeps the number at least 1 (512Mi, 1.5Gi)."""
    for unit in ("Ti", "Gi", "Mi", "Ki"):
        if size >= UNITS[unit]:
            value = size / UNITS[unit]
            return f"{value:.0f}{unit}" if size % UNITS[unit] == 0 else f"{value:.1f}{unit}"
    return f"{size}B"


def check_secret_source(value: str) -> str:
    if value == "generate" or (value.startswith("env:") and len(value) > 4) or (
        value.startswith("file:") and len(value) > 5
    ):
        return value
    raise ValueError(f"{value!r} is not a secret source — {SECRET_SOURCE_HELP}")


def check_usernames(values: list[str]) -> list[str]:
    for v in values:
        if not USERNAME_RE.match(v):
            raise ValueError(f"{v!r} is not a username — use lowercase letters, digits and . _ @ - (e.g. prof.smith)")
        if is_reserved(v) and v != ADMIN_USER:
            raise ValueError(f"{v!r} is reserved for the hub itself (hubfleet's accounts, services, system "
                             "users) — name a person's account (docs/identity.md)")
    return values


def check_ident(value: str, what: str) -> str:
    if not IDENT_RE.match(value):
        raise ValueError(f"{value!r} is not a valid {what} — letters, digits and . _ : @ / + - only, no spaces")
    return value


def check_hostname(value: str) -> str:
    host = value.strip().lower().rstrip(".")
    labels = host.split(".")
    if len(host) > 253 or len(labels) < 2 or not all(LABEL_RE.match(lbl) for lbl in labels):
        raise ValueError(
            f"{value!r} is not a valid DNS name — write a fully qualified name such as "
            "course.hub.example.edu (letters, digits and hyphens, at least one dot)"
        )
    if labels[-1].isdigit():
        raise ValueError(f"{value!r} is an IP address — give the DNS name students will open")
    return host


def check_url(value: str, *, field: str, https_only: bool = True) -> str:
    m = re.match(r"^(https?)://([^/\s:]+)(:[0-9]+)?(/\S*)?$", value)
    if not m:
        raise ValueError(f"{value!r} is not a URL — write e.g. https://lms.example.edu/{field}")
    if https_only and m.group(1) != "https" and m.group(2) not in ("localhost", "127.0.0.1"):
        raise ValueError(f"{value!r} must use https:// (only localhost may use http://)")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- authenticators -------------------------------------------------------------------------


class Lti11(Strict):
    """LTI 1.1 (edX, Moodle's legacy External tool): OAuth 1.0a signed launches."""

    kind: Literal["lti11"] = Field(description="LTI 1.1, as edX and Moodle's legacy mode send it.")
    secret: str = Field(
        description="Where the consumer secret comes from: `generate` (hubfleet creates one per "
        "course and stores it as a secret), `env:VAR` or `file:/path`."
    )
    consumer_key: str | None = Field(
        None, description="Consumer key; the course name when omitted.", min_length=1
    )
    username_key: str = Field(
        "user_id",
        description="Launch field that becomes the JupyterHub username: user_id, "
        "lis_person_sourcedid or ext_user_username (or any custom_* field).",
    )
    lms_origin: str | None = Field(
        None, description="Origin of the LMS (https://courses.edx.org) allowed to frame the hub."
    )

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: str) -> str:
        return check_secret_source(v)

    @field_validator("consumer_key")
    @classmethod
    def _key(cls, v: str | None) -> str | None:
        if v is not None and ":" in v:
            raise ValueError(f"{v!r} has a colon — edX splits its LTI passport (id:key:secret) on colons")
        return None if v is None else check_ident(v, "consumer key")

    @field_validator("username_key")
    @classmethod
    def _username_key(cls, v: str) -> str:
        known = {"user_id", "lis_person_sourcedid", "ext_user_username", "lis_person_contact_email_primary"}
        if v not in known and not v.startswith("custom_"):
            raise ValueError(f"{v!r} is not a launch field — use one of {sorted(known)} or custom_*")
        return v

    @field_validator("lms_origin")
    @classmethod
    def _origin(cls, v: str | None) -> str | None:
        return None if v is None else check_url(v, field="", https_only=True).rstrip("/")


class Lti13(Strict):
    """LTI 1.3 (Moodle 4.x, Canvas): OIDC login initiation and RS256 id_tokens."""

    kind: Literal["lti13"] = Field(description="LTI 1.3 / LTI Advantage.")
    issuer: str = Field(description="The platform's issuer (iss), e.g. https://moodle.example.edu.")
    client_id: str = Field(description="Client id the platform gave this tool.", min_length=1)
    deployment_ids: list[str] = Field(
        default_factory=list, description="Accepted deployment ids; any when empty."
    )
    authorize_url: str = Field(description="Platform's OIDC authentication request URL.")
    jwks_url: str = Field(description="Platform's public keyset (JWKS) URL.")
    username_key: str = Field(
        "sub", description="id_token claim that becomes the username (sub, email, name...)."
    )
    lms_origin: str | None = Field(None, description="Origin allowed to frame the hub.")
    token_url: str | None = Field(
        None, description="Platform's OAuth 2 access token URL (Moodle: /mod/lti/token.php). The hub signs its "
        "token requests with the tool's key there, to send grades (AGS) and read the roster (NRPS): "
        "needed with `grading:`.",
    )

    def grading_problem(self) -> tuple[str, str] | None:
        """Why this login cannot send grades to the LMS: (field, message), or None."""
        if self.token_url is None:
            return ("authenticator.token_url", "grading sends scores to the LMS and reads its roster with an access "
                    "token — give the platform's token URL (Moodle: https://moodle.example.edu/mod/lti/token.php)")
        return None

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, v: str) -> str:
        return check_ident(v, "client id")

    @field_validator("deployment_ids")
    @classmethod
    def _deployments(cls, v: list[str]) -> list[str]:
        return [check_ident(d, "deployment id") for d in v]

    @field_validator("issuer", "authorize_url", "jwks_url", "token_url")
    @classmethod
    def _urls(cls, v: str | None, info) -> str | None:
        return None if v is None else check_url(v, field=info.field_name)

    @field_validator("lms_origin")
    @classmethod
    def _origin(cls, v: str | None) -> str | None:
        return None if v is None else check_url(v, field="", https_only=True).rstrip("/")


class LdapSearch(Strict):
    bind_dn: str = Field(description="DN hubfleet's hub binds as to search for users.")
    bind_password: str = Field(description=f"Secret source of the bind password: {SECRET_SOURCE_HELP}.")
    base_dn: str = Field(description="Where users are searched, e.g. ou=people,dc=example,dc=edu.")
    user_attribute: str = Field("uid", description="Attribute holding the login name.")

    @field_validator("bind_password")
    @classmethod
    def _pw(cls, v: str) -> str:
        return check_secret_source(v)


class Ldap(Strict):
    """The university's LDAP directory."""

    kind: Literal["ldap"] = Field(description="Log in with the directory's password.")
    server_uri: str = Field(description="ldaps://ldap.example.edu or ldap://host with starttls.")
    starttls: bool = Field(False, description="Upgrade ldap:// with StartTLS.")
    bind_dn_template: list[str] = Field(
        default_factory=list,
        description="Direct bind templates, e.g. uid={username},ou=people,dc=example,dc=edu.",
    )
    search: LdapSearch | None = Field(None, description="Search-then-bind settings.")
    allowed_groups: list[str] = Field(default_factory=list, description="Group DNs allowed in.")
    admin_users: list[str] = Field(default_factory=list, description="Usernames made hub admins.")

    @field_validator("server_uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        if not re.match(r"^ldaps?://[^/\s]+/?$", v):
            raise ValueError(f"{v!r} is not an LDAP URI — write ldaps://ldap.example.edu")
        return v.rstrip("/")

    @field_validator("bind_dn_template")
    @classmethod
    def _templates(cls, v: list[str]) -> list[str]:
        for t in v:
            if "{username}" not in t:
                raise ValueError(f"{t!r} has no {{username}} placeholder — e.g. uid={{username}},ou=people,dc=x")
        return v

    @field_validator("allowed_groups")
    @classmethod
    def _groups(cls, v: list[str]) -> list[str]:
        for dn in v:
            if not re.match(r"^[^\x00-\x1f\"'{}]+=[^\x00-\x1f\"'{}]+$", dn):
                raise ValueError(f"{dn!r} is not a group DN — e.g. cn=numerics,ou=groups,dc=example,dc=edu")
        return v

    @field_validator("admin_users")
    @classmethod
    def _admins(cls, v: list[str]) -> list[str]:
        return check_usernames(v)

    @model_validator(mode="after")
    def _shape(self) -> "Ldap":
        problems = []
        if not self.bind_dn_template and self.search is None:
            problems.append("give bind_dn_template (direct bind) or search (search-then-bind)")
        host = re.sub(r"^ldaps?://", "", self.server_uri).split(":")[0]
        loopback = host in ("localhost",) or host.startswith("127.")
        if self.server_uri.startswith("ldap://") and not self.starttls and not loopback:
            problems.append(
                f"{self.server_uri} would send passwords in clear — use ldaps:// or set starttls: true"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class SharedPassword(Strict):
    """One password for everybody: workshops."""

    kind: Literal["shared-password"] = Field(description="One password shared by all participants.")
    password: str = Field("generate", description=f"Secret source of the password: {SECRET_SOURCE_HELP}.")
    min_length: int = Field(12, ge=8, le=128, description="Shortest password accepted (8 or more).")
    admin_users: list[str] = Field(default_factory=list, description="Usernames made hub admins.")

    @field_validator("admin_users")
    @classmethod
    def _admins(cls, v: list[str]) -> list[str]:
        return check_usernames(v)

    @field_validator("password")
    @classmethod
    def _pw(cls, v: str) -> str:
        return check_secret_source(v)


Authenticator = Annotated[
    Union[Lti11, Lti13, Ldap, SharedPassword], Field(discriminator="kind")
]
AUTH_KINDS = ("lti11", "lti13", "ldap", "shared-password")


# --- the rest of the course -----------------------------------------------------------------


class Load(Strict):
    """Expected load: what the sizing plan is computed from."""

    students: int = Field(description="Students enrolled (all who may ever log in).", ge=1, le=200_000)
    concurrent: float = Field(
        0.4, description="Share of students running a server at the busiest hour (0 < x ≤ 1).", gt=0, le=1
    )
    memory_per_user: str = Field("512Mi", description="Memory limit of one student's server (512Mi, 1Gi).")
    cpu_per_user: float = Field(0.5, description="CPU cores one student's server may use.", gt=0, le=64)
    disk_per_user: str = Field("1Gi", description="Disk kept per student (their notebook volume).")

    @field_validator("memory_per_user", "disk_per_user")
    @classmethod
    def _size(cls, v: Any) -> str:
        parse_quantity(v)
        return str(v)

    @property
    def memory_bytes(self) -> int:
        return parse_quantity(self.memory_per_user)

    @property
    def disk_bytes(self) -> int:
        return parse_quantity(self.disk_per_user)


class Dates(Strict):
    start: dt.date = Field(description="First day of the course (YYYY-MM-DD).")
    end: dt.date = Field(description="Last day of the course (YYYY-MM-DD); after it, archive and destroy.")


class AcmeTls(Strict):
    acme_server: str = Field(
        "letsencrypt",
        description="letsencrypt, letsencrypt-staging, local (the embedded pebble) or an ACME directory URL.",
    )
    email: str = Field(description="Account email for the ACME server's expiry notices.")

    @field_validator("acme_server")
    @classmethod
    def _server(cls, v: str) -> str:
        if v in ("letsencrypt", "letsencrypt-staging", "local"):
            return v
        return check_url(v, field="directory")

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", v):
            raise ValueError(f"{v!r} is not an email address — write e.g. ops@example.edu")
        return v


class FileTls(Strict):
    certificate: Path = Field(description="PEM certificate (with chain) of the institution.")
    key: Path = Field(description="PEM private key matching the certificate.")


class Culling(Strict):
    idle_timeout: int = Field(3600, ge=300, le=7 * 86400, description="Seconds before an idle server is stopped.")
    max_age: int = Field(0, ge=0, description="Stop servers older than this many seconds (0 = never).")


GRADING_TOOLS = ("nbgrader",)
COURSE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Grading(Strict):
    """Assignments and grades: nbgrader's formgrader for teachers, an exchange across the course's hosts."""

    tool: Literal["nbgrader"] = Field("nbgrader", description="The grading tool: nbgrader (the only one so far).")
    course_id: str | None = Field(
        None, description="nbgrader's course id (letters, digits, . _ -); the course's name when omitted.",
    )

    @field_validator("course_id")
    @classmethod
    def _course_id(cls, v: str | None) -> str | None:
        if v is not None and not COURSE_ID_RE.match(v):
            raise ValueError(f"{v!r} is not a course id — 1–64 letters, digits, dots, underscores and hyphens, "
                             "starting with a letter or digit (e.g. stats-101)")
        return v


class Course(Strict):
    """One course, MOOC session or workshop: one JupyterHub."""

    name: str = Field(description="DNS-safe name, unique in the fleet (lowercase, digits, hyphens; 2–32).")
    title: str = Field(description="Human title shown to students.", min_length=1, max_length=200)
    provider: Literal["docker", "openstack"] = Field(
        "docker", description="Where the hosts run: docker (embedded default, this machine) or openstack."
    )
    image: str = Field("hubfleet/notebook:latest", description="Notebook image every student gets.")
    authenticator: Authenticator = Field(description="How students log in: " + ", ".join(AUTH_KINDS) + ".")
    load: Load = Field(description="Expected load.")
    dates: Dates = Field(description="When the course runs.")
    domain: str = Field(description="DNS name students open, e.g. queues.hub.example.edu.")
    tls: Union[AcmeTls, FileTls, None] = Field(None, description="HTTPS: ACME settings or own certificate files.")
    culling: Culling = Field(default_factory=Culling, description="Idle-server culling.")
    grading: Grading | None = Field(
        None, description="Assignments with nbgrader: teachers release, collect and grade in the formgrader, "
        "students fetch and submit from their own server, grades go back to the LMS. "
        "`grading: nbgrader` is short for `grading: {tool: nbgrader}`.",
    )
    ca_certificates: list[Path] = Field(
        default_factory=list,
        description="PEM files of certificate authorities every host of the course trusts besides the public "
        "ones: an institution's own CA that signs its LMS, directory or grade service (the site file's "
        "ca_certificates are added).",
    )

    @field_validator("grading", mode="before")
    @classmethod
    def _grading_shorthand(cls, v: Any) -> Any:
        return {"tool": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _grading_login(self) -> "Course":
        problem = getattr(self.authenticator, "grading_problem", None)
        found = problem() if self.grading is not None and problem else None
        if found:
            raise ValueError(f"{found[0]}: {found[1]}")
        return self

    @property
    def grading_course_id(self) -> str:
        """nbgrader's course id: the descriptor's, else the course's name."""
        return (self.grading.course_id if self.grading else None) or self.name

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(
                f"{v!r} is not DNS-safe — use 2–32 lowercase letters, digits and hyphens, "
                "starting with a letter (e.g. mooc-queues)"
            )
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if not IMAGE_RE.match(v):
            raise ValueError(f"{v!r} is not an image reference — write e.g. hubfleet/notebook:latest")
        return v

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        return check_hostname(v)

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_shape(cls, v: Any) -> Any:
        if isinstance(v, dict) and ("certificate" in v or "key" in v) and "acme_server" not in v:
            return FileTls.model_validate(v)
        if isinstance(v, dict):
            return AcmeTls.model_validate(v)
        return v

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)


# --- loading and error reporting ------------------------------------------------------------


def _field_path(loc: tuple) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("function-after", "function-before") or item in AUTH_KINDS and parts and parts[-1] == "authenticator":
            continue  # union branch names are not fields the user wrote
        elif str(item) in ("AcmeTls", "FileTls"):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _describe(err: dict, model_fields: dict | None = None) -> str:
    kind = err["type"]
    inp = err.get("input")
    if kind == "missing":
        return "missing — this field is required"
    if kind == "extra_forbidden":
        return "unknown field — remove it or check its spelling (see `hubfleet validate --schema`)"
    if kind == "union_tag_invalid":
        return f"unknown authenticator {err['ctx'].get('tag')!r} — use one of: {', '.join(AUTH_KINDS)}"
    if kind == "union_tag_not_found":
        return f"missing `kind` — use one of: {', '.join(AUTH_KINDS)}"
    if kind == "literal_error":
        return f"{inp!r} is not allowed — use one of: {err['ctx']['expected']}"
    if kind.startswith("int_") or kind.startswith("float_"):
        if "greater_than" in kind or "less_than" in kind:
            return f"{inp!r} is out of range — {err['msg'].lower()}"
        return f"{inp!r} is not a number — write a plain number such as 30"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{inp!r} is out of range — {err['msg'].lower()}"
    if kind.startswith("date_"):
        return f"{inp!r} is not a date — write YYYY-MM-DD, e.g. 2027-02-01"
    if kind in ("string_type",):
        return f"{inp!r} is not text — quote it"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "expected a mapping of fields (key: value lines), got " + type(inp).__name__
    if kind in ("list_type",):
        return "expected a list (- item lines), got " + type(inp).__name__
    if kind in ("bool_type", "bool_parsing"):
        return f"{inp!r} is not true/false"
    if kind in ("string_too_short",):
        return "is empty — give a value"
    if kind in ("string_too_long",):
        return f"is too long — {err['msg'].lower()}"
    if kind == "value_error":
        return str(err.get("ctx", {}).get("error", err["msg"]))
    return err["msg"]


def problems_from(exc: ValidationError) -> list[FieldProblem]:
    seen: set[tuple[str, str]] = set()
    out: list[FieldProblem] = []
    for err in exc.errors(include_url=False):
        path = _field_path(err["loc"])
        msg = _describe(err)
        if (path, msg) not in seen:
            seen.add((path, msg))
            out.append(FieldProblem(path, msg))
    return out


def check_dates(course: Course, today: dt.date) -> list[FieldProblem]:
    problems = []
    if course.dates.end < course.dates.start:
        problems.append(FieldProblem(
            "dates.end",
            f"{course.dates.end} is before dates.start {course.dates.start} — swap them or fix the year",
        ))
    if course.dates.end < today:
        problems.append(FieldProblem(
            "dates.end", f"{course.dates.end} is in the past (today is {today}) — a finished course needs no hub"
        ))
    return problems


def parse_course(data: Any, *, source: str = "descriptor", today: dt.date | None = None) -> Course:
    """Validate a mapping (from YAML or a form) into a Course, or raise InvalidInput with every problem."""
    if not isinstance(data, dict):
        raise InvalidInput(
            [FieldProblem("", f"the top level must be a mapping of fields, got {type(data).__name__}")],
            source=source,
        )
    try:
        course = Course.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(problems_from(exc), source=source) from None
    problems = check_dates(course, today or dt.date.today())
    if problems:
        raise InvalidInput(problems, source=source)
    return course


def read_yaml(path: Path | str, *, missing: str = "check the path") -> Any:
    """A YAML file's data, or InvalidInput naming the file, the line and the fix."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput([FieldProblem("", f"no such file: {path} — {missing}")], source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput([FieldProblem("", f"cannot read {path}: {exc}")], source=source) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise InvalidInput(
            [FieldProblem("", f"{where}not valid YAML ({getattr(exc, 'problem', exc)}) — check indentation and quotes")],
            source=source,
        ) from None


def load_course(path: Path | str, *, today: dt.date | None = None) -> Course:
    return parse_course(read_yaml(path), source=str(path), today=today)


def json_schema() -> dict:
    return Course.model_json_schema()
