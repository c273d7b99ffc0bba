"""The operator's site file: where it is, and its sections that hold for every course on the site.

One YAML file per site, read from `$HUBFLEET_SITE_CONFIG` or `<state-dir>/site.yaml`. Its optional
site-wide sections (`addresses`, `docker`, `ca_certificates`, `archives`, `term`, `mail`, `egress`) hold for every provider
and default when the file or the section is absent; its other fields are the OpenStack provider's own settings
(hubfleet/providers/openstack/settings.py). Every error names the field and the fix.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hubfleet.descriptor import problems_from, read_yaml
from hubfleet.egress import EgressSite
from hubfleet.errors import FieldProblem, InvalidInput
from hubfleet.inputs import duration_problem, duration_seconds, ipv4_network
from hubfleet.mail import SmtpSettings

SITE_ENV = "HUBFLEET_SITE_CONFIG"
SITE_WIDE_KEYS = ("addresses", "docker", "ca_certificates", "archives", "term", "mail", "egress")  # for every provider; the other fields are OpenStack's
SITE_FILE = "site.yaml"


class Addresses(BaseModel):
    """Address ranges the hosts' Docker engines and the course's Swarm may use.

    Docker's defaults (172.17.0.0/16, the pools after it, and 10.0.0.0/8 for the Swarm) would hide
    a campus peer in those ranges from the hub. These defaults take RFC 2544's benchmarking range,
    198.18.0.0/15, which no campus routes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine_bridge: str = Field("198.18.0.1/24", description="docker0's address and prefix on every host (bip).")
    engine_pools: list[str] = Field(
        default_factory=lambda: ["198.18.128.0/17"],
        description="Ranges every host's engine carves its local networks from (default-address-pools).")
    engine_pool_size: int = Field(24, ge=16, le=28, description="Prefix length of each local network.")
    swarm_pools: list[str] = Field(
        default_factory=lambda: ["198.19.0.0/16"],
        description="Ranges the Swarm's overlay networks (ingress, the students') are carved from (default-addr-pool).")
    swarm_subnet_size: int = Field(24, ge=16, le=28, description="Prefix length of each overlay network.")

    @field_validator("engine_bridge")
    @classmethod
    def _bridge(cls, v: str) -> str:
        try:
            interface = ipaddress.ip_interface(v.strip())
        except ValueError:
            raise ValueError(f"{v!r} is not an address with its prefix — write one such as 198.18.0.1/24") from None
        if interface.version != 4 or interface.ip == interface.network.network_address:
            raise ValueError(f"{v} is not a host address in its network — write one such as 198.18.0.1/24")
        return str(interface)

    @field_validator("engine_pools", "swarm_pools")
    @classmethod
    def _pools(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("list at least one range, such as 198.18.128.0/17")
        return [str(ipv4_network(item, "198.18.128.0/17", "Docker's address pools here are IPv4")) for item in v]

    @model_validator(mode="after")
    def _apart(self) -> "Addresses":
        for field, size in (("engine_pools", self.engine_pool_size), ("swarm_pools", self.swarm_subnet_size)):
            for pool in getattr(self, field):
                if ipaddress.ip_network(pool).prefixlen > size:
                    raise ValueError(f"{field}: {pool} is smaller than one network of /{size} — widen it or "
                                     f"raise {'engine_pool_size' if field == 'engine_pools' else 'swarm_subnet_size'}")
        ranges = self.ranges()
        for index, (name, net) in enumerate(ranges):
            for other, other_net in ranges[index + 1:]:
                if net.overlaps(other_net):
                    raise ValueError(f"{name} ({net}) overlaps {other} ({other_net}) — give each its own range")
        return self

    def ranges(self) -> list[tuple[str, ipaddress.IPv4Network]]:
        """Every range the hosts' engines and the Swarm may take, with the setting that gives it."""
        found = [("addresses.engine_bridge", ipaddress.ip_interface(self.engine_bridge).network)]
        found += [("addresses.engine_pools", ipaddress.ip_network(p)) for p in self.engine_pools]
        found += [("addresses.swarm_pools", ipaddress.ip_network(p)) for p in self.swarm_pools]
        return found

    def role_variables(self) -> dict:
        """roles/engine's and roles/swarm's variables for these ranges."""
        return {
            "engine_bridge_address": self.engine_bridge,
            "engine_address_pools": [{"base": p, "size": self.engine_pool_size} for p in self.engine_pools],
            "swarm_address_pools": list(self.swarm_pools),
            "swarm_subnet_size": self.swarm_subnet_size,
        }


class DockerSite(BaseModel):
    """How the Docker provider makes its hosts on this machine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host_image: Literal["auto", "baked", "stock"] = Field(
        "auto", description="What hosts boot: baked (the roles' install steps done ahead by `hubfleet bake`; "
        "refused when the roles changed since), stock (a bare Debian 12, the roles install everything) or auto "
        "(baked when it is current, else stock).")


class ArchivesSite(BaseModel):
    """How long the courses' archives are kept after destroy (`hubfleet archives prune`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_days: int | None = Field(
        None, ge=1, le=36500, description="Days an archive is kept, counted from the date it was made; absent: "
        "kept until an operator removes it. `hubfleet archives prune` removes older ones (with their operator's "
        "file); run it from a timer.")


