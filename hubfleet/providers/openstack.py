"""OpenStack provider: a course's hosts as real servers, through openstacksdk or Terraform.

Credentials come from clouds.yaml / OS_CLOUD (openstacksdk's conventions) and are never read,
printed or logged here; the site file (hubfleet/site.py) only names the cloud.

Every resource carries the course: Neutron tags and descriptions `hubfleet-course=<name>`,
server and volume metadata `hubfleet-course: <name>`, and deterministic names
(`hubfleet-<course>` for the keypair, security group, network, subnet and router;
`<course>-hub`, `<course>-worker-<i>` for servers). Re-running finds them by name or tag and
creates only what is missing; destroy deletes them in dependency order and can be resumed.

Pre-flight (`preflight`, `Provider.check`) asks the cloud before anything is created: login,
flavors, image, external network, and quotas (one message listing every shortage).

`ensure_image` records the image only: the hosts pull it themselves when Ansible configures
them (the OpenStack API cannot reach into a server), so there is nothing to do at this layer.
"""

from __future__ import annotations

import base64
import json
import math
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import yaml

from hubfleet.descriptor import format_bytes
from hubfleet.errors import ProvisionError
from hubfleet.providers.base import Host, HostSpec, Progress, Provider
from hubfleet.sizing import BASE_DISK, Catalogue, Flavor, load_catalogue

if TYPE_CHECKING:
    from hubfleet.descriptor import Course
    from hubfleet.site import Site
    from hubfleet.sizing import Plan

TAG_KEY = "hubfleet-course"
MiB = 1024**2
GiB = 1024**3
POLL = 1.0  # seconds between status polls
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


def course_tag(course: str) -> str:
    return f"{TAG_KEY}={course}"


def resource_name(course: str) -> str:
    return f"hubfleet-{course}"


def host_name(course: str, index: int, role: str) -> str:
    """Same names as `hubfleet plan` shows: <course>-hub, then <course>-worker-<index>."""
    return f"{course}-hub" if role == "hub" else f"{course}-worker-{index}"


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


def cloud_init(hostname: str, ssh_public_key: str) -> str:
    """User data that readies a host for Ansible: python3 present, the course key authorised."""
    data = {
        "hostname": hostname,
        "ssh_authorized_keys": [ssh_public_key.strip()],
        "package_update": True,
        "packages": ["python3", "python3-apt"],
    }
    return "#cloud-config\n" + yaml.safe_dump(data, sort_keys=False)


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


# --- connection ---------------------------------------------------------------------------------


def connect(site: "Site"):
    """An authenticated openstacksdk connection to the site's cloud, or ProvisionError saying why."""
    try:
        import openstack
        from keystoneauth1 import exceptions as ks_exc
        from openstack import exceptions as os_exc
    except ImportError:
        raise ProvisionError("openstacksdk is not installed", hint="pip install 'hubfleet[openstack]'") from None
    cloud = site.cloud_name()
    where = f"cloud {cloud!r}" if cloud else "the cloud from OS_* variables"
    try:
        conn = openstack.connect(cloud=cloud) if cloud else openstack.connect()
        conn.authorize()  # a token now: a wrong password fails here, not in the middle of a create
    except os_exc.ConfigException as exc:
        raise ProvisionError(f"{where} is not configured: {exc}",
                             hint="add it to clouds.yaml (see docs/openstack.md) or set `cloud:` in site.yaml") from None
    except (ks_exc.ClientException, os_exc.SDKException) as exc:
        raise ProvisionError(f"cannot log in to {where}: {_first_line(exc)}",
                             hint="check the credentials in clouds.yaml (hubfleet never prints them)") from None
    return conn


def _find(find, name_or_id: str):
    """A find_* call that answers None when nothing matches (the SDK's ignore_missing is going away)."""
    from openstack import exceptions as os_exc

    try:
        return find(name_or_id, ignore_missing=False)
    except os_exc.NotFoundException:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def real_flavors(conn) -> list[tuple[Flavor, str]]:
    """The cloud's flavors as sizing Flavors, with their ids."""
    out = []
    for f in conn.compute.flavors(details=True):
        out.append((Flavor(f.name, float(f.vcpus), int(f.ram) * MiB, int(f.disk or 0) * GiB), f.id))
    return out


