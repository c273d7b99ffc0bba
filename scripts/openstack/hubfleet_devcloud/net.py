"""The development cloud's networks made real on this machine, the way Neutron's agents make them.

- Every Neutron network is a Linux bridge with no address in this namespace, so the overlapping
  subnets of different courses never meet.
- Every server port is a veth pair: one end on its network's bridge, the other inside the server's
  network namespace with the port's MAC address and fixed IP (the compute driver plugs it at boot,
  as DHCP would configure it).
- Every router is a network namespace with a leg on the external bridge (its gateway IP and the
  floating IPs it serves) and a leg on each subnet it routes (that subnet's gateway IP). It
  translates each floating IP to its fixed IP and everything else to its gateway IP.
- The external network is one bridge carrying the external subnet's gateway IP on this machine,
  masqueraded to the outside world, so servers reach the Debian mirrors as on a campus cloud.

Every name starts with `hfd`, and every iptables rule in this machine's own namespace carries the
comment `hubfleet-devcloud`, so `sweep` finds and removes whatever a previous run left behind.

Pure functions (names, rule texts) import nothing but the standard library, for unit tests.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass, field
from typing import Callable, Sequence

PREFIX = "hfd"
EXTERNAL_BRIDGE = "hfdext"
RULE_COMMENT = "hubfleet-devcloud"
ROUTER_NS = "hfd-r-"
SERVER_NS = "hfd-s-"
IFNAMSIZ = 15

Runner = Callable[[Sequence[str]], str]


class NetError(RuntimeError):
    """A command that plumbs the network failed; the message names it and quotes its error."""


def run(cmd: Sequence[str], *, check: bool = True, stdin: str | None = None) -> str:
    result = subprocess.run(list(cmd), capture_output=True, text=True, input=stdin, timeout=60)
    if check and result.returncode != 0:
        raise NetError(f"{' '.join(cmd)} failed (exit {result.returncode}): {result.stderr.strip()[-400:]}")
    return result.stdout


# --- names (pure) -----------------------------------------------------------------------------


def _short(uuid: str, length: int = 10) -> str:
    return uuid.replace("-", "")[:length]


def bridge_name(network_id: str) -> str:
    """The bridge of a Neutron network: hfdn + the first 10 hex digits of its id."""
    return f"{PREFIX}n{_short(network_id)}"


def tap_name(port_id: str) -> str:
    """This machine's end of a server port's veth pair."""
    return f"{PREFIX}t{_short(port_id)}"


def router_namespace(router_id: str) -> str:
    return ROUTER_NS + router_id


def server_namespace(instance_uuid: str) -> str:
    """A name for a server container's network namespace (`ip netns attach`), so `ip -n` reaches it."""
    return SERVER_NS + instance_uuid


def gateway_names(router_id: str) -> tuple[str, str]:
    """(this machine's end on the external bridge, the router's end) of a router's gateway leg."""
    return f"{PREFIX}g{_short(router_id)}", f"qg-{_short(router_id)}"


def interface_names(port_id: str) -> tuple[str, str]:
    """(this machine's end on the network's bridge, the router's end) of a router interface."""
    return f"{PREFIX}q{_short(port_id)}", f"qr-{_short(port_id)}"


# --- what a router does (pure) ------------------------------------------------------------------


@dataclass(frozen=True)
class RouterInterface:
    port_id: str
    network_id: str
    address: str  # the subnet's gateway IP, e.g. 10.42.0.1
    cidr: str  # the subnet, e.g. 10.42.0.0/24
    mac: str = ""


@dataclass(frozen=True)
class FloatingIP:
    address: str
    fixed: str


@dataclass
class Router:
    id: str
    gateway: str = ""  # the router's address on the external network ("" when it has no gateway)
    external_cidr: str = ""
    external_gateway: str = ""  # the external subnet's gateway: this machine's address on the bridge
    interfaces: list[RouterInterface] = field(default_factory=list)
    floating_ips: list[FloatingIP] = field(default_factory=list)


