"""The OpenStack provider's site settings: which cloud, which image, which networks, how long to wait.

They are the top-level fields of the site file (hubfleet/site.py finds it; its `addresses` and
`docker` sections hold for every provider and are read there). The file names the cloud but never
holds its credentials: those stay in clouds.yaml (openstacksdk's own conventions, `OS_CLOUD` /
`OS_CLIENT_CONFIG_FILE`), and a credential here is refused. Every error names the field and the fix.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hubfleet.descriptor import check_hostname, problems_from, read_yaml
from hubfleet.errors import FieldProblem, InvalidInput
from hubfleet.site import SITE_ENV, SITE_FILE, SITE_WIDE_KEYS, site_path

# Keys that would put a credential into the site file: it belongs in clouds.yaml.
CREDENTIAL_KEYS = {"password", "auth", "application_credential_secret", "token", "secret", "os_password"}


def _network(value: str, advice: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address range as written (host bits allowed), or the error that says what to write instead."""
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not a network — write {advice}") from None


class OpenStackSite(BaseModel):
    """Where a site's OpenStack courses run. Credentials are not here: see clouds.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cloud: str | None = Field(
        None, min_length=1,
        description="Name of the cloud in clouds.yaml; when omitted, openstacksdk's OS_CLOUD is used.",
    )
    image: str = Field(
        min_length=1,
        description="Name (or id) of the base image the hosts boot from, e.g. debian-12; it needs cloud-init.",
    )
    ssh_user: str = Field(
        "debian", min_length=1, description="Login user the base image's cloud-init creates (debian, ubuntu...)."
    )
    external_network: str = Field(
        min_length=1, description="External network the hub's floating IP and the course router use, e.g. public."
    )
    network: str | None = Field(
        None, min_length=1,
        description="An existing project network to attach hosts to; when omitted hubfleet creates one per "
        "course (network, subnet and a router to external_network).",
    )
    subnet_cidr: str = Field(
        "10.42.0.0/24", description="Address range of the network hubfleet creates per course (unused with network)."
    )
    dns_nameservers: list[str] = Field(
        default_factory=list, description="Resolvers for the per-course subnet; the cloud's default when empty."
    )
    flavors: list[str] = Field(
        default_factory=list,
        description="Flavor names the sizing plan may choose from, in the cloud's list; all flavors when empty.",
    )
    operator_cidr: str = Field(
        description="Where the operator (and Ansible) connects from: SSH is open to this range only, "
        "e.g. 192.0.2.0/24 or 198.51.100.7/32.",
    )
    dns_zone: str | None = Field(
        None,
        description="A DNS (Designate) zone hubfleet may add the course's record to, e.g. hub.example.edu.; "
        "without it (or without Designate) hubfleet reports the IP to put in DNS.",
    )
    engine: Literal["sdk", "terraform"] = Field(
        "sdk", description="How hosts are created: sdk (openstacksdk, default) or terraform (terraform/openstack)."
    )
    host_image: str = Field(
        "auto", min_length=1,
        description="What hosts boot: stock (`image` as it is: the roles install everything), baked (the image "
        "`hubfleet bake openstack` made from `image` for the current roles; refused when there is none), auto "
        "(baked when there is a current one, else stock), or the name of an image to boot as it is (e.g. one "
        "baked elsewhere).",
    )
    wait_ssh: bool = Field(
        True, description="After servers are ACTIVE, wait until every host takes the course's SSH key "
        "(turn off only for clouds whose servers never boot).",
    )
    ssh_timeout: int = Field(300, ge=10, le=3600, description="Seconds to wait until every host takes SSH logins.")
    active_timeout: int = Field(600, ge=10, le=7200, description="Seconds to wait for servers to become ACTIVE.")
    delete_timeout: int = Field(300, ge=10, le=3600, description="Seconds to wait for servers to be deleted.")
    terraform_module: Path | None = Field(
        None, description="Terraform module to use with engine: terraform; hubfleet's terraform/openstack when omitted."
    )
    terraform_binary: str = Field("terraform", min_length=1, description="The terraform command (name or path).")

    @field_validator("operator_cidr")
    @classmethod
    def _operator_cidr(cls, v: str) -> str:
        net = _network(v, "an address range such as 198.51.100.7/32")
        if net.prefixlen == 0:
            raise ValueError(f"{v} opens SSH to the whole internet — give your own address range (e.g. x.y.z.w/32)")
        return str(net)

    @field_validator("subnet_cidr")
    @classmethod
    def _subnet(cls, v: str) -> str:
        net = _network(v, "a private range such as 10.42.0.0/24")
        if net.num_addresses < 16:
            raise ValueError(f"{v} is too small for a course — use a /28 or larger, e.g. 10.42.0.0/24")
        return str(net)

    @field_validator("dns_nameservers")
    @classmethod
    def _resolvers(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_address(item)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address — list resolver addresses such as 9.9.9.9") from None
        return v

    @field_validator("dns_zone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        return None if v is None else check_hostname(v) + "."

    def cloud_name(self) -> str | None:
        """The cloud to connect to: this file's, else openstacksdk's OS_CLOUD."""
        return self.cloud or os.environ.get("OS_CLOUD") or None


def parse_openstack_site(data: Any, *, source: str = SITE_FILE) -> OpenStackSite:
    """Validate a site file's mapping into OpenStack settings, or raise InvalidInput naming every bad field."""
    if not isinstance(data, dict):
        raise InvalidInput([FieldProblem("", f"the top level must be a mapping of fields, got {type(data).__name__}")],
                           source=source)
    credential_problems = [
        FieldProblem(key, "credentials do not belong in the site file — keep them in clouds.yaml and name the "
                     "cloud with `cloud:` (or OS_CLOUD)")
        for key in data if str(key).lower() in CREDENTIAL_KEYS
    ]
    try:
        site = OpenStackSite.model_validate({k: v for k, v in data.items()
                                             if str(k).lower() not in CREDENTIAL_KEYS and k not in SITE_WIDE_KEYS})
    except ValidationError as exc:
        known = ", ".join(OpenStackSite.model_fields)
        problems = [
            FieldProblem(p.path, f"unknown field — remove it or check its spelling (known: {known}, and the "
                         f"sections {', '.join(SITE_WIDE_KEYS)})")
            if p.message.startswith("unknown field") else p
            for p in problems_from(exc)
        ]
        raise InvalidInput(credential_problems + problems, source=source) from None
    if credential_problems:
        raise InvalidInput(credential_problems, source=source)
    return site


def load_openstack_site(state_dir: Path | None = None, path: Path | None = None) -> OpenStackSite:
    """The OpenStack settings from `path`, $HUBFLEET_SITE_CONFIG or <state-dir>/site.yaml."""
    path = Path(path) if path else site_path(state_dir)
    data = read_yaml(path, missing=f"write one (see docs/openstack.md) or set {SITE_ENV} to its path")
    return parse_openstack_site(data, source=str(path))


def json_schema() -> dict:
    return OpenStackSite.model_json_schema()
