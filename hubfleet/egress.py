"""Where students' servers may connect to: the course's `egress` and the site's `egress` section.

Every mode keeps a student's container away from the other students' servers, the hosts' own
services, the cloud's metadata address and the operator's networks; what differs is the rest of the
world: `open` lets it through, `package-index` only through a forward proxy on each host that
allows the site's package indexes, `none` nothing. roles/egress enforces it on every host of the
course with the kernel's firewall (docs/egress.md); this module decides what the role is given.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hubfleet.inputs import ipv4_network

if TYPE_CHECKING:
    from hubfleet.descriptor import Course
    from hubfleet.providers.base import Host

Mode = Literal["open", "package-index", "none"]
MODES: tuple[str, ...] = get_args(Mode)
DEFAULT_MODE: Mode = "package-index"

# The link-local address every cloud answers instance metadata (and user data, keys) on: never reachable.
METADATA_ADDRESS = "169.254.169.254/32"
# The ports of the course's own services a student's server must reach on the hub host: JupyterHub's
# API (roles/hub's hub_api_port) and nbgrader's exchange (roles/grading's grading_exchange_port).
HUB_API_PORT = 8081
EXCHANGE_PORT = 8082

DEFAULT_INDEXES = (
    "pypi.org", "files.pythonhosted.org",           # pip
    "conda.anaconda.org", "repo.anaconda.com",      # conda
    "deb.debian.org", "security.debian.org",        # apt
)
# What no student reaches in any mode unless the operator lists otherwise: private and shared address
# space, loopback, link-local (the metadata address), benchmarking (hubfleet's own engine ranges),
# multicast and reserved.
DEFAULT_OPERATOR_NETWORKS = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
)
HOST_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def index_host_problem(value: str) -> str | None:
    """Why `value` is not a package index's host name or IPv4 address (None when it is one)."""
    text = str(value).strip().lower()
    if "://" in text or "/" in text:
        return (f"{value!r} is a URL: list the index's host name only, such as pypi.org "
                "(the proxy allows a host, every path on it)")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is not None:
        return None if address.version == 4 else f"{value} is IPv6: the students' network is IPv4, give a host name"
    if not HOST_NAME.match(text):
        return f"{value!r} is not a host name — write one such as pypi.org or an IPv4 address"
    return None


class EgressSite(BaseModel):
    """The site file's `egress`: what `package-index` lets through and what no mode ever does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    package_indexes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_INDEXES), max_length=100,
        description="Host names (or IPv4 addresses) of the package indexes a `package-index` course's students "
        "reach through the hosts' forward proxy: PyPI, conda and Debian by default; add a mirror or CRAN here.")
    operator_networks: list[str] = Field(
        default_factory=lambda: list(DEFAULT_OPERATOR_NETWORKS), max_length=200,
        description="IPv4 ranges no student's server reaches in any mode (the campus, the cloud's own networks). "
        "The course's hosts, the hosts' Docker ranges and the metadata address are always added.")
    proxy_port: int = Field(3128, ge=1024, le=65535,
                            description="Port of the forward proxy on each host's student bridge (docker0).")

    @field_validator("package_indexes")
    @classmethod
    def _indexes(cls, v: list[str]) -> list[str]:
        for item in v:
            if problem := index_host_problem(item):
                raise ValueError(problem)
        return list(dict.fromkeys(str(item).strip().lower() for item in v))

    @field_validator("operator_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        found = [str(ipv4_network(item, "10.0.0.0/8", "the students' network is IPv4")) for item in v]
        return list(dict.fromkeys(found))


def blocked_networks(site: EgressSite, engine_ranges: list[str], hosts: list["Host"]) -> list[str]:
    """Every range a student's server never reaches: the operator's, the metadata address, the hosts' Docker
    ranges and each host of the course (whatever range a cloud gave it)."""
    ranges = [*site.operator_networks, METADATA_ADDRESS, *engine_ranges]
    for host in hosts:
        for address in (host.private_address, host.address):
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                continue
            if ip.version == 4 and not ip.is_loopback:
                ranges.append(f"{ip}/32")
    return _without_covered(ranges)


def _without_covered(ranges: list[str]) -> list[str]:
    """The ranges in order, without those another one in the list already covers."""
    nets = [ipaddress.ip_network(r) for r in dict.fromkeys(ranges)]
    kept = [n for n in nets if not any(other != n and n.subnet_of(other) for other in nets)]
    return [str(n) for n in kept]


def proxy_url(bridge_address: str, site: EgressSite) -> str:
    """The forward proxy as a student's server reaches it: on its own host's docker0 address, the same on
    every host (the site's addresses.engine_bridge)."""
    return f"http://{ipaddress.ip_interface(bridge_address).ip}:{site.proxy_port}"


def role_variables(course: "Course", site: EgressSite, engine_bridge: str, engine_ranges: list[str],
                   hosts: list["Host"]) -> dict:
    """roles/egress's variables and the hub's proxy setting for the course's mode."""
    hub = next((h for h in hosts if h.role == "hub"), None)
    services = [f"{hub.private_address}:{port}" for port in (HUB_API_PORT, EXCHANGE_PORT)] \
        if hub is not None and hub.private_address else []
    mode = course.egress
    return {
        "egress_mode": mode,
        "egress_bridge_address": str(ipaddress.ip_interface(engine_bridge).ip),
        "egress_bridge_network": str(ipaddress.ip_interface(engine_bridge).network),
        "egress_course_services": services,
        "egress_blocked_networks": blocked_networks(site, engine_ranges, hosts),
        "egress_package_indexes": list(site.package_indexes),
        "egress_proxy_port": site.proxy_port,
        "hub_egress_proxy": proxy_url(engine_bridge, site) if mode == "package-index" else "",
    }


def summary(mode: str, site: EgressSite | None = None) -> str:
    """One line for `plan`: what the course's students reach."""
    if mode == "open":
        return "open — the internet, never other students, the hosts, the metadata address or the operator's networks"
    if mode == "none":
        return "none — nothing outside the hub"
    indexes = ", ".join((site or EgressSite()).package_indexes)
    return f"package-index — only {indexes} through each host's proxy"