def router_nat_rules(router: Router) -> str:
    """The router's whole nat table, for iptables-restore inside its namespace.

    Floating IPs are translated both ways; any other traffic from a routed subnet leaves with the
    router's gateway address; a server reaching another server's floating IP (hairpin) is
    translated to the router's interface address, so the answer comes back through the router.
    """
    lines = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             ":POSTROUTING ACCEPT [0:0]"]
    if router.gateway:
        _, qg = gateway_names(router.id)
        for fip in sorted(router.floating_ips, key=lambda f: f.address):
            lines.append(f"-A PREROUTING -d {fip.address}/32 -j DNAT --to-destination {fip.fixed}")
            lines.append(f"-A OUTPUT -d {fip.address}/32 -j DNAT --to-destination {fip.fixed}")
            lines.append(f"-A POSTROUTING -s {fip.fixed}/32 -o {qg} -j SNAT --to-source {fip.address}")
        for interface in router.interfaces:
            _, qr = interface_names(interface.port_id)
            lines.append(f"-A POSTROUTING -s {interface.cidr} -o {qr} -m conntrack --ctstate DNAT "
                         f"-j SNAT --to-source {interface.address}")
            lines.append(f"-A POSTROUTING -s {interface.cidr} -o {qg} -j SNAT --to-source {router.gateway}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def prefix_length(cidr: str) -> int:
    return ipaddress.ip_network(cidr, strict=False).prefixlen


# --- choosing the external network's range (pure, but for what it reads) ------------------------------

# Tried in order when no range is given: documentation and benchmarking ranges no campus routes.
EXTERNAL_CANDIDATES = ("198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24", "198.18.250.0/24", "100.127.250.0/24")
# Names whose addresses must stay reachable the usual way: this machine's package mirrors.
KEEP_REACHABLE = ("deb.debian.org", "security.debian.org", "pypi.org", "files.pythonhosted.org", "registry.npmjs.org")


def external_conflicts(cidr: str, routes: list[str], addresses: dict[str, list[str]]) -> list[str]:
    """Why `cidr` cannot be the external network here: routes it overlaps, needed addresses inside it.

    `routes` are this machine's routed prefixes (not the default route); `addresses` maps what must
    stay reachable (resolvers, mirrors, the default gateway) to its addresses.
    """
    network = ipaddress.ip_network(cidr, strict=False)
    problems = []
    for route in routes:
        try:
            other = ipaddress.ip_network(route, strict=False)
        except ValueError:
            continue
        if other.version == network.version and other.overlaps(network) and other.prefixlen > 0:
            problems.append(f"{cidr} overlaps this machine's route to {route}")
    for name, found in sorted(addresses.items()):
        for address in found:
            try:
                inside = ipaddress.ip_address(address) in network
            except ValueError:
                continue
            if inside:
                problems.append(f"{name} ({address}) is inside {cidr}: it would become unreachable")
    return problems


def machine_routes_and_addresses() -> tuple[list[str], dict[str, list[str]]]:
    """This machine's routed prefixes, and the addresses of its resolvers, gateway and package mirrors."""
    import socket

    routes, addresses = [], {}
    for line in run(["ip", "-o", "-4", "route", "show", "table", "all"]).splitlines():
        parts = line.split()
        if not parts:
            continue
        prefix = parts[1] if parts[0] in ("local", "broadcast", "unicast", "blackhole") else parts[0]
        if prefix == "default":
            if "via" in parts:
                addresses["the default gateway"] = [parts[parts.index("via") + 1]]
            continue
        if not any(part.startswith(f"{PREFIX}") for part in parts):  # our own routes are not a conflict
            routes.append(prefix)
    try:
        with open("/etc/resolv.conf") as resolv:
            servers = [line.split()[1] for line in resolv if line.startswith("nameserver ") and len(line.split()) > 1]
        addresses["the DNS resolvers"] = servers
    except OSError:
        pass
    for name in KEEP_REACHABLE:
        try:
            addresses[name] = sorted({info[4][0] for info in socket.getaddrinfo(name, 80, socket.AF_INET)})
        except OSError:
            pass
    return routes, addresses


def choose_external(wanted: str = "") -> str:
    """The external network's range: `wanted` if it is free here, else the first free candidate."""
    routes, addresses = machine_routes_and_addresses()
    if wanted:
        problems = external_conflicts(wanted, routes, addresses)
        if problems:
            raise NetError("cannot use " + wanted + " for the external network: " + "; ".join(problems))
        return wanted
    tried = []
    for candidate in EXTERNAL_CANDIDATES:
        problems = external_conflicts(candidate, routes, addresses)
        if not problems:
            return candidate
        tried.append("; ".join(problems))
    raise NetError("no free range for the external network (" + " | ".join(tried) + "): set one that is free")


# --- plumbing -----------------------------------------------------------------------------------


def _ip(*args: str, ns: str | None = None, check: bool = True, runner: Runner | None = None) -> str:
    cmd = ["ip", *(("-n", ns) if ns else ()), *args]
    if runner is not None:
        return runner(cmd)
    return run(cmd, check=check)


def link_exists(name: str, ns: str | None = None) -> bool:
    cmd = ["ip", *(("-n", ns) if ns else ()), "link", "show", "dev", name]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def namespaces() -> list[str]:
    return [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()]


def links(prefix: str = PREFIX) -> list[str]:
    names = []
    for line in run(["ip", "-o", "link", "show"]).splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0]
        if name.startswith(prefix):
            names.append(name)
    return names


