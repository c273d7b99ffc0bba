"""The course descriptor: the only door for a course (CLI, portal and state all pass through it).

One pydantic model is the source of truth; `json_schema()` publishes it. Every error is turned
into a FieldProblem that names the field path, what is wrong and how to fix it.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    AfterValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hubfleet.egress import DEFAULT_MODE as DEFAULT_EGRESS
from hubfleet.egress import Mode as EgressMode
from hubfleet.errors import FieldProblem, InvalidInput
from hubfleet.inputs import MAX_SCALAR, duration_problem, read_yaml, show, text_problem
from hubfleet.usernames import ADMIN_USER, is_reserved

# Patterns are matched whole (fullmatch): `$` would let a trailing newline through.
NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,30}[a-z0-9]")
LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
IMAGE_RE = re.compile(
    r"(?:[a-z0-9.-]{1,253}(?::[0-9]{1,5})?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?"
)
QUANTITY_RE = re.compile(r"\s*([0-9]{1,12}(?:\.[0-9]{1,6})?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|k)?\s*")
UNITS = {
    "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
    "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
}
USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
IDENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}")
HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")  # a DNS name or an IPv4 address
ORIGIN_RE = re.compile(r"(https?)://(" + HOST_RE.pattern + r")(:[0-9]{1,5})?/?")
# RFC 3986's characters, without quotes, backslashes, spaces or angle brackets.
URL_RE = re.compile(r"(https?)://(" + HOST_RE.pattern + r")(:[0-9]{1,5})?(/[A-Za-z0-9._~:/?#\[\]@!$&()*+,;=%-]*)?")
ATTRIBUTE_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")
SECRET_SOURCE_HELP = "write `generate` (hubfleet creates and stores it), `env:VAR` or `file:/path`"
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
MAX_LIST = 200  # admin users, deployment ids, groups: more is a mistake, not a course
MAX_COURSE_DAYS = 5 * 366
MEMORY_RANGE = (128 * 2**20, 2**40)  # 128Mi .. 1Ti per student
DISK_RANGE = (64 * 2**20, 16 * 2**40)  # 64Mi .. 16Ti per student


def parse_quantity(value: Any) -> int:
    """'512Mi' -> bytes. A bare number is refused: the unit is never guessed."""
    if isinstance(value, bool) or value is None or not isinstance(value, (str, int, float)):
        raise ValueError(f"{show(value)} is not a size — write e.g. 512Mi or 2Gi")
    text = str(value) if not isinstance(value, int) or value.bit_length() < 64 else "x"
    m = QUANTITY_RE.fullmatch(text)
    if not m:
        raise ValueError(f"{show(value)} is not a size — write e.g. 512Mi or 2Gi")
    number, unit = m.groups()
    if unit is None:
        raise ValueError(f'"{text}" has no unit — write {text}Mi or 1Gi')
    size = int(float(number) * UNITS[unit])
    if size <= 0:
        raise ValueError(f"{text!r} must be larger than zero")
    return size


def check_size(value: Any, smallest: int, largest: int) -> str:
    """A size within [smallest, largest], as the text that was given."""
    size = parse_quantity(value)
    if not smallest <= size <= largest:
        raise ValueError(f"{show(value)} is out of range — give between {format_bytes(smallest)} and {format_bytes(largest)}")
    return str(value)


def format_bytes(size: int) -> str:
    """Bytes in the largest binary unit that keeps the number at least 1 (512Mi, 1.5Gi)."""
    for unit in ("Ti", "Gi", "Mi", "Ki"):
        if size >= UNITS[unit]:
            value = size / UNITS[unit]
            return f"{value:.0f}{unit}" if size % UNITS[unit] == 0 else f"{value:.1f}{unit}"
    return f"{size}B"


def check_image(value: str) -> str:
    if len(value) > 255 or not IMAGE_RE.fullmatch(value):
        raise ValueError(f"{show(value)} is not an image reference — write e.g. hubfleet/notebook:latest")
    return value


def check_shown(value: str) -> str:
    if not value.strip():
        raise ValueError("is blank — give the text students see")
    return value


ImageRef = Annotated[str, AfterValidator(check_image)]
ShownText = Annotated[str, AfterValidator(check_shown)]  # a title students read: not only spaces


def check_secret_source(value: str) -> str:
    if value == "generate" or (value.startswith("env:") and len(value) > 4) or (
        value.startswith("file:") and len(value) > 5
    ):
        return value
    raise ValueError(f"{show(value)} is not a secret source — {SECRET_SOURCE_HELP}")


def check_usernames(values: list[str]) -> list[str]:
    for v in values:
        if not USERNAME_RE.fullmatch(v):
            raise ValueError(f"{show(v)} is not a username — use lowercase letters, digits and . _ @ - (e.g. prof.smith)")
        if is_reserved(v) and v != ADMIN_USER:
            raise ValueError(f"{v!r} is reserved for the hub itself (hubfleet's accounts, services, system "
                             "users) — name a person's account (docs/identity.md)")
    return values


def check_ident(value: str, what: str) -> str:
    if not IDENT_RE.fullmatch(value):
        raise ValueError(f"{show(value)} is not a valid {what} — letters, digits and . _ : @ / + - only, no spaces")
    return value


def check_hostname(value: str) -> str:
    host = value.strip().lower().rstrip(".")
    labels = host.split(".")
    if len(host) > 253 or len(labels) < 2 or not all(LABEL_RE.fullmatch(lbl) for lbl in labels):
        raise ValueError(
            f"{show(value)} is not a valid DNS name — write a fully qualified name such as "
            "course.hub.example.edu (letters, digits and hyphens, at least one dot)"
        )
    if labels[-1].isdigit():
        raise ValueError(f"{show(value)} is an IP address — give the DNS name students will open")
    return host


def check_url(value: str, *, field: str, https_only: bool = True) -> str:
    m = URL_RE.fullmatch(value)
    if not m or (m.group(3) and not 0 < int(m.group(3)[1:]) < 65536):
        raise ValueError(f"{show(value)} is not a URL — write e.g. https://lms.example.edu/{field}")
    if https_only and m.group(1) != "https" and m.group(2) not in ("localhost", "127.0.0.1"):
        raise ValueError(f"{show(value)} must use https:// (only localhost may use http://)")
    return value


def check_origin(value: str) -> str:
    """An origin (scheme://host[:port]), as browsers and CSP frame-ancestors compare it; no path."""
    m = ORIGIN_RE.fullmatch(value)
    if not m or (m.group(3) and not 0 < int(m.group(3)[1:]) < 65536):
        raise ValueError(f"{show(value)} is not an origin — write the LMS's scheme and host only, "
                         "e.g. https://courses.edx.org")
    if m.group(1) != "https" and m.group(2) not in ("localhost", "127.0.0.1"):
        raise ValueError(f"{show(value)} must use https:// (only localhost may use http://)")
    return value.rstrip("/")


class Strict(BaseModel):
    """Every model of the descriptor: unknown keys refused, no NaN or infinity, text bounded and printable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False,
                              str_max_length=MAX_SCALAR)

    @field_validator("*", mode="after")
    @classmethod
    def _printable(cls, value: Any) -> Any:
        # Values end up in Python, INI, env and nginx files and in HTML: no control character gets there.
        for position, item in enumerate(value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(item, (str, Path)):
                problem = text_problem(str(item))
                if problem:
                    raise ValueError(f"item {position + 1} {problem}" if isinstance(value, (list, tuple)) else problem)
        return value


# --- authenticators -------------------------------------------------------------------------


class Lti11(Strict):
    """LTI 1.1 (edX, Moodle's legacy External tool): OAuth 1.0a signed launches."""

    kind: Literal["lti11"] = Field(description="LTI 1.1, as edX and Moodle's legacy mode send it.")
    secret: str = Field(
        description="Where the consumer secret comes from: `generate` (hubfleet creates one per "
        "course and stores it as a secret), `env:VAR` or `file:/path`."
    )
    consumer_key: str | None = Field(
        None, description="Consumer key; the course name when omitted.", min_length=1, max_length=128
    )
    username_key: str = Field(
        "user_id",
        description="Launch field that becomes the JupyterHub username: user_id, "
        "lis_person_sourcedid or ext_user_username (or any custom_* field).", max_length=64,
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
            raise ValueError(f"{show(v)} has a colon — edX splits its LTI passport (id:key:secret) on colons")
        return None if v is None else check_ident(v, "consumer key")

    @field_validator("username_key")
    @classmethod
    def _username_key(cls, v: str) -> str:
        known = {"user_id", "lis_person_sourcedid", "ext_user_username", "lis_person_contact_email_primary"}
        if v not in known and not re.fullmatch(r"custom_[a-z0-9_]{1,57}", v):
            raise ValueError(f"{show(v)} is not a launch field — use one of {sorted(known)} or custom_*")
        return v

    @field_validator("lms_origin")
    @classmethod
    def _origin(cls, v: str | None) -> str | None:
        return None if v is None else check_origin(v)


class Lti13(Strict):
    """LTI 1.3 (Moodle 4.x, Canvas): OIDC login initiation and RS256 id_tokens."""

    kind: Literal["lti13"] = Field(description="LTI 1.3 / LTI Advantage.")
    issuer: str = Field(description="The platform's issuer (iss), e.g. https://moodle.example.edu.")
    client_id: str = Field(description="Client id the platform gave this tool.", min_length=1)
    deployment_ids: list[str] = Field(
        default_factory=list, description="Accepted deployment ids; any when empty.", max_length=MAX_LIST
    )
    authorize_url: str = Field(description="Platform's OIDC authentication request URL.")
    jwks_url: str = Field(description="Platform's public keyset (JWKS) URL.")
    username_key: str = Field(
        "sub", description="id_token claim that becomes the username (sub, email, name...).", max_length=64
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
        if v is None:
            return None
        if len(v) > 2048:
            raise ValueError(f"is {len(v)} characters long — a URL fits in 2048")
        return check_url(v, field=info.field_name)

    @field_validator("username_key")
    @classmethod
    def _claim(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:/-]{0,63}", v):
            raise ValueError(f"{show(v)} is not a claim name — e.g. sub, email or preferred_username")
        return v

    @field_validator("lms_origin")
    @classmethod
    def _origin(cls, v: str | None) -> str | None:
        return None if v is None else check_origin(v)


def check_dn(value: str, what: str) -> str:
    """A distinguished name: attribute=value pairs, no quotes or braces (they would reach config files)."""
    if len(value) > 1024 or not re.fullmatch(r"[^\"'{}]+=[^\"'{}]+", value):
        raise ValueError(f"{show(value)} is not a {what} — e.g. cn=hub,ou=services,dc=example,dc=edu")
    return value


class LdapSearch(Strict):
    bind_dn: str = Field(description="DN hubfleet's hub binds as to search for users.")
    bind_password: str = Field(description=f"Secret source of the bind password: {SECRET_SOURCE_HELP}.")
    base_dn: str = Field(description="Where users are searched, e.g. ou=people,dc=example,dc=edu.")
    user_attribute: str = Field("uid", description="Attribute holding the login name.")

    @field_validator("bind_password")
    @classmethod
    def _pw(cls, v: str) -> str:
        return check_secret_source(v)

    @field_validator("bind_dn", "base_dn")
    @classmethod
    def _dns(cls, v: str, info) -> str:
        return check_dn(v, "DN")

    @field_validator("user_attribute")
    @classmethod
    def _attribute(cls, v: str) -> str:
        if not ATTRIBUTE_RE.fullmatch(v):
            raise ValueError(f"{show(v)} is not an attribute name — e.g. uid or sAMAccountName")
        return v


class LdapHealthAccount(Strict):
    """An account of the directory that `hubfleet status` logs in with, as a student would."""

    username: str = Field(description="Its login name, e.g. hubhealth (an account made for this, in allowed_groups).")
    password: str = Field(description="Where its password comes from: env:VAR or file:/path (never `generate`: the "
                          "directory holds it).")

    @field_validator("username")
    @classmethod
    def _username(cls, v: str) -> str:
        return check_usernames([v])[0]

    @field_validator("password")
    @classmethod
    def _password(cls, v: str) -> str:
        if v == "generate":
            raise ValueError("`generate` cannot work: the directory already has this account's password — write "
                             "env:VAR or file:/path")
        return check_secret_source(v)


class Ldap(Strict):
    """The university's LDAP directory."""

    kind: Literal["ldap"] = Field(description="Log in with the directory's password.")
    server_uri: str = Field(description="ldaps://ldap.example.edu or ldap://host with starttls.")
    starttls: bool = Field(False, description="Upgrade ldap:// with StartTLS.")
    bind_dn_template: list[str] = Field(
        default_factory=list, max_length=10,
        description="Direct bind templates, e.g. uid={username},ou=people,dc=example,dc=edu.",
    )
    search: LdapSearch | None = Field(None, description="Search-then-bind settings.")
    allowed_groups: list[str] = Field(default_factory=list, description="Group DNs allowed in.", max_length=MAX_LIST)
    admin_users: list[str] = Field(default_factory=list, description="Usernames made hub admins.",
                                   max_length=MAX_LIST)
    health_account: LdapHealthAccount | None = Field(
        None, description="An account `hubfleet status` and reconcile log in with, as students do; absent, "
        "health does not try a student's login.")

    @field_validator("server_uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        m = re.fullmatch(r"ldaps?://(" + HOST_RE.pattern + r")(:[0-9]{1,5})?/?", v)
        if not m or (m.group(2) and not 0 < int(m.group(2)[1:]) < 65536):
            raise ValueError(f"{show(v)} is not an LDAP URI — write ldaps://ldap.example.edu")
        return v.rstrip("/")

    @field_validator("bind_dn_template")
    @classmethod
    def _templates(cls, v: list[str]) -> list[str]:
        for t in v:
            if "{username}" not in t:
                raise ValueError(f"{show(t)} has no {{username}} placeholder — e.g. uid={{username}},ou=people,dc=x")
            check_dn(t.replace("{username}", "x"), "bind DN template")
        return v

    @field_validator("allowed_groups")
    @classmethod
    def _groups(cls, v: list[str]) -> list[str]:
        for dn in v:
            check_dn(dn, "group DN — e.g. cn=numerics,ou=groups,dc=example,dc=edu; this")
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
        host = re.sub(r"^ldaps?://", "", self.server_uri).split(":")[0].lower()
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
    admin_users: list[str] = Field(default_factory=list, description="Usernames made hub admins.",
                                   max_length=MAX_LIST)

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
    memory_per_user: str = Field("512Mi", description="Memory limit of one student's server (512Mi, 1Gi), "
                                 "128Mi to 1Ti.")
    cpu_per_user: float = Field(0.5, description="CPU cores one student's server may use (0.01 to 64).",
                                ge=0.01, le=64)
    disk_per_user: str = Field("1Gi", description="Disk kept per student (their notebook volume), 64Mi to 16Ti.")
    max_hosts: int | None = Field(
        None, ge=1, le=64,
        description="Hosts the course may grow to when a rush fills it (elastic hosts: added near capacity, "
        "removed once empty again). Omitted: twice the planned hosts, at least one more (`hubfleet plan` "
        "shows it); the planned count turns elasticity off.",
    )

    @field_validator("memory_per_user", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> str:
        return check_size(v, *MEMORY_RANGE)

    @field_validator("disk_per_user", mode="before")
    @classmethod
    def _disk(cls, v: Any) -> str:
        return check_size(v, *DISK_RANGE)

    @property
    def memory_bytes(self) -> int:
        return parse_quantity(self.memory_per_user)

    @property
    def disk_bytes(self) -> int:
        return parse_quantity(self.disk_per_user)


class Dates(Strict):
    """The term: `hubfleet reconcile` creates the hub `warm_before` the start, and archives and removes it
    `grace_after` the end (both default to the site file's `term` section)."""

    start: dt.date = Field(description="First day of the course (YYYY-MM-DD).")
    end: dt.date = Field(description="Last day of the course (YYYY-MM-DD); after it, archive and destroy.")
    warm_before: str | None = Field(
        None, description="How long before the start the hub is made and warmed by `hubfleet reconcile`: a "
        "duration such as \"2d\", \"12h\" (absent: the site's term.warm_before, 2d).")
    grace_after: str | None = Field(
        None, description="How long after the end students can still log in and download their work, a banner "
        "telling them so, before the hub is archived and removed: a duration such as \"14d\" (absent: the "
        "site's term.grace_after, 14d).")

    @field_validator("warm_before", "grace_after", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if v is not None and (problem := duration_problem(v)):
            raise ValueError(problem)
        return v


class AcmeTls(Strict):
    """A certificate from an ACME server over HTTP-01."""

    acme_server: str | None = Field(
        None,
        description="letsencrypt, letsencrypt-staging, local (the embedded pebble) or an ACME directory URL; "
        "omitted, the provider's own (`hubfleet plan` shows it: local on docker, letsencrypt on openstack).",
    )
    email: str | None = Field(
        None, description="Account email for the ACME server's notices (optional: hubfleet renews on the host, "
        "and `hubfleet status` warns two weeks before expiry).", max_length=254,
    )

    @field_validator("acme_server")
    @classmethod
    def _server(cls, v: str | None) -> str | None:
        if v is None or v in ("letsencrypt", "letsencrypt-staging", "local"):
            return v
        if any(char in v for char in "#,;"):  # certbot's renewal file would read them as a comment or a list
            raise ValueError(f"{show(v)} is not an ACME directory URL — it has no fragment, comma or semicolon")
        return check_url(v, field="directory")

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not EMAIL.fullmatch(v):
            raise ValueError(f"{show(v)} is not an email address — write e.g. ops@example.edu")
        return v


class FileTls(Strict):
    """The institution's own certificate files (on the machine running hubfleet)."""

    certificate: Path = Field(description="PEM certificate (with chain) of the institution.")
    key: Path = Field(description="PEM private key matching the certificate.")


DEFAULT_PRESSURE_TIMEOUT = 600


class Culling(Strict):
    idle_timeout: int = Field(3600, ge=300, le=7 * 86400, description="Seconds before an idle server is stopped "
                              "(checked each minute). A kernel running code is activity: a computation is never "
                              "stopped as idle; max_age still ends it.")
    max_age: int = Field(0, ge=0, le=366 * 86400,
                         description="Stop servers older than this many seconds (0 = never; at most a year).")
    pressure_timeout: int | None = Field(
        None, ge=60, le=7 * 86400,
        description="While the course is full and students wait in line, servers idle this many seconds are "
        "stopped for them, the longest idle first; a server whose kernel is running code is never stopped "
        "for a newcomer. Omitted: 600, or idle_timeout when that is shorter.",
    )

    @field_validator("pressure_timeout")
    @classmethod
    def _pressure_shorter(cls, v: int | None, info) -> int | None:
        idle = info.data.get("idle_timeout")
        if v is not None and idle is not None and v > idle:
            raise ValueError(f"{v} is longer than idle_timeout {idle} — under pressure servers are stopped "
                             f"sooner, not later: give at most {idle}")
        return v

    @property
    def pressure_seconds(self) -> int:
        """The idle time after which a server is stopped for a waiting student."""
        return self.pressure_timeout if self.pressure_timeout is not None else min(DEFAULT_PRESSURE_TIMEOUT,
                                                                                   self.idle_timeout)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CLOCK_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


class ClassSession(Strict):
    """One recurring class: the weekdays and the hour students arrive together."""

    days: list[str] = Field(description="Weekdays of the class: mon, tue, wed, thu, fri, sat, sun.",
                            min_length=1, max_length=7)
    start: str = Field(description="When the class starts, HH:MM in class_hours.timezone (e.g. \"14:15\").")
    minutes: int = Field(90, ge=10, le=720, description="How long the class lasts (10 to 720 minutes).")
    students: int | None = Field(
        None, ge=1, le=200_000,
        description="Students expected at once in this class; load.students when omitted.",
    )

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list):
            bad = [d for d in v if not isinstance(d, str) or d.strip().lower()[:3] not in WEEKDAYS]
            if bad:
                raise ValueError(f"{show(bad[0])} is not a weekday — write mon, tue, wed, thu, fri, sat or sun")
            return list(dict.fromkeys(d.strip().lower()[:3] for d in v))
        return v

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 24 * 60:
            v = f"{v // 60:02d}:{v % 60:02d}"  # YAML 1.1 reads an unquoted 14:15 as 855 minutes
        if not isinstance(v, str) or not CLOCK_RE.fullmatch(v):
            raise ValueError(f"{show(v)} is not a time of day — write HH:MM in quotes, e.g. \"14:15\"")
        return v


class ClassHours(Strict):
    """Recurring class hours: hubfleet warms the course before each (image, volumes, hosts for the class)."""

    timezone: str = Field("UTC", description="IANA time zone of the class hours, e.g. Europe/Zurich.",
                          max_length=64)
    warm_before: int = Field(15, ge=0, le=240,
                             description="Minutes before each class when its capacity must be ready (0 to 240).")
    sessions: list[ClassSession] = Field(description="The weekly classes.", min_length=1, max_length=50)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            if not re.fullmatch(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+){0,2}", v):
                raise ValueError
            zoneinfo.ZoneInfo(v)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise ValueError(f"{show(v)} is not a time zone — write an IANA name such as Europe/Zurich or UTC") from None
        return v


ENVIRONMENT_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,30}")


class Environment(Strict):
    """One environment students may choose on the spawn page: an image, with its own limits if it needs them."""

    name: str = Field(description="Short name (lowercase letters, digits, hyphens): an LTI link picks it with "
                      "/hub/spawn?environment=NAME.", max_length=31)
    title: ShownText = Field(description="What students read on the spawn page.", min_length=1, max_length=80)
    image: ImageRef = Field(description="Its notebook image.", max_length=255)
    memory_per_user: str | None = Field(None, description="Its memory limit (load.memory_per_user when omitted).")
    cpu_per_user: float | None = Field(None, ge=0.01, le=64,
                                       description="Its CPU limit (load.cpu_per_user when omitted).")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not ENVIRONMENT_NAME_RE.fullmatch(v):
            raise ValueError(f"{show(v)} is not a name — use lowercase letters, digits and hyphens, starting with a "
                             "letter (e.g. python or r-studio)")
        return v

    @field_validator("memory_per_user", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> str | None:
        return None if v is None else check_size(v, *MEMORY_RANGE)


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


SHARED_ARCHIVES = (".tar.gz", ".tgz", ".tar", ".zip")


class SharedData(Strict):
    """The course's shared folder, `shared` in everyone's home: students read it, teachers write it."""

    source: Path | None = Field(
        None, description="A directory, or a .tar.gz, .tgz, .tar or .zip archive, on the machine running hubfleet "
        "(an absolute path: reconcile may run elsewhere) whose files fill the folder at the first create and "
        "again whenever they change (files of the same name are replaced, the teachers' other files stay). "
        "Absent: the folder starts empty.")

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, v: Any) -> Any:
        if isinstance(v, str) and (not v.strip() or any(c in v for c in "\n\r\x00")):
            raise ValueError("give the path of a directory or an archive (.tar.gz, .tgz, .tar, .zip)")
        return v


class Course(Strict):
    """One course, MOOC session or workshop: one JupyterHub."""

    name: str = Field(description="DNS-safe name, unique in the fleet (lowercase, digits, hyphens; 2–32).",
                      max_length=32)
    title: ShownText = Field(description="Human title shown to students.", min_length=1, max_length=200)
    provider: Literal["docker", "openstack"] = Field(
        "docker", description="Where the hosts run: docker (embedded default, this machine) or openstack."
    )
    image: ImageRef = Field("hubfleet/notebook:latest", description="Notebook image every student gets (with "
                       "`environments`: the first one's, not given).", max_length=255)
    environments: list[Environment] | None = Field(
        None, min_length=1, max_length=10,
        description="Several environments students choose from on the spawn page (the first is the default): "
        "each a name, a title, an image and optionally its own memory_per_user and cpu_per_user. Every image is "
        "placed on every host; the plan sizes for the largest.")
    image_switch_at: dt.datetime | None = Field(
        None, description="When a changed image (or limits) reaches every student at once: at this moment "
        "(ISO 8601, UTC unless zoned) `hubfleet reconcile` stops the servers started before the course's last "
        "change, and students start again into it, their files kept. Absent: each student gets it at their "
        "next start.")
    authenticator: Authenticator = Field(description="How students log in: " + ", ".join(AUTH_KINDS) + ".")
    load: Load = Field(description="Expected load.")
    dates: Dates = Field(description="When the course runs.")
    domain: str = Field(description="DNS name students open, e.g. queues.hub.example.edu.", max_length=253)
    tls: Union[AcmeTls, FileTls] = Field(
        default_factory=AcmeTls,
        description="HTTPS, always on: ACME settings or the institution's certificate files. Omitted, a "
        "certificate from the provider's ACME server (the embedded one on docker, Let's Encrypt on openstack); "
        "plain HTTP is not offered.",
    )
    culling: Culling = Field(default_factory=Culling, description="Idle-server culling.")
    egress: EgressMode = Field(
        DEFAULT_EGRESS, description="Where students' servers may connect to: open (the internet), package-index (only "
        "the site's package indexes, through a proxy on each host: pip, conda, apt) or none (nothing outside the "
        "hub). In every mode never to another student's server, the hosts' services, the cloud's metadata "
        "address or the operator's networks (docs/egress.md).")
    contacts: list[str] = Field(
        default_factory=list, max_length=20,
        description="Teachers' email addresses: `hubfleet reconcile` mails them when the hub is ready, when its "
        "end is near and when it is archived (through the site file's `mail` server).")
    grading: Grading | None = Field(
        None, description="Assignments with nbgrader: teachers release, collect and grade in the formgrader, "
        "students fetch and submit from their own server, grades go back to the LMS. "
        "`grading: nbgrader` is short for `grading: {tool: nbgrader}`.",
    )
    class_hours: ClassHours | None = Field(
        None, description="Recurring class hours: before each class hubfleet makes sure every host has the "
        "image, the expected students' volumes exist and the hosts for the class are up (`hubfleet warm`, "
        "run by `hubfleet autoscale`).",
    )
    shared_data: SharedData | None = Field(
        None, description="A shared folder in everyone's home (`shared`): students read it, teachers (the course's "
        "admins and LMS instructors) write it, on every host of the course; kept in the archive. "
        "`shared_data: PATH` is short for `shared_data: {source: PATH}` (docs/shared-data.md).")
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

    @field_validator("shared_data", mode="before")
    @classmethod
    def _shared_data_shorthand(cls, v: Any) -> Any:
        return {"source": v} if isinstance(v, str) else v

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
        if not NAME_RE.fullmatch(v):
            raise ValueError(
                f"{show(v)} is not DNS-safe — use 2–32 lowercase letters, digits and hyphens, "
                "starting with a letter (e.g. mooc-queues)"
            )
        return v

    @field_validator("contacts")
    @classmethod
    def _contacts(cls, v: list[str]) -> list[str]:
        for address in v:
            if not isinstance(address, str) or not EMAIL.fullmatch(address):
                raise ValueError(f"{show(address)} is not an email address — write e.g. teacher@example.edu")
        if len(set(v)) != len(v):
            raise ValueError("an address is listed twice — give each contact once")
        return v

    @field_validator("environments")
    @classmethod
    def _environments(cls, v: list[Environment] | None) -> list[Environment] | None:
        seen = [e.name for e in v or []]
        twice = next((n for n in seen if seen.count(n) > 1), None)
        if twice:
            raise ValueError(f"{twice!r} is named twice — give each environment its own name")
        return v

    @model_validator(mode="before")
    @classmethod
    def _default_environment(cls, data: Any) -> Any:
        """With `environments`, the course's image is the first one's: `image` is not given beside them."""
        if not isinstance(data, dict) or data.get("environments") is None:
            return data
        first = data["environments"][0] if isinstance(data["environments"], list) and data["environments"] else None
        default = first.get("image") if isinstance(first, dict) and isinstance(first.get("image"), str) else None
        if "image" in data and data["image"] != default:  # a recorded course holds both, the same
            raise ValueError("image: give the image in `environments` (the first is the default) and remove the "
                             "`image` line")
        return {**data, "image": default} if default else data

    @property
    def images(self) -> list[str]:
        """Every image the course offers, the default first, each once."""
        return list(dict.fromkeys([self.image, *(e.image for e in self.environments or [])]))

    def limits_of(self, environment: Environment | None = None) -> tuple[int, float]:
        """(memory bytes, CPU) a server of this environment may use (the course's load without one)."""
        memory = environment.memory_per_user if environment and environment.memory_per_user else None
        cpu = environment.cpu_per_user if environment and environment.cpu_per_user is not None else None
        return (parse_quantity(memory) if memory else self.load.memory_bytes,
                self.load.cpu_per_user if cpu is None else cpu)

    @property
    def largest_limits(self) -> tuple[int, float]:
        """What the plan sizes for: the largest memory and CPU any environment is given."""
        limits = [self.limits_of(e) for e in self.environments or []] or [self.limits_of()]
        return max(m for m, _ in limits), max(c for _, c in limits)

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        return check_hostname(v)

    @model_validator(mode="before")
    @classmethod
    def _https_by_default(cls, data: Any) -> Any:
        """No `tls` (or ACME settings naming no server): the provider's own ACME server."""
        if not isinstance(data, dict):
            return data
        tls = data.get("tls", {})
        if isinstance(tls, dict) and tls.get("acme_server") is None and "certificate" not in tls and "key" not in tls:
            from hubfleet.providers import default_acme_server

            server = default_acme_server(data.get("provider", "docker"))
            if server is not None:
                return {**data, "tls": {**tls, "acme_server": server}}
        return data

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_shape(cls, v: Any) -> Any:
        if v is None or v is False or v in ("off", "none", "no", "http"):
            raise ValueError(
                "HTTPS cannot be turned off: every hub is served over HTTPS — remove the `tls` line for a "
                "certificate from the provider's ACME server, or give ACME settings or the institution's "
                "certificate files (see docs/tls.md)"
            )
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
            name = str(item)
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", name):  # a key the user wrote may be anything
                name = show(name, 40)
            parts.append(("." if parts else "") + name)
    return "".join(parts)


def _describe(err: dict, model_fields: dict | None = None) -> str:
    kind = err["type"]
    inp = err.get("input")
    if kind == "missing":
        return "missing — this field is required"
    if kind == "extra_forbidden":
        return "unknown field — remove it or check its spelling (see `hubfleet validate --schema`)"
    if kind == "union_tag_invalid":
        return f"unknown authenticator {show(err['ctx'].get('tag'))} — use one of: {', '.join(AUTH_KINDS)}"
    if kind == "union_tag_not_found":
        return f"missing `kind` — use one of: {', '.join(AUTH_KINDS)}"
    if kind == "literal_error":
        return f"{show(inp)} is not allowed — use one of: {err['ctx']['expected']}"
    if kind.startswith("int_") or kind.startswith("float_"):
        if "greater_than" in kind or "less_than" in kind:
            return f"{show(inp)} is out of range — {err['msg'].lower()}"
        return f"{show(inp)} is not a number — write a plain number such as 30"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{show(inp)} is out of range — {err['msg'].lower()}"
    if kind.startswith("date_"):
        return f"{show(inp)} is not a date — write YYYY-MM-DD, e.g. 2027-02-01"
    if kind in ("string_type",):
        return f"{show(inp)} is not text — quote it"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "expected a mapping of fields (key: value lines), got " + type(inp).__name__
    if kind in ("list_type",):
        return "expected a list (- item lines), got " + type(inp).__name__
    if kind in ("bool_type", "bool_parsing"):
        return f"{show(inp)} is not true/false"
    if kind in ("string_too_short",):
        return "is empty — give a value"
    if kind in ("string_too_long",):
        return f"is too long — {err['msg'].lower()}"
    if kind == "value_error":
        return str(err.get("ctx", {}).get("error", err["msg"]))
    return err["msg"]


FIELD_FIRST = re.compile(r"([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*): (.+)", re.S)


def problems_from(exc: ValidationError) -> list[FieldProblem]:
    seen: set[tuple[str, str]] = set()
    out: list[FieldProblem] = []
    for err in exc.errors(include_url=False):
        path = _field_path(err["loc"])
        msg = _describe(err)
        named = FIELD_FIRST.fullmatch(msg) if not path else None
        if named:  # a check across fields names the one to fix first ("image: ...")
            path, msg = named.groups()
        msg = msg if len(msg) <= 600 else msg[:599] + "…"  # whatever was typed, the message stays readable
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
    if (course.dates.end - course.dates.start).days > MAX_COURSE_DAYS:
        problems.append(FieldProblem(
            "dates.end", f"{course.dates.end} is more than five years after dates.start {course.dates.start} — "
                         "give the dates of one course (a new session gets its own hub)"
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


def parse_recorded(descriptor: dict, *, source: str = "recorded descriptor") -> Course:
    """A course as the state store (or a portal request) recorded it; its dates are history, not input.

    Records made before every hub was HTTPS hold `tls: null`: they get the default now, and the next
    `create` serves them over HTTPS.
    """
    data = dict(descriptor) if isinstance(descriptor, dict) else descriptor
    if isinstance(data, dict) and "tls" in data and data["tls"] is None:
        del data["tls"]
    return parse_course(data, source=source, today=dt.date.min)


def load_course(path: Path | str, *, today: dt.date | None = None) -> Course:
    return parse_course(read_yaml(path), source=str(path), today=today)


def json_schema() -> dict:
    return Course.model_json_schema()
