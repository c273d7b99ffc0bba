"""The SDK engine: a course's servers, their network and volumes through openstacksdk.

Every step finds what exists by name or tag (names.py) and creates only what is missing, so a
create interrupted anywhere (even by kill -9) converges when run again; a server in ERROR is
replaced. Destroy deletes in dependency order and re-reads the cloud at each step, so it too can
be interrupted and run again.
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Callable

from hubfleet.errors import ProvisionError
from hubfleet.providers.base import Host, HostSpec, Progress
from hubfleet.providers.openstack.cloud import CourseResources, find, real_flavors
from hubfleet.providers.openstack.names import ROLE_KEY, TAG_KEY, host_name, volume_name, worker_index
from hubfleet.providers.openstack.preflight import data_volume_gib, rule_key, security_group_rules
from hubfleet.providers.openstack.userdata import cloud_init

if TYPE_CHECKING:
    from hubfleet.providers.openstack.settings import OpenStackSite

POLL = 1.0  # seconds between status polls


class SdkEngine:
    """Creates, lists and removes one course's resources through openstacksdk."""

    def __init__(self, conn, site: "OpenStackSite", course: str, progress: Progress,
                 record_name: Callable[[], str | None], write_note: Callable[[str, str], None]):
        self.conn = conn
        self.site = site
        self.course = course
        self.progress = progress
        self.record_name = record_name  # the course's DNS record (fully qualified), or None
        self.write_note = write_note  # (file name, text) into the course's work directory

    @property
    def found(self) -> CourseResources:
        return CourseResources(self.conn, self.course)

    def _names(self, specs: list[HostSpec]) -> list[str]:
        return [host_name(self.course, i, s.role) for i, s in enumerate(specs)]

    # --- create ------------------------------------------------------------------------------

    def apply(self, specs: list[HostSpec], ssh_public_key: str, flavor_map: dict[str, str], image) -> list[Host]:
        self.ensure_keypair(ssh_public_key)
        network = self.ensure_network()
        group = self.ensure_security_group()
        servers = self.ensure_servers(specs, ssh_public_key, flavor_map, network, group, image)
        self.wait_for_active(servers)
        self.ensure_volumes(specs, flavor_map)
        self.ensure_floating_ip(servers[0], network)
        hosts = self.hosts()
        self.ensure_dns_record(hosts[0])
        return hosts

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
            return find(self.conn.network.find_network, self.site.network)
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
            net_api.add_interface_to_router(router, subnet.id)  # positional: the keyword changed name in SDK 4
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
                       network, group, image) -> list:
        existing = {s.name: s for s in self.found.servers()}
        servers = []
        for name, spec in zip(self._names(specs), specs):
            server = existing.get(name)
            if server is not None and server.status == "ERROR":
                self.progress(f"server {name} is in ERROR: replacing it")
                self._delete_servers([server])
                server = None
            if server is None:
                flavor = self.conn.compute.find_flavor(flavor_map.get(spec.flavor, spec.flavor), ignore_missing=False)
                self.progress(f"creating server {name} ({flavor.name}, image {image.name})")
                user_data = base64.b64encode(cloud_init(name, ssh_public_key).encode()).decode()
                server = self.conn.compute.create_server(
                    name=name, flavor_id=flavor.id, image_id=image.id, key_name=self.found.name,
                    networks=[{"uuid": network.id}], security_groups=[{"name": group.name}],
                    user_data=user_data, metadata={TAG_KEY: self.course, ROLE_KEY: spec.role})
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
        """A data volume for each host whose flavor's disk is too small, attached to it (roles/engine mounts it)."""
        by_name = {s.name: s for s in self.found.servers()}
        flavors = {f.name: f for f, _ in real_flavors(self.conn)}
        have = {v.name: v for v in self.found.volumes()}
        for name, spec in zip(self._names(specs), specs):
            size = data_volume_gib(spec, flavors[flavor_map.get(spec.flavor, spec.flavor)])
            if not size:
                continue
            volume = have.get(volume_name(name))
            if volume is None:
                self.progress(f"creating data volume {volume_name(name)} ({size} GiB)")
                volume = self.conn.block_storage.create_volume(
                    name=volume_name(name), size=size, metadata={TAG_KEY: self.course}, description=self.found.tag)
            if volume.status != "in-use":
                volume = self.conn.block_storage.wait_for_status(volume, "available", failures=["error"],
                                                                 interval=POLL, wait=self.site.active_timeout)
                self.progress(f"attaching {volume.name} to {name}")
                self.conn.compute.create_volume_attachment(by_name[name], volume_id=volume.id)
                self.conn.block_storage.wait_for_status(volume, "in-use", failures=["error", "error_attaching"],
                                                        interval=POLL, wait=self.site.active_timeout)

    def ensure_floating_ip(self, hub_server, network):
        ips = self.found.floating_ips()
        ports = list(self.conn.network.ports(device_id=hub_server.id, network_id=network.id))
        if not ports:
            raise ProvisionError(f"server {hub_server.name} has no port on network {network.name}")
        port = ports[0]
        ip = next((i for i in ips if i.port_id == port.id), None) or next((i for i in ips if not i.port_id), None)
        if ip is None:
            external = find(self.conn.network.find_network, self.site.external_network)
            self.progress(f"creating a floating IP on {self.site.external_network} for {hub_server.name}")
            ip = self.conn.network.create_ip(floating_network_id=external.id, port_id=port.id,
                                             description=self.found.tag)
        elif ip.port_id != port.id:
            ip = self.conn.network.update_ip(ip, port_id=port.id)
        self._tag(ip)
        return ip

    def ensure_dns_record(self, hub: Host) -> str:
        """The course's A record in the site's DNS zone when Designate is there; else what to put in DNS."""
        record = self.record_name()
        zone_name = self.site.dns_zone
        if not record:
            message = f"no dns_zone in site.yaml: point the course's DNS name at {hub.address}"
        elif not self.conn.has_service("dns"):
            message = f"the cloud has no DNS service: point {record} at {hub.address}"
        elif (zone := find(self.conn.dns.find_zone, zone_name)) is None:
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
        self.write_note("dns.txt", message + "\n")
        return message

    # --- what exists ---------------------------------------------------------------------------

    def hosts(self) -> list[Host]:
        found = self.found
        servers = found.servers()
        if not servers:
            return []
        ips_by_port = {ip.port_id: ip.floating_ip_address for ip in found.floating_ips() if ip.port_id}
        volumes = {v.name: v.id for v in found.volumes()}
        hosts = []
        for server in servers:
            ports = list(self.conn.network.ports(device_id=server.id))
            private = next((fixed["ip_address"] for p in ports for fixed in (p.fixed_ips or [])
                            if ":" not in fixed["ip_address"]), "")
            floating = next((ips_by_port[p.id] for p in ports if p.id in ips_by_port), "")
            role = (server.metadata or {}).get(ROLE_KEY, "hub" if server.name.endswith("-hub") else "worker")
            hub = role == "hub"
            hosts.append(Host(
                name=server.name, role=role, address=floating or private, ssh_port=22, ssh_user=self.site.ssh_user,
                private_address=private, http_port=80 if hub else None, https_port=443 if hub else None,
                data_volume_id=volumes.get(volume_name(server.name), ""),
                extra={"server_id": server.id, "status": server.status, "floating_ip": floating},
            ))
        return sorted(hosts, key=lambda h: (h.role != "hub", worker_index(h.name)))

    # --- remove and destroy ----------------------------------------------------------------------

    def remove(self, names: list[str]) -> None:
        """These servers, their floating IPs, ports and data volumes; the course's network stays."""
        found = self.found
        servers = [s for s in found.servers() if s.name in names]
        ports = {p.id for s in servers for p in self.conn.network.ports(device_id=s.id)}
        for ip in found.floating_ips():
            if ip.port_id in ports:
                self.progress(f"deleting floating IP {ip.floating_ip_address}")
                self.conn.network.delete_ip(ip, ignore_missing=True)
        self._delete_servers(servers)
        for port_id in ports:  # ports Nova made go with their server; one made beside it must go too
            self.conn.network.delete_port(port_id, ignore_missing=True)
        for volume in found.volumes():
            if volume.name in {volume_name(n) for n in names}:
                self._delete_volume(volume)

    def destroy(self) -> None:
        """Dependency order; every step re-reads the cloud, so an interrupted destroy resumes where it stopped."""
        found, net_api = self.found, self.conn.network
        for ip in found.floating_ips():
            self.progress(f"deleting floating IP {ip.floating_ip_address}")
            net_api.delete_ip(ip, ignore_missing=True)
        self._delete_servers(found.servers())
        for volume in found.volumes():
            self._delete_volume(volume)
        for router in found.routers():
            self.progress(f"deleting router {router.name}")
            for port in net_api.ports(device_id=router.id, device_owner="network:router_interface"):
                for fixed in port.fixed_ips or []:
                    net_api.remove_interface_from_router(router, fixed["subnet_id"])
            if router.external_gateway_info:
                net_api.update_router(router, external_gateway_info={})
            net_api.delete_router(router, ignore_missing=True)
        for port in found.ports():
            if port.device_owner in ("", None) or port.device_owner.startswith("compute:"):
                self.progress(f"deleting port {port.name or port.id}")
                net_api.delete_port(port, ignore_missing=True)
        for group in found.security_groups():
            self.progress(f"deleting security group {group.name}")
            net_api.delete_security_group(group, ignore_missing=True)
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

    def _delete_servers(self, servers: list) -> None:
        if not servers:
            return
        for server in servers:
            self.progress(f"deleting server {server.name}")
            self.conn.compute.delete_server(server, ignore_missing=True)
        ids = {s.id for s in servers}
        deadline = time.monotonic() + self.site.delete_timeout
        self.progress(f"waiting for {len(servers)} server(s) to be deleted")
        while True:
            left = [s for s in self.found.servers() if s.id in ids]
            if not left:
                return
            if time.monotonic() > deadline:
                raise ProvisionError(
                    f"servers still there after {self.site.delete_timeout} s: "
                    + ", ".join(f"{s.name} ({s.status})" for s in left),
                    hint="run the same command again; it resumes where it stopped")
            time.sleep(POLL)

    def _volume_now(self, volume_id: str):
        """The volume by its id, None once gone: by id only (a find_* falls back to a name filter on a 404,
        which Cinder refuses with 400 when the volume API does not allow filtering by name)."""
        from openstack import exceptions as os_exc

        try:
            return self.conn.block_storage.get_volume(volume_id)
        except os_exc.NotFoundException:
            return None

    def _delete_volume(self, volume) -> None:
        """A volume, once its server has let it go (a volume still detaching cannot be deleted)."""
        self.progress(f"deleting volume {volume.name}")
        deadline = time.monotonic() + self.site.delete_timeout
        while True:
            current = self._volume_now(volume.id)
            if current is None:
                return
            if time.monotonic() > deadline:
                raise ProvisionError(f"volume {volume.name} is still {current.status} after "
                                     f"{self.site.delete_timeout} s", hint="run the same command again")
            if current.status in ("available", "error", "error_deleting") and not current.attachments:
                self.conn.block_storage.delete_volume(current, ignore_missing=True)
            time.sleep(POLL)
