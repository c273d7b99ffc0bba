"""Pre-flight: what the cloud must offer for a plan, asked before anything is created.

Login, flavors (a missing one is replaced by the smallest real flavor that fits), the image, the
networks, a volume service when the plan needs data volumes, and quotas: every shortage in one
message with the numbers. The arithmetic is pure and unit-tested; `preflight` asks the cloud.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from hubfleet.descriptor import format_bytes
from hubfleet.errors import ProvisionError
from hubfleet.flavors import BASE_DISK, GiB, Catalogue, Flavor, load_catalogue
from hubfleet.providers.base import HostSpec
from hubfleet.providers.openstack.cloud import CourseResources, connect, find, has_volumes, real_flavors
from hubfleet.providers.openstack.names import host_name

if TYPE_CHECKING:
    from hubfleet.descriptor import Course
    from hubfleet.providers.openstack.settings import OpenStackSite
    from hubfleet.sizing import Plan

MiB = 1024**2
SWARM_PORTS = (("tcp", 2377), ("tcp", 7946), ("udp", 7946), ("udp", 4789))
QUOTA_LABELS = {  # resource -> (label, unit formatter)
    "instances": ("instances", str),
    "cores": ("cores", str),
    "ram": ("RAM", lambda mib: format_bytes(int(mib) * MiB)),
    "volumes": ("volumes", str),
    "gigabytes": ("volume storage", lambda gib: format_bytes(int(gib) * GiB)),
    "floating_ips": ("floating IPs", str),
    "security_groups": ("security groups", str),
    "security_group_rules": ("security group rules", str),
    "networks": ("networks", str),
    "subnets": ("subnets", str),
    "routers": ("routers", str),
    "ports": ("ports", str),
}


# --- pure pre-flight logic (unit-tested without a cloud) ---------------------------------------


@dataclass(frozen=True)
class QuotaUse:
    resource: str
    limit: int  # negative: unlimited
    used: int

    @property
    def free(self) -> int | None:
        return None if self.limit < 0 else max(0, self.limit - self.used)


def quota_shortages(needs: dict[str, int], quotas: dict[str, QuotaUse]) -> list[str]:
    """One line per resource the project's quota cannot cover, with the numbers."""
    lines = []
    for resource, need in needs.items():
        quota = quotas.get(resource)
        if need <= 0 or quota is None or quota.free is None or need <= quota.free:
            continue
        label, fmt = QUOTA_LABELS.get(resource, (resource, str))
        lines.append(f"{label}: the plan needs {fmt(need)}, {fmt(quota.free)} free "
                     f"(quota {fmt(quota.limit)}, {fmt(quota.used)} in use)")
    return lines


def quota_message(shortages: list[str]) -> str:
    return ("the project's quota does not cover the plan — nothing was created; raise these quotas "
            "(ask the cloud's operators) or plan fewer/smaller hosts:\n" + "\n".join(f"    {s}" for s in shortages))


def smallest_fitting(flavors: list[Flavor], vcpus: float, ram_bytes: int) -> Flavor | None:
    """The smallest real flavor with at least this many cores and this much memory."""
    fits = [f for f in flavors if f.vcpus >= vcpus and f.ram_bytes >= ram_bytes]
    return min(fits, key=lambda f: (f.ram_bytes, f.vcpus, f.disk_bytes, f.name)) if fits else None


def catalogue_from_flavors(flavors: list[Flavor], preferred: list[str], prices: Catalogue | None = None) -> Catalogue:
    """The sizing catalogue from the cloud's flavors: only `preferred` ones when given, priced when known."""
    chosen = [f for f in flavors if not preferred or f.name in preferred]
    known = {f.name: f.price_per_hour for f in prices.flavors} if prices else {}
    priced = tuple(Flavor(f.name, f.vcpus, f.ram_bytes, f.disk_bytes, known.get(f.name)) for f in chosen)
    return Catalogue(priced, currency=prices.currency if prices else "EUR")


def data_volume_gib(spec: HostSpec, flavor: Flavor) -> int:
    """Size of the data volume a host needs when its flavor's disk is too small (0: none)."""
    if spec.disk_bytes <= flavor.disk_bytes:
        return 0
    return max(1, math.ceil((spec.disk_bytes - BASE_DISK) / GiB))