def real_catalogue(site: "Site", *, connection=None) -> Catalogue:
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


def preflight(site: "Site", course: "Course", plan: "Plan", *, connection=None) -> PreflightReport:
    """Everything the cloud must offer for this plan, asked before anything is created."""
    return _preflight(site, course.name, list(plan.hosts), connection=connection)


def _preflight(site: "Site", course: str, specs: list[HostSpec], *, connection=None) -> PreflightReport:
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

    if _find(conn.image.find_image, site.image) is None:
        report.problems.append(f"image {site.image!r} does not exist in the cloud — upload it or change `image:` "
                               "in site.yaml")
    if _find(conn.network.find_network, site.external_network) is None:
        report.problems.append(f"external network {site.external_network!r} does not exist — set "
                               "`external_network:` in site.yaml to one `openstack network list --external` shows")
    if site.network and _find(conn.network.find_network, site.network) is None:
        report.problems.append(f"network {site.network!r} does not exist — fix `network:` in site.yaml or omit "
                               "it to let hubfleet create one per course")
    if len(chosen) < len({s.flavor for s in specs}):
        return report  # quotas need every flavor's size

    existing = _CourseResources(conn, course)
    names = [host_name(course, i, s.role) for i, s in enumerate(specs)]
    present = {s.name for s in existing.servers()}
    real = {plan_name: chosen[plan_name] for plan_name in chosen}
    report.needs = resource_needs(
        specs, real, missing_hosts=set(names) - present, names=names,
        need_floating_ip=not existing.floating_ips(),
        need_security_group=existing.security_group() is None,
        need_network=site.network is None and existing.network() is None,
    )
    if report.needs["volumes"] and not conn.has_service("block-storage") and not conn.has_service("volumev3"):
        report.problems.append(
            f"the plan needs {report.needs['volumes']} data volume(s) but the cloud has no volume service — "
            "choose a flavor with a larger disk (`flavors:` in site.yaml) or lower load.disk_per_user")
    quotas = _quotas(conn, with_volumes=report.needs["volumes"] > 0)
    report.quotas = {k: {"limit": q.limit, "used": q.used} for k, q in quotas.items()}
    shortages = quota_shortages(report.needs, quotas)
    if shortages:
        report.problems.append(quota_message(shortages))
    return report


def _quotas(conn, *, with_volumes: bool) -> dict[str, QuotaUse]:
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


# --- finding a course's resources ---------------------------------------------------------------


class _CourseResources:
    """Lookups of everything carrying one course's tag or name (project-scoped, as the user sees them)."""

    def __init__(self, conn, course: str):
        self.conn = conn
        self.course = course
        self.tag = course_tag(course)
        self.name = resource_name(course)

    def _ours(self, resource) -> bool:
        return (getattr(resource, "name", None) == self.name or self.tag in (getattr(resource, "tags", None) or [])
                or getattr(resource, "description", None) == self.tag)

    def servers(self) -> list:
        return [s for s in self.conn.compute.servers(details=True)
                if (s.metadata or {}).get(TAG_KEY) == self.course]

    def floating_ips(self) -> list:
        return [ip for ip in self.conn.network.ips() if self._ours(ip)]

    def security_group(self):
        found = [g for g in self.conn.network.security_groups() if self._ours(g)]
        return found[0] if found else None

    def security_groups(self) -> list:
        return [g for g in self.conn.network.security_groups() if self._ours(g)]

    def network(self):
        found = [n for n in self.conn.network.networks() if self._ours(n)]
        return found[0] if found else None

    def networks(self) -> list:
        return [n for n in self.conn.network.networks() if self._ours(n)]

    def subnets(self) -> list:
        return [s for s in self.conn.network.subnets() if self._ours(s)]

    def routers(self) -> list:
        return [r for r in self.conn.network.routers() if self._ours(r)]

    def keypair(self):
        return _find(self.conn.compute.find_keypair, self.name)

    def volumes(self) -> list:
        if not (self.conn.has_service("block-storage") or self.conn.has_service("volumev3")):
            return []
        return [v for v in self.conn.block_storage.volumes(details=True)
                if (v.metadata or {}).get(TAG_KEY) == self.course]

    def dns_records(self, zone_name: str | None) -> list[tuple[Any, Any]]:
        if not zone_name or not self.conn.has_service("dns"):
            return []
        zone = _find(self.conn.dns.find_zone, zone_name)
        if zone is None:
            return []
        return [(zone, r) for r in self.conn.dns.recordsets(zone) if getattr(r, "description", None) == self.tag]


