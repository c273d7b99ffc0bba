"""The cloud's API through openstacksdk: logging in, its flavors and quotas, and a course's resources.

Credentials come from clouds.yaml / OS_CLOUD (openstacksdk's conventions) and are never read,
printed or logged here; the site file only names the cloud.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hubfleet.errors import ProvisionError
from hubfleet.flavors import GiB, Flavor
from hubfleet.providers.openstack.names import TAG_KEY, course_tag, resource_name

if TYPE_CHECKING:
    from hubfleet.providers.openstack.settings import OpenStackSite

MiB = 1024**2


def connect(site: "OpenStackSite"):
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
        raise ProvisionError(f"cannot log in to {where}: {first_line(exc)}",
                             hint="check the credentials in clouds.yaml (hubfleet never prints them)") from None
    return conn


def find(finder, name_or_id: str):
    """A find_* call that answers None when nothing matches (the SDK's ignore_missing is going away)."""
    from openstack import exceptions as os_exc

    try:
        return finder(name_or_id, ignore_missing=False)
    except os_exc.NotFoundException:
        return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def cloud_errors():
    """The exception types a cloud call raises (keystoneauth's and openstacksdk's)."""
    from keystoneauth1 import exceptions as ks_exc
    from openstack import exceptions as os_exc

    return (ks_exc.ClientException, os_exc.SDKException)


def real_flavors(conn) -> list[tuple[Flavor, str]]:
    """The cloud's flavors as sizing Flavors, with their ids."""
    return [(Flavor(f.name, float(f.vcpus), int(f.ram) * MiB, int(f.disk or 0) * GiB), f.id)
            for f in conn.compute.flavors(details=True)]


def has_volumes(conn) -> bool:
    return conn.has_service("block-storage") or conn.has_service("volumev3")


class CourseResources:
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

    def security_groups(self) -> list:
        return [g for g in self.conn.network.security_groups() if self._ours(g)]

    def security_group(self):
        return next(iter(self.security_groups()), None)

    def networks(self) -> list:
        return [n for n in self.conn.network.networks() if self._ours(n)]

    def network(self):
        return next(iter(self.networks()), None)

    def subnets(self) -> list:
        return [s for s in self.conn.network.subnets() if self._ours(s)]

    def routers(self) -> list:
        return [r for r in self.conn.network.routers() if self._ours(r)]

    def ports(self) -> list:
        """Ports that carry the course's tag or sit on its own network (servers' and the router's)."""
        networks = {n.id for n in self.networks()}
        return [p for p in self.conn.network.ports() if self._ours(p) or p.network_id in networks]

    def keypair(self):
        return find(self.conn.compute.find_keypair, self.name)

    def volumes(self) -> list:
        if not has_volumes(self.conn):
            return []
        return [v for v in self.conn.block_storage.volumes(details=True)
                if (v.metadata or {}).get(TAG_KEY) == self.course]

    def dns_records(self, zone_name: str | None) -> list[tuple[Any, Any]]:
        if not zone_name or not self.conn.has_service("dns"):
            return []
        zone = find(self.conn.dns.find_zone, zone_name)
        if zone is None:
            return []
        return [(zone, r) for r in self.conn.dns.recordsets(zone) if getattr(r, "description", None) == self.tag]

    def leftovers(self, dns_zone: str | None) -> list[str]:
        """Everything still carrying the course, one line each (empty after a complete destroy)."""
        out = [f"server {s.name} ({s.id}, {s.status})" for s in self.servers()]
        out += [f"floating IP {ip.floating_ip_address} ({ip.id})" for ip in self.floating_ips()]
        out += [f"volume {v.name} ({v.id}, {v.status})" for v in self.volumes()]
        out += [f"port {p.name or p.id} ({p.device_owner or 'unbound'})" for p in self.ports()]
        out += [f"security group {g.name} ({g.id})" for g in self.security_groups()]
        out += [f"router {r.name} ({r.id})" for r in self.routers()]
        out += [f"subnet {s.name} ({s.id})" for s in self.subnets()]
        out += [f"network {n.name} ({n.id})" for n in self.networks()]
        if self.keypair() is not None:
            out.append(f"keypair {self.name}")
        out += [f"DNS record {r.name} ({r.id})" for _, r in self.dns_records(dns_zone)]
        return out