def resource_needs(specs: list[HostSpec], flavors: dict[str, Flavor], *, missing_hosts: set[str],
                   names: list[str], need_floating_ip: bool, need_security_group: bool,
                   need_network: bool) -> dict[str, int]:
    """What creating the missing parts of the plan takes from the project's quota."""
    needs = {key: 0 for key in QUOTA_LABELS}
    for name, spec in zip(names, specs):
        if name not in missing_hosts:
            continue
        flavor = flavors[spec.flavor]
        needs["instances"] += 1
        needs["cores"] += math.ceil(flavor.vcpus)
        needs["ram"] += flavor.ram_bytes // MiB
        needs["ports"] += 1
        size = data_volume_gib(spec, flavor)
        if size:
            needs["volumes"] += 1
            needs["gigabytes"] += size
    needs["floating_ips"] = int(need_floating_ip)
    needs["security_groups"] = int(need_security_group)
    needs["security_group_rules"] = len(security_group_rules("0.0.0.0/0", "x")) if need_security_group else 0
    if need_network:
        needs["networks"] = needs["subnets"] = needs["routers"] = 1
        needs["ports"] += 1  # the router's interface
    return needs


def security_group_rules(operator_cidr: str, group_id: str) -> list[dict]:
    """SSH from the operator only, HTTP(S) from anywhere, Swarm's ports inside the group only."""
    ethertype = "IPv6" if ":" in operator_cidr else "IPv4"
    rules = [dict(protocol="tcp", port_range_min=22, port_range_max=22, remote_ip_prefix=operator_cidr,
                  ether_type=ethertype)]
    for port in (80, 443):
        rules.append(dict(protocol="tcp", port_range_min=port, port_range_max=port, remote_ip_prefix="0.0.0.0/0",
                          ether_type="IPv4"))
        rules.append(dict(protocol="tcp", port_range_min=port, port_range_max=port, remote_ip_prefix="::/0",
                          ether_type="IPv6"))
    for proto, port in SWARM_PORTS:
        rules.append(dict(protocol=proto, port_range_min=port, port_range_max=port, remote_group_id=group_id,
                          ether_type="IPv4"))
    return [dict(direction="ingress", **r) for r in rules]


def rule_key(rule: dict) -> tuple:
    """What makes two rules the same; Neutron stores an any-address prefix as no prefix at all."""
    prefix = rule.get("remote_ip_prefix")
    prefix = None if prefix in ("0.0.0.0/0", "::/0") else prefix
    return (rule.get("direction"), rule.get("ether_type"), rule.get("protocol"), rule.get("port_range_min"),
            rule.get("port_range_max"), prefix, rule.get("remote_group_id"))


@dataclass
class PreflightReport:
    """What pre-flight found. Each problem is one message; every quota shortage is in one of them."""

    cloud: str | None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    flavors: dict[str, str] = field(default_factory=dict)  # plan flavor -> real flavor booted
    needs: dict[str, int] = field(default_factory=dict)
    quotas: dict[str, dict] = field(default_factory=dict)  # resource -> {limit, used}

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def raise_for_problems(self) -> None:
        if self.problems:
            raise ProvisionError(
                "pre-flight found problems (nothing was created):\n" + "\n".join(f"  - {p}" for p in self.problems),
                hint="fix them and run the same command again")



# --- asking the cloud ----------------------------------------------------------------------------


def real_catalogue(site: "OpenStackSite", *, connection=None) -> Catalogue:
    """The catalogue `plan_course` should use: the cloud's real flavors (site.flavors only, when set)."""
    conn = connection or connect(site)
    flavors = [f for f, _ in real_flavors(conn)]
    try:
        prices = load_catalogue("openstack")
    except Exception:  # prices are a nicety; a broken packaged file must not block a real plan
        prices = None
    catalogue = catalogue_from_flavors(flavors, site.flavors, prices)
    if not catalogue.flavors:
        wanted = f" among {', '.join(site.flavors)}" if site.flavors else ""
        raise ProvisionError(f"the cloud has no usable flavor{wanted}",
                             hint="check `flavors:` in site.yaml against the cloud's flavor list")
    return catalogue


def preflight(site: "OpenStackSite", course: "Course", plan: "Plan", *, connection=None) -> PreflightReport:
    """Everything the cloud must offer for this plan, asked before anything is created."""
    return preflight_specs(site, course.name, list(plan.hosts), connection=connection)