# --- the provider ---------------------------------------------------------------------------------


class OpenStackProvider(Provider):
    """Servers on an OpenStack cloud; `engine: sdk` (openstacksdk) or `engine: terraform` in site.yaml."""

    name = "openstack"
    acme_server = "letsencrypt"  # public hosts: a certificate every browser trusts

    def __init__(self, course_name: str, workdir: Path, progress: Progress | None = None, *,
                 site: "Site | None" = None, connection=None):
        super().__init__(course_name, workdir, progress)
        report = self.progress
        self._step = "connecting"

        def progress_and_remember(message: str) -> None:
            self._step = message  # so a cloud error can say which step it broke
            report(message)

        self.progress = progress_and_remember
        self._site = site
        self._conn = connection
        # The name students open; the CLI may set it (the interface passes no descriptor), else <course>.<dns_zone>.
        self.domain: str | None = None

    # --- plumbing ----------------------------------------------------------------------

    @property
    def site(self) -> "Site":
        if self._site is None:
            from hubfleet.site import load_site

            # workdir is <state-dir>/instances/<course>: the site file sits in the state dir.
            self._site = load_site(self.workdir.parent.parent)
        return self._site

    @property
    def conn(self):
        if self._conn is None:
            self._conn = connect(self.site)
        return self._conn

    @property
    def found(self) -> _CourseResources:
        return _CourseResources(self.conn, self.course_name)

    @contextmanager
    def _cloud_errors(self, action: str) -> Iterator[None]:
        """Cloud API errors as one ProvisionError naming the step; nothing else is swallowed."""
        from keystoneauth1 import exceptions as ks_exc
        from openstack import exceptions as os_exc

        try:
            yield
        except (ks_exc.ClientException, os_exc.SDKException) as exc:
            raise ProvisionError(f"{action} of course {self.course_name!r} failed while {self._step!r}: "
                                 f"{_first_line(exc)}",
                                 hint="fix the cause and run the same command again: it resumes") from None

    def _names(self, specs: list[HostSpec]) -> list[str]:
        return [host_name(self.course_name, i, s.role) for i, s in enumerate(specs)]

    def _record_name(self) -> str | None:
        if self.domain:
            return self.domain.rstrip(".") + "."
        return f"{self.course_name}.{self.site.dns_zone}" if self.site.dns_zone else None

    # --- the interface -------------------------------------------------------------------

    def catalogue(self) -> Catalogue:
        return real_catalogue(self.site, connection=self._conn)

    def check(self, specs: list[HostSpec]) -> list[str]:
        return _preflight(self.site, self.course_name, specs, connection=self._conn).problems

    def ensure_hosts(self, specs: list[HostSpec], ssh_public_key: str) -> list[Host]:
        if not specs or specs[0].role != "hub":
            raise ProvisionError("the first host of a plan must be the hub")
        self.progress(f"pre-flight on {self.site.cloud_name() or 'the OS_* cloud'}")
        report = _preflight(self.site, self.course_name, specs, connection=self._conn)
        report.raise_for_problems()
        for note in report.notes:
            self.progress(note)
        with self._cloud_errors("create"):
            if self.site.engine == "terraform":
                hosts = self._terraform_apply(specs, ssh_public_key, report.flavors)
            else:
                hosts = self._sdk_apply(specs, ssh_public_key, report.flavors)
        if self.site.wait_ssh:
            self.wait_for_ssh(hosts[0])
        self._save_hosts(hosts)
        return hosts

    def hosts(self) -> list[Host]:
        if self.site.engine == "terraform":
            runner = self._terraform_runner()
            if not runner.state_path.exists():
                return []
            return hosts_from_terraform_outputs(runner.output())
        return self._sdk_hosts()

    def ensure_image(self, image: str) -> None:
        # The hosts pull the image when Ansible configures them; the cloud's API cannot reach inside them.
        (self.workdir / "image").parent.mkdir(parents=True, exist_ok=True)
        (self.workdir / "image").write_text(image + "\n")
        self.progress(f"image {image} recorded: the hosts pull it while Ansible configures them")

    def destroy_hosts(self) -> None:
        with self._cloud_errors("destroy"):
            if self.site.engine == "terraform":
                self._terraform_runner().destroy()
            self._sdk_destroy()  # also sweeps anything tagged that Terraform's state did not know
            left = self.leftovers()
        if left:
            raise ProvisionError(
                f"{len(left)} resource(s) of course {self.course_name!r} are still there after destroy:\n"
                + "\n".join(f"  - {item}" for item in left),
                hint="run destroy again; if they stay, delete them in the cloud's dashboard and report it")
        (self.workdir / "hosts.json").unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        found = self.found
        out = [f"server {s.name} ({s.id}, {s.status})" for s in found.servers()]
        out += [f"floating IP {ip.floating_ip_address} ({ip.id})" for ip in found.floating_ips()]
        out += [f"volume {v.name} ({v.id})" for v in found.volumes()]
        out += [f"security group {g.name} ({g.id})" for g in found.security_groups()]
        out += [f"router {r.name} ({r.id})" for r in found.routers()]
        out += [f"subnet {s.name} ({s.id})" for s in found.subnets()]
        out += [f"network {n.name} ({n.id})" for n in found.networks()]
        if found.keypair() is not None:
            out.append(f"keypair {found.name}")
        out += [f"DNS record {r.name} ({r.id})" for _, r in found.dns_records(self.site.dns_zone)]
        return out

    # --- create through openstacksdk -------------------------------------------------------

    def _sdk_apply(self, specs: list[HostSpec], ssh_public_key: str, flavor_map: dict[str, str]) -> list[Host]:
        self.ensure_keypair(ssh_public_key)
        network = self.ensure_network()
        group = self.ensure_security_group()
        servers = self.ensure_servers(specs, ssh_public_key, flavor_map, network, group)
        self.wait_for_active(servers)
        self.ensure_volumes(specs, flavor_map)
        self.ensure_floating_ip(servers[0], network)
        hosts = self._sdk_hosts()
        self.ensure_dns_record(hosts[0])
        return self._sdk_hosts()

    def ensure_keypair(self, ssh_public_key: str):
        wanted = " ".join(ssh_public_key.split()[:2])
        existing = self.found.keypair()
        if existing is not None and " ".join((existing.public_key or "").split()[:2]) == wanted:
            return existing
        if existing is not None:
            self.progress(f"keypair {self.found.name} holds another key: replacing it")
            self.conn.compute.delete_keypair(existing, ignore_missing=True)
        self.progress(f"creating keypair {self.found.name}")
        return self.conn.compute.create_keypair(name=self.found.name, public_key=ssh_public_key.strip())

    def _tag(self, resource) -> None:
        tags = list(getattr(resource, "tags", None) or [])
        if self.found.tag not in tags:
            self.conn.network.set_tags(resource, tags + [self.found.tag])

    def ensure_network(self):
        """The site's network, or the course's own network, subnet and router to the external network."""
        if self.site.network:
            return _find(self.conn.network.find_network, self.site.network)
        found, net_api, name, tag = self.found, self.conn.network, self.found.name, self.found.tag
        network = found.network()
        if network is None:
            self.progress(f"creating network {name}")
            network = net_api.create_network(name=name, description=tag)
        self._tag(network)
        subnet = next(iter(found.subnets()), None)
        if subnet is None:
            self.progress(f"creating subnet {name} ({self.site.subnet_cidr})")
            extra = {"dns_nameservers": self.site.dns_nameservers} if self.site.dns_nameservers else {}
            subnet = net_api.create_subnet(name=name, description=tag, network_id=network.id, ip_version=4,
                                           cidr=self.site.subnet_cidr, **extra)
        self._tag(subnet)
        router = next(iter(found.routers()), None)
        if router is None:
            self.progress(f"creating router {name} to {self.site.external_network}")
            external = net_api.find_network(self.site.external_network, ignore_missing=False)
            router = net_api.create_router(name=name, description=tag,
                                           external_gateway_info={"network_id": external.id})
        self._tag(router)
        attached = any(any(ip.get("subnet_id") == subnet.id for ip in (p.fixed_ips or []))
                       for p in net_api.ports(device_id=router.id))
        if not attached:
            net_api.add_interface_to_router(router, subnet=subnet.id)
        return network

    def ensure_security_group(self):
        group = self.found.security_group()
        if group is None:
            self.progress(f"creating security group {self.found.name}")
            group = self.conn.network.create_security_group(name=self.found.name, description=self.found.tag)
        self._tag(group)
        have = {rule_key(r.to_dict()) for r in self.conn.network.security_group_rules(security_group_id=group.id)}
        for rule in security_group_rules(self.site.operator_cidr, group.id):
            if rule_key(rule) not in have:
                self.conn.network.create_security_group_rule(security_group_id=group.id, **rule)
        return group

    def ensure_servers(self, specs: list[HostSpec], ssh_public_key: str, flavor_map: dict[str, str],
                       network, group) -> list:
        existing = {s.name: s for s in self.found.servers()}
        image = _find(self.conn.image.find_image, self.site.image)
        servers = []
        for name, spec in zip(self._names(specs), specs):
            server = existing.get(name)
            if server is not None and server.status == "ERROR":
                self.progress(f"server {name} is in ERROR: replacing it")
                self.conn.compute.delete_server(server, ignore_missing=True)
                self.conn.compute.wait_for_delete(server, wait=self.site.delete_timeout, interval=POLL)
                server = None
            if server is None:
                flavor = self.conn.compute.find_flavor(flavor_map.get(spec.flavor, spec.flavor), ignore_missing=False)
                self.progress(f"creating server {name} ({flavor.name})")
                user_data = base64.b64encode(cloud_init(name, ssh_public_key).encode()).decode()
                server = self.conn.compute.create_server(
                    name=name, flavor_id=flavor.id, image_id=image.id, key_name=self.found.name,
                    networks=[{"uuid": network.id}], security_groups=[{"name": group.name}],
                    user_data=user_data, metadata={TAG_KEY: self.course_name, "hubfleet-role": spec.role})
            servers.append(server)
        return servers

    def wait_for_active(self, servers: list) -> None:
        deadline = time.monotonic() + self.site.active_timeout
        pending = {s.id: s for s in servers}
        self.progress(f"waiting for {len(pending)} server(s) to be ACTIVE")
        while pending:
            for sid in list(pending):
                server = self.conn.compute.get_server(sid)
                if server.status == "ACTIVE":
                    pending.pop(sid)
                elif server.status == "ERROR":
                    fault = (server.fault or {}).get("message", "no reason given")
                    raise ProvisionError(f"server {server.name} failed to build: {fault}",
                                         hint="run the same command again: the failed server is replaced")
                else:
                    pending[sid] = server
            if pending and time.monotonic() > deadline:
                states = ", ".join(f"{s.name} {s.status}" for s in pending.values())
                raise ProvisionError(f"servers not ACTIVE after {self.site.active_timeout} s: {states}",
                                     hint="raise active_timeout in site.yaml or check the cloud's status")
            if pending:
                time.sleep(POLL)

    def ensure_volumes(self, specs: list[HostSpec], flavor_map: dict[str, str]) -> None:
        """A data volume for each host whose flavor's disk is too small (not exercised by the dev cloud)."""
        by_name = {s.name: s for s in self.found.servers()}
        flavors = {f.name: f for f, _ in real_flavors(self.conn)}
        have = {v.name: v for v in self.found.volumes()}
        for name, spec in zip(self._names(specs), specs):
            size = data_volume_gib(spec, flavors[flavor_map.get(spec.flavor, spec.flavor)])
            if not size:
                continue
            volume = have.get(f"{name}-data")
            if volume is None:
                self.progress(f"creating data volume {name}-data ({size} GiB)")
                volume = self.conn.block_storage.create_volume(
                    name=f"{name}-data", size=size, metadata={TAG_KEY: self.course_name}, description=self.found.tag)
                volume = self.conn.block_storage.wait_for_status(volume, "available", wait=self.site.active_timeout)
            if not volume.attachments:
                self.conn.compute.create_volume_attachment(by_name[name], volume_id=volume.id)

    def ensure_floating_ip(self, hub_server, network):
        ips = self.found.floating_ips()
        ports = list(self.conn.network.ports(device_id=hub_server.id, network_id=network.id))
        if not ports:
            raise ProvisionError(f"server {hub_server.name} has no port on network {network.name}")
        port = ports[0]
        ip = next((i for i in ips if i.port_id == port.id), None) or next((i for i in ips if not i.port_id), None)
        if ip is None:
            external = _find(self.conn.network.find_network, self.site.external_network)
            self.progress(f"creating a floating IP on {self.site.external_network} for {hub_server.name}")
            ip = self.conn.network.create_ip(floating_network_id=external.id, port_id=port.id,
                                             description=self.found.tag)
        elif ip.port_id != port.id:
            ip = self.conn.network.update_ip(ip, port_id=port.id)
        self._tag(ip)
        return ip

    def ensure_dns_record(self, hub: Host) -> str:
        """The course's A record in the site's DNS zone when Designate is there; else what to put in DNS."""
        record = self._record_name()
        zone_name = self.site.dns_zone
        if not record:
            message = f"no dns_zone in site.yaml: point the course's DNS name at {hub.address}"
        elif not self.conn.has_service("dns"):
            message = f"the cloud has no DNS service: point {record} at {hub.address}"
        elif (zone := _find(self.conn.dns.find_zone, zone_name)) is None:
            message = f"DNS zone {zone_name} is not in this project: point {record} at {hub.address}"
        elif not record.endswith("." + zone_name) and record != zone_name:
            message = f"{record} is outside zone {zone_name}: point it at {hub.address} by hand"
        else:
            current = [r for r in self.conn.dns.recordsets(zone) if r.name == record and r.type == "A"]
            if current and current[0].records == [hub.address]:
                message = f"DNS record {record} A {hub.address} is in place"
            elif current:
                self.conn.dns.update_recordset(current[0], records=[hub.address], description=self.found.tag)
                message = f"DNS record {record} now points at {hub.address}"
            else:
                self.conn.dns.create_recordset(zone, name=record, type="A", records=[hub.address], ttl=300,
                                               description=self.found.tag)
                message = f"DNS record {record} A {hub.address} created"
        self.progress(message)
        (self.workdir / "dns.txt").parent.mkdir(parents=True, exist_ok=True)
        (self.workdir / "dns.txt").write_text(message + "\n")
        return message

    def wait_for_ssh(self, hub: Host) -> None:
        """Until the hub's sshd greets us (cloud-init done enough for Ansible); bounded by ssh_timeout."""
        deadline = time.monotonic() + self.site.ssh_timeout
        self.progress(f"waiting for SSH on {hub.name} ({hub.address})")
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((hub.address, hub.ssh_port), timeout=5) as sock:
                    sock.settimeout(5)
                    if sock.recv(64).startswith(b"SSH-"):
                        return
                    last = "not an SSH server"
            except OSError as exc:
                last = exc.strerror or type(exc).__name__
            time.sleep(3)
        raise ProvisionError(f"{hub.name} did not answer SSH on {hub.address}:{hub.ssh_port} within "
                             f"{self.site.ssh_timeout} s ({last})",
                             hint=f"check that operator_cidr {self.site.operator_cidr} is where you connect from "
                             "and the server's console log; then run the same command again")

    def _sdk_hosts(self) -> list[Host]:
        found = self.found
        servers = found.servers()
        if not servers:
            return []
        ips_by_port = {ip.port_id: ip.floating_ip_address for ip in found.floating_ips() if ip.port_id}
        hub_ip = ""
        hosts = []
        for server in servers:
            ports = list(self.conn.network.ports(device_id=server.id))
            private = next((fixed["ip_address"] for p in ports for fixed in (p.fixed_ips or [])
                            if ":" not in fixed["ip_address"]), "")
            floating = next((ips_by_port[p.id] for p in ports if p.id in ips_by_port), "")
            role = (server.metadata or {}).get("hubfleet-role", "hub" if server.name.endswith("-hub") else "worker")
            if role == "hub":
                hub_ip = floating
            hosts.append(Host(
                name=server.name, role=role, address=floating or private, ssh_port=22, ssh_user=self.site.ssh_user,
                private_address=private, http_port=80 if role == "hub" else None,
                https_port=443 if role == "hub" else None,
                extra={"server_id": server.id, "status": server.status, "floating_ip": floating},
            ))
        hosts.sort(key=lambda h: (h.role != "hub", _worker_index(h.name)))
        if hub_ip:  # workers have no public address: Ansible reaches them through the hub
            jump = f"-o ProxyJump={self.site.ssh_user}@{hub_ip}"
            for h in hosts:
                if h.role != "hub":
                    h.extra["ansible_ssh_common_args"] = jump
        return hosts

    def _save_hosts(self, hosts: list[Host]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "hosts.json").write_text(json.dumps([h.to_dict() for h in hosts], indent=2) + "\n")

    # --- destroy -----------------------------------------------------------------------------

    def _sdk_destroy(self) -> None:
        """Dependency order; every step re-reads the cloud, so an interrupted destroy resumes where it stopped."""
        found, net_api = self.found, self.conn.network
        for ip in found.floating_ips():
            self.progress(f"deleting floating IP {ip.floating_ip_address}")
            net_api.delete_ip(ip, ignore_missing=True)
        servers = found.servers()
        for server in servers:
            self.progress(f"deleting server {server.name}")
            self.conn.compute.delete_server(server, ignore_missing=True)
        self._wait_servers_gone(servers)
        for volume in found.volumes():
            self.progress(f"deleting volume {volume.name}")
            self.conn.block_storage.delete_volume(volume, ignore_missing=True)
        for group in found.security_groups():
            self.progress(f"deleting security group {group.name}")
            net_api.delete_security_group(group, ignore_missing=True)
        for router in found.routers():
            self.progress(f"deleting router {router.name}")
            for port in net_api.ports(device_id=router.id, device_owner="network:router_interface"):
                for fixed in port.fixed_ips or []:
                    net_api.remove_interface_from_router(router, subnet=fixed["subnet_id"])
            net_api.delete_router(router, ignore_missing=True)
        for subnet in found.subnets():
            self.progress(f"deleting subnet {subnet.name}")
            net_api.delete_subnet(subnet, ignore_missing=True)
        for network in found.networks():
            self.progress(f"deleting network {network.name}")
            net_api.delete_network(network, ignore_missing=True)
        if found.keypair() is not None:
            self.progress(f"deleting keypair {found.name}")
            self.conn.compute.delete_keypair(found.name, ignore_missing=True)
        for zone, record in found.dns_records(self.site.dns_zone):
            self.progress(f"deleting DNS record {record.name}")
            self.conn.dns.delete_recordset(record, zone, ignore_missing=True)

    def _wait_servers_gone(self, servers: list) -> None:
        if not servers:
            return
        deadline = time.monotonic() + self.site.delete_timeout
        self.progress(f"waiting for {len(servers)} server(s) to be deleted")
        while True:
            left = self.found.servers()
            if not left:
                return
            if time.monotonic() > deadline:
                raise ProvisionError(
                    f"servers still there after {self.site.delete_timeout} s: "
                    + ", ".join(f"{s.name} ({s.status})" for s in left),
                    hint="run destroy again; it resumes where it stopped")
            time.sleep(POLL)

    # --- Terraform engine ------------------------------------------------------------------------

    def _terraform_runner(self):
        from hubfleet.terraform import TerraformRunner, default_module_dir

        return TerraformRunner(self.site.terraform_module or default_module_dir(), self.workdir,
                               binary=self.site.terraform_binary, progress=self.progress)

    def terraform_variables(self, specs: list[HostSpec], ssh_public_key: str, flavor_map: dict[str, str]) -> dict:
        """The course's .tfvars.json: names and sizes only; credentials stay in clouds.yaml."""
        flavors = {f.name: f for f, _ in real_flavors(self.conn)}
        return terraform_variables(self.site, self.course_name, specs, ssh_public_key, flavor_map, flavors,
                                   record=self._record_name())

    def _terraform_apply(self, specs: list[HostSpec], ssh_public_key: str, flavor_map: dict[str, str]) -> list[Host]:
        runner = self._terraform_runner()
        outputs = runner.ensure_applied(self.terraform_variables(specs, ssh_public_key, flavor_map))
        hosts = hosts_from_terraform_outputs(outputs)
        dns = outputs.get("dns_record") or ""
        self.progress(f"DNS record {dns} created" if dns else
                      f"point the course's DNS name at {outputs.get('floating_ip', '')}")
        return hosts


