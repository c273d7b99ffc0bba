"""The portal's settings: one validated YAML file (defaults for everything but the accounts).

Validated like a course descriptor: unknown keys are refused and every problem names its field.
LDAP sign-in reuses the descriptor's `Ldap` model, so the directory is described the same way
for a course and for the portal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from hubfleet.descriptor import (
    DISK_RANGE, MEMORY_RANGE, AcmeTls, ImageRef, Ldap, Strict, check_hostname, check_size, check_url, problems_from,
    read_yaml,
)
from hubfleet.errors import FieldProblem, InvalidInput
from hubfleet.mail import SmtpSettings

CONFIG_FILE = "portal.yaml"


class ImageChoice(Strict):
    """One notebook image teachers may pick, with what each student's server gets."""

    image: ImageRef = Field(description="Image reference, e.g. hubfleet/notebook:latest.")  # a descriptor's rule
    label: str = Field(description="What teachers see in the list.", min_length=1, max_length=120)
    memory_per_user: str = Field("512Mi", description="Memory limit of one student's server.")
    cpu_per_user: float = Field(0.5, description="CPU cores of one student's server (0.01 to 64).", ge=0.01, le=64)

    @field_validator("memory_per_user", mode="before")
    @classmethod
    def _memory(cls, v: str) -> str:
        return check_size(v, *MEMORY_RANGE)


class CourseDefaults(Strict):
    """What every requested course gets that teachers do not choose."""

    disk_per_user: str = Field("1Gi", description="Disk kept per student.")
    idle_timeout: int = Field(3600, ge=300, le=7 * 86400, description="Seconds before an idle server stops.")

    @field_validator("disk_per_user", mode="before")
    @classmethod
    def _disk(cls, v: str) -> str:
        return check_size(v, *DISK_RANGE)


class LoginLimits(Strict):
    per_account: int = Field(5, ge=1, le=1000, description="Failed sign-ins for one account from one address "
                             "before that address is paused for that account (never for everyone).")
    per_ip: int = Field(20, ge=1, le=10000, description="Failed sign-ins from one address before a pause.")
    window_seconds: int = Field(900, ge=10, le=86400, description="How long failures are remembered.")


class PortalConfig(Strict):
    """The portal's settings file (portal.yaml in the state dir, or --config)."""

    public_url: str = Field("http://127.0.0.1:8088", description="URL people open; links in emails use it.")
    provider: str = Field("docker", description="Where approved courses are created: docker or openstack.")
    base_domain: str = Field("hub.localhost", description="A course's domain is <name>.<base_domain>.")
    teachers_choose_domain: bool = Field(False, description="Let teachers give their own domain.")
    images: list[ImageChoice] = Field(
        default_factory=lambda: [ImageChoice(image="hubfleet/notebook:latest", label="Python (hubfleet notebook)")],
        description="Images teachers pick from; seeds the operator-curated list when it is empty.",
    )
    course_defaults: CourseDefaults = Field(default_factory=CourseDefaults)
    tls: AcmeTls | None = Field(
        None, description="ACME settings every course gets; without them each course gets a certificate from its "
        "provider's ACME server (the embedded one on docker, Let's Encrypt on openstack). Hubs are always HTTPS.")
    smtp: SmtpSettings | None = Field(None, description="Where notification emails go out (none: not sent).")
    ldap: Ldap | None = Field(None, description="Sign teachers in with the directory (direct bind templates).")
    ldap_ca_certificate: Path | None = Field(
        None, description="PEM file of the CA that signed the directory's certificate; the system's CAs when "
        "omitted. The directory's certificate is always verified (name and chain).")
    ldap_mail_domain: str | None = Field(None, description="Directory users' email is <username>@<this>.")
    login_limits: LoginLimits = Field(default_factory=LoginLimits)
    workers: int = Field(2, ge=1, le=16, description="Courses created or destroyed at the same time.")
    behind_proxy: int = Field(0, ge=0, le=4, description="Reverse proxies in front (trust X-Forwarded-*).")

    @field_validator("public_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v, field="portal", https_only=False).rstrip("/")

    @field_validator("provider")
    @classmethod
    def _provider(cls, v: str) -> str:
        if v not in ("docker", "openstack"):
            raise ValueError(f"{v!r} is not a provider — use docker or openstack")
        return v

    @field_validator("base_domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        return check_hostname(v)

    @field_validator("ldap_mail_domain")
    @classmethod
    def _mail_domain(cls, v: str | None) -> str | None:
        return None if v is None else check_hostname(v)

    @field_validator("ldap_ca_certificate")
    @classmethod
    def _ca(cls, v: Path | None) -> Path | None:
        if v is None:
            return None
        try:
            text = v.read_text(encoding="utf-8", errors="replace")[:1_000_000]
        except OSError as exc:
            raise ValueError(f"cannot read {v}: {exc.strerror or exc} — give the directory's CA certificate (PEM)")
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise ValueError(f"{v} holds no PEM certificate — give the CA certificate, -----BEGIN CERTIFICATE-----")
        return v

    @field_validator("ldap", mode="before")
    @classmethod
    def _ldap_kind(cls, v: Any) -> Any:
        return {"kind": "ldap", **v} if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _ldap_shape(self) -> "PortalConfig":
        if self.ldap and not self.ldap.bind_dn_template:
            raise ValueError("ldap: the portal signs in with bind_dn_template only — add one, "
                             "e.g. uid={username},ou=people,dc=example,dc=edu")
        if self.ldap and not self.ldap_mail_domain:
            raise ValueError("ldap is set but ldap_mail_domain is not — give the domain of directory users' email")
        if self.ldap_ca_certificate and not self.ldap:
            raise ValueError("ldap_ca_certificate is set but ldap is not — remove it or configure ldap")
        return self

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")


def parse_config(data: Any, *, source: str = CONFIG_FILE) -> PortalConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput([FieldProblem("", "the portal settings must be a mapping of fields")], source=source)
    try:
        return PortalConfig.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(problems_from(exc), source=source) from None


def load_config(path: Path | None) -> PortalConfig:
    """The settings from `path`; defaults when no file is given."""
    if path is None:
        return PortalConfig()
    data = read_yaml(path)
    return parse_config(data, source=str(path))