class TermSite(BaseModel):
    """When `hubfleet reconcile` acts on a course's dates, unless its descriptor's `dates` say otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warm_before: str = Field("2d", description="How long before dates.start a course's hub is made and warmed.")
    grace_after: str = Field("14d", description="How long after dates.end students may still log in and take "
                             "their work, before the hub is archived and removed.")
    notice_before: str = Field("7d", description="How long before dates.end the hub's banner starts telling "
                               "students to download their work.")
    backup_every: str = Field("1d", description="How often reconcile backs up a live course's students' work, "
                              "at a moment when no student's server runs (the hub stops for it); after the "
                              "course's hosts vanish, students' files come back from the last backup. `off`: never.")

    @field_validator("warm_before", "grace_after", "notice_before", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if problem := duration_problem(v):
            raise ValueError(problem)
        return v

    @field_validator("backup_every", mode="before")
    @classmethod
    def _backup_every(cls, v: Any) -> Any:
        if v == "off":
            return v
        if problem := duration_problem(v):
            raise ValueError(f"{problem}, or off")
        if duration_seconds(v) == 0:
            raise ValueError("0 would back up at every run — give a duration such as \"1d\", or off")
        return v

    @property
    def backup_interval(self) -> dt.timedelta | None:
        return None if self.backup_every == "off" else dt.timedelta(seconds=duration_seconds(self.backup_every))


class SiteWide(BaseModel):
    """The settings of the site file that hold for every provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    addresses: Addresses = Field(default_factory=Addresses, description="Ranges the hosts' engines and Swarms use.")
    docker: DockerSite = Field(default_factory=DockerSite, description="The Docker provider's hosts.")
    archives: ArchivesSite = Field(default_factory=ArchivesSite, description="How long archives are kept.")
    term: TermSite = Field(default_factory=TermSite, description="When reconcile makes and removes courses.")
    egress: EgressSite = Field(default_factory=EgressSite, description="What a `package-index` course's students "
                               "reach through the proxy, and the networks no student reaches (docs/egress.md).")
    mail: SmtpSettings | None = Field(
        None, description="The SMTP server reconcile mails a course's `contacts` through (the hub ready, its end "
        "near, its archive made); absent: no mail.")
    ca_certificates: list[Path] = Field(
        default_factory=list, max_length=50,
        description="PEM files of authorities every host of every course trusts besides the public ones "
        "(an LMS, LDAP server or registry behind the institution's own CA): hubfleet/trust.py, roles/trust.")


def parse_site_wide(data: Any, *, source: str = SITE_FILE) -> SiteWide:
    """The site-wide sections of a site file's mapping (the OpenStack fields are not looked at)."""
    if data is None:
        return SiteWide()
    if not isinstance(data, dict):
        raise InvalidInput([FieldProblem("", f"the top level must be a mapping of fields, got {type(data).__name__}")],
                           source=source)
    try:
        return SiteWide.model_validate({k: v for k, v in data.items() if k in SITE_WIDE_KEYS})
    except ValidationError as exc:
        raise InvalidInput(problems_from(exc), source=source) from None


def load_site_wide(state_dir: Path | None = None, path: Path | None = None) -> SiteWide:
    """The site-wide settings from the site file; the defaults when there is none."""
    path = Path(path) if path else site_path(state_dir)
    if not path.exists():
        return SiteWide()
    return parse_site_wide(read_yaml(path, missing="it disappeared while being read"), source=str(path))


def site_path(state_dir: Path | None = None) -> Path:
    """Where the site file is read from: $HUBFLEET_SITE_CONFIG, else <state-dir>/site.yaml."""
    if os.environ.get(SITE_ENV):
        return Path(os.environ[SITE_ENV]).expanduser()
    if state_dir is None:
        from hubfleet.state import default_state_dir

        state_dir = default_state_dir()
    return Path(state_dir) / SITE_FILE


def site_wide_json_schema() -> dict:
    return SiteWide.model_json_schema()