def terraform_variables(site: "Site", course: str, specs: list[HostSpec], ssh_public_key: str,
                        flavor_map: dict[str, str], flavors: dict[str, Flavor], *, record: str | None) -> dict:
    """Inputs of terraform/openstack (and of the built-in test module): the same names, the same types."""
    hosts = []
    for i, spec in enumerate(specs):
        name = host_name(course, i, spec.role)
        real = flavor_map.get(spec.flavor, spec.flavor)
        size = data_volume_gib(spec, flavors[real]) if real in flavors else 0
        hosts.append({"name": name, "role": spec.role, "flavor": real, "volume_size": size,
                      "user_data": cloud_init(name, ssh_public_key)})
    return {
        "cloud": site.cloud_name() or "",
        "course_name": course,
        "image_name": site.image,
        "external_network": site.external_network,
        "network_name": site.network or "",
        "subnet_cidr": site.subnet_cidr,
        "dns_nameservers": list(site.dns_nameservers),
        "operator_cidr": site.operator_cidr,
        "ssh_public_key": ssh_public_key.strip(),
        "ssh_user": site.ssh_user,
        "hosts": hosts,
        "dns_zone": site.dns_zone or "",
        "dns_record": record or "",
    }


def hosts_from_terraform_outputs(outputs: dict[str, Any]) -> list[Host]:
    """Hosts from the module's `hosts` output (a list of objects, hub first)."""
    rows = outputs.get("hosts") or []
    hub_ip = next((r.get("address", "") for r in rows if r.get("role") == "hub"), "")
    hosts = []
    for row in rows:
        hub = row.get("role") == "hub"
        extra = {"server_id": row.get("id", ""), "floating_ip": row.get("address", "") if hub else ""}
        if not hub and hub_ip:
            extra["ansible_ssh_common_args"] = f"-o ProxyJump={row.get('ssh_user', 'root')}@{hub_ip}"
        hosts.append(Host(name=row["name"], role=row["role"], address=row.get("address") or row.get("private_address", ""),
                          ssh_port=22, ssh_user=row.get("ssh_user", "root"),
                          private_address=row.get("private_address", ""), http_port=80 if hub else None,
                          https_port=443 if hub else None, extra=extra))
    hosts.sort(key=lambda h: (h.role != "hub", _worker_index(h.name)))
    return hosts


def _worker_index(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0