def ensure_bridge(name: str, address: str | None = None) -> None:
    """A bridge that forwards at once (no STP delay); with `address`, this machine's IP on it."""
    if not link_exists(name):
        run(["ip", "link", "add", name, "type", "bridge", "forward_delay", "0", "stp_state", "0"], check=False)
        if not link_exists(name):
            raise NetError(f"could not create bridge {name}")
    if address:
        run(["ip", "addr", "replace", address, "dev", name])
    run(["ip", "link", "set", name, "up"])


def delete_link(name: str, ns: str | None = None) -> None:
    if link_exists(name, ns):
        _ip("link", "del", name, ns=ns, check=False)


def ensure_namespace(ns: str, *, forward: bool = False) -> None:
    if ns not in namespaces():
        run(["ip", "netns", "add", ns], check=False)
    _ip("link", "set", "lo", "up", ns=ns)
    if forward:
        run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])


def delete_namespace(ns: str) -> None:
    if ns in namespaces():
        run(["ip", "netns", "delete", ns], check=False)


def attach_namespace(ns: str, pid: int) -> None:
    """Name a process's network namespace (a server container's), replacing a stale name."""
    delete_namespace(ns)
    run(["ip", "netns", "attach", ns, str(pid)])


def ensure_veth(outside: str, bridge: str, inside: str, ns: str, *, mac: str = "", mtu: int = 1500) -> bool:
    """A veth pair: `outside` on `bridge` here, `inside` in namespace `ns`. True when it was made now."""
    made = False
    if not link_exists(inside, ns):
        delete_link(outside)  # a leftover half of an earlier pair
        run(["ip", "link", "add", outside, "mtu", str(mtu), "type", "veth", "peer", "name", inside,
             "mtu", str(mtu), "netns", ns])
        made = True
    if mac:
        _ip("link", "set", inside, "address", mac, ns=ns)
    _ip("link", "set", inside, "up", ns=ns)
    run(["ip", "link", "set", outside, "master", bridge, "up"])
    return made


def set_addresses(ns: str, device: str, wanted: list[str]) -> None:
    """Exactly these IPv4 addresses (CIDR notation) on a device in a namespace."""
    have = set()
    for line in _ip("-o", "-4", "addr", "show", "dev", device, ns=ns).splitlines():
        parts = line.split()
        if "inet" in parts:
            have.add(parts[parts.index("inet") + 1])
    for address in sorted(set(wanted) - have):
        _ip("addr", "add", address, "dev", device, ns=ns)
    for address in sorted(have - set(wanted)):
        _ip("addr", "del", address, "dev", device, ns=ns, check=False)


def set_default_route(ns: str, gateway: str) -> None:
    _ip("route", "replace", "default", "via", gateway, ns=ns)


# --- servers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerPort:
    port_id: str
    network_id: str
    mac: str
    addresses: tuple[str, ...]  # CIDR notation, e.g. ("10.42.0.5/24",)
    gateway: str = ""
    mtu: int = 1500


def plug_server(instance_uuid: str, pid: int, ports: list[ServerPort]) -> None:
    """Wire a running server container: its ports as eth0, eth1..., the first one's gateway as default route."""
    ns = server_namespace(instance_uuid)
    attach_namespace(ns, pid)
    _ip("link", "set", "lo", "up", ns=ns)
    for index, port in enumerate(ports):
        bridge = bridge_name(port.network_id)
        ensure_bridge(bridge)
        device = f"eth{index}"
        ensure_veth(tap_name(port.port_id), bridge, device, ns, mac=port.mac, mtu=port.mtu)
        set_addresses(ns, device, list(port.addresses))
    if ports and ports[0].gateway:
        set_default_route(ns, ports[0].gateway)


def unplug_server(instance_uuid: str, port_ids: list[str]) -> None:
    for port_id in port_ids:
        delete_link(tap_name(port_id))
    delete_namespace(server_namespace(instance_uuid))


# --- routers and the external network --------------------------------------------------------------


def _iptables_rule(table: str, chain: str, rule: list[str]) -> None:
    """Append a rule in this machine's namespace once, marked as ours."""
    spec = [*rule, "-m", "comment", "--comment", RULE_COMMENT]
    if subprocess.run(["iptables", "-w", "-t", table, "-C", chain, *spec], capture_output=True).returncode != 0:
        run(["iptables", "-w", "-t", table, "-I" if chain == "DOCKER-USER" else "-A", chain, *spec])