def preflight_specs(site: "OpenStackSite", course: str, specs: list[HostSpec], *,
                    connection=None) -> PreflightReport:
    report = PreflightReport(cloud=site.cloud_name())
    try:
        conn = connection or connect(site)
    except ProvisionError as exc:
        report.problems.append(exc.message + (f" — {exc.hint}" if exc.hint else ""))
        report.notes.append("the other checks need a working login")
        return report

    flavors = dict((f.name, (f, fid)) for f, fid in real_flavors(conn))
    chosen: dict[str, Flavor] = {}
    for spec in specs:
        if spec.flavor in chosen:
            continue
        if spec.flavor in flavors:
            chosen[spec.flavor] = flavors[spec.flavor][0]
            report.flavors[spec.flavor] = spec.flavor
            continue
        fit = smallest_fitting([f for f, _ in flavors.values()], spec.vcpus, spec.ram_bytes)
        if fit is None:
            report.problems.append(
                f"flavor {spec.flavor} does not exist and no flavor of the cloud has {spec.vcpus:g} vCPU and "
                f"{format_bytes(spec.ram_bytes)} — plan with the real flavor list (`real_catalogue`) or ask for one")
        else:
            chosen[spec.flavor] = fit
            report.flavors[spec.flavor] = fit.name
            report.notes.append(f"flavor {spec.flavor} does not exist: {fit.name} ({fit.vcpus:g} vCPU, "
                                f"{format_bytes(fit.ram_bytes)}) is the smallest that fits and will be used")

    if find(conn.image.find_image, site.image) is None:
        report.problems.append(f"image {site.image!r} does not exist in the cloud — upload it or change `image:` "
                               "in site.yaml")
    if find(conn.network.find_network, site.external_network) is None:
        report.problems.append(f"external network {site.external_network!r} does not exist — set "
                               "`external_network:` in site.yaml to one `openstack network list --external` shows")
    if site.network and find(conn.network.find_network, site.network) is None:
        report.problems.append(f"network {site.network!r} does not exist — fix `network:` in site.yaml or omit "
                               "it to let hubfleet create one per course")
    if len(chosen) < len({s.flavor for s in specs}):
        return report  # quotas need every flavor's size

    existing = CourseResources(conn, course)
    names = [host_name(course, i, s.role) for i, s in enumerate(specs)]
    present = {s.name for s in existing.servers()}
    real = {plan_name: chosen[plan_name] for plan_name in chosen}
    report.needs = resource_needs(
        specs, real, missing_hosts=set(names) - present, names=names,
        need_floating_ip=not existing.floating_ips(),
        need_security_group=existing.security_group() is None,
        need_network=site.network is None and existing.network() is None,
    )
    if report.needs["volumes"] and not has_volumes(conn):
        report.problems.append(
            f"the plan needs {report.needs['volumes']} data volume(s) but the cloud has no volume service — "
            "choose a flavor with a larger disk (`flavors:` in site.yaml) or lower load.disk_per_user")
    quotas = project_quotas(conn, with_volumes=report.needs["volumes"] > 0)
    report.quotas = {k: {"limit": q.limit, "used": q.used} for k, q in quotas.items()}
    shortages = quota_shortages(report.needs, quotas)
    if shortages:
        report.problems.append(quota_message(shortages))
    return report


def project_quotas(conn, *, with_volumes: bool) -> dict[str, QuotaUse]:
    """The project's limits and usage: Nova's absolute limits, Neutron's quota details, Cinder's limits."""
    out: dict[str, QuotaUse] = {}
    absolute = conn.compute.get_limits().absolute
    for key, limit, used in (("instances", "instances", "instances_used"),
                             ("cores", "total_cores", "total_cores_used"),
                             ("ram", "total_ram", "total_ram_used")):
        out[key] = QuotaUse(key, int(getattr(absolute, limit)), int(getattr(absolute, used) or 0))
    details = conn.network.get_quota(conn.current_project_id, details=True)
    for key in ("floating_ips", "security_groups", "security_group_rules", "networks", "subnets", "routers", "ports"):
        value = getattr(details, key, None) or {}
        out[key] = QuotaUse(key, int(value.get("limit", -1)), int(value.get("used", 0)) + int(value.get("reserved", 0)))
    if with_volumes:
        limits = conn.block_storage.get_limits().absolute
        out["volumes"] = QuotaUse("volumes", int(limits.max_total_volumes), int(limits.total_volumes_used))
        out["gigabytes"] = QuotaUse("gigabytes", int(limits.max_total_volume_gigabytes),
                                    int(limits.total_gigabytes_used))
    return out
