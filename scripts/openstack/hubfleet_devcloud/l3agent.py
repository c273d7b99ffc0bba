"""The development cloud's L3 agent: makes Neutron's routers and floating IPs real on this machine.

Neutron's own L3 agent needs its RPC, Open vSwitch or Linux bridge agents and a DHCP agent; this
one asks Neutron's API (as the cloud's admin) every POLL seconds and applies what it finds with
net.py: the external bridge, one namespace per router, its legs, and its NAT for floating IPs.
It changes only what differs from the last pass, and removes the routers and network bridges that
Neutron no longer has.

    python3 -m hubfleet_devcloud.l3agent            run until SIGTERM
    python3 -m hubfleet_devcloud.l3agent --once     one pass (tests, start-up)
    python3 -m hubfleet_devcloud.l3agent --sweep    remove everything the dev cloud plumbed
    python3 -m hubfleet_devcloud.l3agent --choose-external [CIDR]
                                                    print a range for the external network that
                                                    hides nothing this machine needs (or say why not)
"""

from __future__ import annotations

import logging
import signal
import sys
import time

from hubfleet_devcloud import net

POLL = 1.0
FULL_EVERY = 60  # passes: read and re-apply everything now and then, in case something was removed by hand
LOG = logging.getLogger("hubfleet-l3")


def fingerprint(conn) -> tuple:
    """What changes when a router, its interfaces or a floating IP change: two cheap calls a pass."""
    routers = sorted((r.id, r.revision_number) for r in conn.network.routers())
    ips = sorted((i.id, i.revision_number, i.port_id or "") for i in conn.network.ips())
    return tuple(routers), tuple(ips)


def desired_state(conn) -> tuple[tuple[str, str] | None, list[net.Router], set[str]]:
    """(external (cidr, gateway) or None, routers, every network id) as Neutron has them now."""
    subnets = {s.id: s for s in conn.network.subnets()}
    networks = list(conn.network.networks())
    external = None
    for network in networks:
        if network.is_router_external:
            for subnet_id in network.subnet_ids or []:
                subnet = subnets.get(subnet_id)
                if subnet and subnet.ip_version == 4 and subnet.gateway_ip:
                    external = (subnet.cidr, subnet.gateway_ip)
                    break
        if external:
            break
    routers = {}
    for router in conn.network.routers():
        gateway_info = router.external_gateway_info or {}
        gateway, cidr, gateway_ip = "", "", ""
        for fixed in gateway_info.get("external_fixed_ips") or []:
            subnet = subnets.get(fixed["subnet_id"])
            if subnet and subnet.ip_version == 4:
                gateway, cidr, gateway_ip = fixed["ip_address"], subnet.cidr, subnet.gateway_ip or ""
                break
        routers[router.id] = net.Router(router.id, gateway, cidr, gateway_ip)
    for port in conn.network.ports(device_owner="network:router_interface"):
        router = routers.get(port.device_id)
        if router is None:
            continue
        for fixed in port.fixed_ips or []:
            subnet = subnets.get(fixed["subnet_id"])
            if subnet and subnet.ip_version == 4:
                router.interfaces.append(net.RouterInterface(port.id, port.network_id, fixed["ip_address"],
                                                             subnet.cidr, port.mac_address or ""))
    for ip in conn.network.ips():
        router = routers.get(ip.router_id or "")
        if router is not None and ip.fixed_ip_address and ip.port_id:
            router.floating_ips.append(net.FloatingIP(ip.floating_ip_address, ip.fixed_ip_address))
    for router in routers.values():
        router.interfaces.sort(key=lambda i: i.port_id)
        router.floating_ips.sort(key=lambda f: f.address)
    return external, sorted(routers.values(), key=lambda r: r.id), {n.id for n in networks}


_checked: dict[str, list[str]] = {}


def apply(external, routers: list[net.Router], networks: set[str], applied_rules: dict[str, str]) -> None:
    if external:
        cidr = external[0]
        if cidr not in _checked:  # never route a range this machine needs to the external bridge
            _checked[cidr] = net.external_conflicts(cidr, *net.machine_routes_and_addresses())
        if _checked[cidr]:
            LOG.error("external subnet %s is not plumbed: %s", cidr, "; ".join(_checked[cidr]))
            return
        net.ensure_external(*external)
    for router in routers:
        try:
            net.apply_router(router, applied=applied_rules)
        except net.NetError as exc:
            applied_rules.pop(router.id, None)
            LOG.error("router %s: %s", router.id, exc)
    for gone in net.sweep(keep_routers={r.id for r in routers}, keep_networks=networks, keep_servers=None,
                          external=False):
        LOG.info("removed %s", gone)
        if gone.startswith(net.ROUTER_NS):
            applied_rules.pop(gone[len(net.ROUTER_NS):], None)


def serve(once: bool = False) -> int:
    import openstack

    conn = openstack.connect(cloud="hubfleet-dev-admin")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    last = None
    seen = None
    applied_rules: dict[str, str] = {}
    passes = 0
    while not stop:
        try:
            now = fingerprint(conn)
            if now == seen and passes % FULL_EVERY != 0:
                passes += 1
                time.sleep(POLL)
                continue
            seen = now
            state = desired_state(conn)
            if state != last or passes % FULL_EVERY == 0:
                if passes % FULL_EVERY == 0:
                    applied_rules.clear()
                apply(*state, applied_rules)
                if state != last:
                    LOG.info("applied %d router(s), %d floating IP(s)", len(state[1]),
                             sum(len(r.floating_ips) for r in state[1]))
                last = state
        except Exception as exc:  # the API may be restarting: try again next pass
            LOG.warning("pass failed: %s", exc)
            last = seen = None
            if once:
                return 1
        passes += 1
        if once:
            return 0
        time.sleep(POLL)
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("keystoneauth").setLevel(logging.WARNING)  # its retries while Neutron starts
    if "--choose-external" in argv:
        wanted = argv[argv.index("--choose-external") + 1] if len(argv) > argv.index("--choose-external") + 1 else ""
        try:
            print(net.choose_external(wanted))
        except net.NetError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    if "--sweep" in argv:
        for gone in net.sweep(keep_servers=frozenset()):
            LOG.info("removed %s", gone)
        return 0
    return serve(once="--once" in argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