def _chain_exists(table: str, chain: str) -> bool:
    return subprocess.run(["iptables", "-w", "-t", table, "-S", chain], capture_output=True).returncode == 0


def ensure_external(cidr: str, gateway: str) -> None:
    """The external bridge with this machine at the subnet's gateway, masqueraded to the world.

    Docker's engine drops forwarded traffic it does not know (FORWARD policy DROP, bridged frames
    included, as Docker loads br_netfilter): DOCKER-USER lets ours through.
    """
    ensure_bridge(EXTERNAL_BRIDGE, f"{gateway}/{prefix_length(cidr)}")
    run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    # Not on our bridges: frames bridged there pass this table too (br_netfilter) and must keep their source.
    _iptables_rule("nat", "POSTROUTING", ["-s", cidr, "!", "-o", f"{PREFIX}+", "-j", "MASQUERADE"])
    chain = "DOCKER-USER" if _chain_exists("filter", "DOCKER-USER") else "FORWARD"
    _iptables_rule("filter", chain, ["-i", f"{PREFIX}+", "-j", "ACCEPT"])
    _iptables_rule("filter", chain, ["-o", f"{PREFIX}+", "-j", "ACCEPT"])


def apply_router(router: Router, *, applied: dict[str, str] | None = None) -> None:
    """Make one router real: namespace, legs, addresses, routes and NAT (only what differs)."""
    ns = router_namespace(router.id)
    ensure_namespace(ns, forward=True)
    wanted_legs = set()
    if router.gateway:
        outside, inside = gateway_names(router.id)
        wanted_legs.add(inside)
        ensure_veth(outside, EXTERNAL_BRIDGE, inside, ns)
        length = prefix_length(router.external_cidr)
        set_addresses(ns, inside, [f"{router.gateway}/{length}"] + [f"{f.address}/32" for f in router.floating_ips])
        if router.external_gateway:
            set_default_route(ns, router.external_gateway)
    for interface in router.interfaces:
        outside, inside = interface_names(interface.port_id)
        wanted_legs.add(inside)
        bridge = bridge_name(interface.network_id)
        ensure_bridge(bridge)
        ensure_veth(outside, bridge, inside, ns, mac=interface.mac)
        set_addresses(ns, inside, [f"{interface.address}/{prefix_length(interface.cidr)}"])
    for line in _ip("-o", "link", "show", ns=ns).splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0]
        if name.startswith(("qg-", "qr-")) and name not in wanted_legs:
            _ip("link", "del", name, ns=ns, check=False)  # an interface removed from the router
    rules = router_nat_rules(router)
    if applied is None or applied.get(router.id) != rules:
        run(["ip", "netns", "exec", ns, "iptables-restore", "-w"], stdin=rules)
        if applied is not None:
            applied[router.id] = rules


def sweep(*, keep_routers: set[str] = frozenset(), keep_networks: set[str] = frozenset(),
          keep_servers: set[str] | None = frozenset(), external: bool = True) -> list[str]:
    """Remove the namespaces, links and rules of routers, networks and servers not kept; what went.

    keep_servers=None leaves every server's namespace alone (the compute driver owns them).
    """
    removed = []
    keep_bridges = {bridge_name(n) for n in keep_networks}
    for ns in namespaces():
        if ns.startswith(ROUTER_NS) and ns[len(ROUTER_NS):] not in keep_routers:
            delete_namespace(ns)
            removed.append(ns)
        elif ns.startswith(SERVER_NS) and keep_servers is not None and ns[len(SERVER_NS):] not in keep_servers:
            delete_namespace(ns)
            removed.append(ns)
    for name in links():
        if name.startswith(f"{PREFIX}t") and keep_servers is not None and not keep_servers:
            delete_link(name)  # a server port: its namespace can outlive its container for a while
            removed.append(name)
        elif name.startswith(f"{PREFIX}n") and name not in keep_bridges:
            delete_link(name)
            removed.append(name)
        elif name == EXTERNAL_BRIDGE and external:
            delete_link(name)
            removed.append(name)
    if external:
        for table in ("nat", "filter"):
            for line in run(["iptables", "-w", "-t", table, "-S"]).splitlines():
                if RULE_COMMENT in line and line.startswith("-A "):
                    run(["iptables", "-w", "-t", table, "-D", *_split_rule(line[3:])], check=False)
                    removed.append(f"iptables {table}: {line}")
    return removed


def _split_rule(text: str) -> list[str]:
    import shlex

    return shlex.split(text)
