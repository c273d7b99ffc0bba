"""The dev cloud's pure parts (scripts/openstack/hubfleet_devcloud): names, NAT rules, the external
range's safety, the seed a server boots with, its ports. No OpenStack, no Docker, no network."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "openstack"))

from hubfleet_devcloud import guest, net  # noqa: E402

from hubfleet.providers.docker.provider import HOST_RUN_FLAGS  # noqa: E402

NET = "463ad250-d225-47af-99f8-5bf7df0299e0"
PORT = "18112333-3133-4a9b-b3c1-000000000001"
ROUTER = "38606587-5a02-4d58-9e76-8d8854928eda"


def test_every_link_name_fits_the_kernel_and_says_what_it_is():
    names = [net.bridge_name(NET), net.tap_name(PORT), *net.gateway_names(ROUTER), *net.interface_names(PORT)]
    assert all(len(name) <= net.IFNAMSIZ for name in names), names
    assert net.bridge_name(NET) == "hfdn463ad250d2" and net.tap_name(PORT) == "hfdt1811233331"
    assert [n.startswith(net.PREFIX) for n in names] == [True, True, True, False, True, False]  # ours, or in a namespace
    assert net.router_namespace(ROUTER) == f"hfd-r-{ROUTER}"


def test_a_router_translates_floating_ips_both_ways_and_the_rest_to_its_gateway():
    router = net.Router(ROUTER, gateway="198.51.100.174", external_cidr="198.51.100.0/24",
                        external_gateway="198.51.100.1",
                        interfaces=[net.RouterInterface(PORT, NET, "10.42.0.1", "10.42.0.0/24")],
                        floating_ips=[net.FloatingIP("198.51.100.192", "10.42.0.42")])
    rules = net.router_nat_rules(router).splitlines()
    qg, qr = net.gateway_names(ROUTER)[1], net.interface_names(PORT)[1]
    assert rules[0] == "*nat" and rules[-1] == "COMMIT"
    assert "-A PREROUTING -d 198.51.100.192/32 -j DNAT --to-destination 10.42.0.42" in rules
    assert f"-A POSTROUTING -s 10.42.0.42/32 -o {qg} -j SNAT --to-source 198.51.100.192" in rules
    assert f"-A POSTROUTING -s 10.42.0.0/24 -o {qg} -j SNAT --to-source 198.51.100.174" in rules
    # The floating IP's own rule comes before the subnet's: a server with one leaves with it.
    assert rules.index(f"-A POSTROUTING -s 10.42.0.42/32 -o {qg} -j SNAT --to-source 198.51.100.192") < \
        rules.index(f"-A POSTROUTING -s 10.42.0.0/24 -o {qg} -j SNAT --to-source 198.51.100.174")
    assert f"-A POSTROUTING -s 10.42.0.0/24 -o {qr} -m conntrack --ctstate DNAT -j SNAT --to-source 10.42.0.1" in rules
    assert net.router_nat_rules(net.Router(ROUTER)).splitlines()[-1] == "COMMIT"  # no gateway: no NAT at all


def test_an_external_range_that_would_hide_a_mirror_or_a_route_is_refused():
    routes = ["192.0.2.0/24", "172.17.0.0/16", "10.213.0.0/28"]
    addresses = {"deb.debian.org": ["203.0.113.80"], "the DNS resolvers": ["10.255.255.53"],
                 "the default gateway": ["192.0.2.1"]}
    assert net.external_conflicts("198.51.100.0/24", routes, addresses) == []
    hidden = net.external_conflicts("203.0.113.0/24", routes, addresses)
    assert hidden == ["deb.debian.org (203.0.113.80) is inside 203.0.113.0/24: it would become unreachable"]
    assert net.external_conflicts("192.0.2.128/25", routes, addresses)[0] == \
        "192.0.2.128/25 overlaps this machine's route to 192.0.2.0/24"
    assert len(net.external_conflicts("10.0.0.0/8", routes, addresses)) == 2  # a route and the resolver


def instance(**overrides):
    values = {"uuid": "5ef9e216-a6db-4f4e-a109-52b68c93c381", "hostname": "course-hub",
              "key_data": "ssh-ed25519 AAAA course\n",
              "user_data": base64.b64encode(b"#cloud-config\nhostname: course-hub\n").decode()}
    return SimpleNamespace(**{**values, **overrides})


def test_the_seed_carries_the_instance_its_name_key_and_user_data_and_leaves_the_network_alone():
    seed = guest.seed_files(instance(), [])
    meta = yaml.safe_load(seed["meta-data"])
    assert meta == {"instance-id": "5ef9e216-a6db-4f4e-a109-52b68c93c381", "local-hostname": "course-hub",
                    "public-keys": ["ssh-ed25519 AAAA course"]}
    assert seed["user-data"] == "#cloud-config\nhostname: course-hub\n"
    assert yaml.safe_load(seed["network-config"]) == {"config": "disabled"}
    bare = guest.seed_files(instance(key_data=None, user_data=None), [])
    assert "public-keys" not in yaml.safe_load(bare["meta-data"]) and bare["user-data"].startswith("#cloud-config")


def test_ports_come_from_nova_network_info_with_their_prefix_gateway_and_mtu():
    vif = {"id": PORT, "address": "fa:16:3e:d0:24:1a",
           "network": {"id": NET, "meta": {"mtu": 1450}, "subnets": [
               {"version": 4, "cidr": "10.42.0.0/24", "gateway": {"address": "10.42.0.1"},
                "ips": [{"address": "10.42.0.42"}], "dns": [{"address": "9.9.9.9"}]},
               {"version": 6, "cidr": "2001:db8::/64", "gateway": {"address": "2001:db8::1"},
                "ips": [{"address": "2001:db8::5"}], "dns": []}]}}
    assert guest.server_ports([vif]) == [net.ServerPort(PORT, NET, "fa:16:3e:d0:24:1a", ("10.42.0.42/24",),
                                                        "10.42.0.1", 1450)]
    assert guest.dns_servers([vif]) == ["9.9.9.9"]


@pytest.mark.parametrize("flag", ["--cap-add", "--security-opt", "--tmpfs", "-v"])
def test_servers_run_with_the_docker_providers_host_flags_but_its_restart_policy(flag):
    pairs = lambda flags: {(a, b) for a, b in zip(flags[::2], flags[1::2]) if a == flag}  # noqa: E731
    assert pairs(guest.HOST_RUN_FLAGS) == pairs(HOST_RUN_FLAGS)
    assert "--restart" not in guest.HOST_RUN_FLAGS, "Nova decides when a server runs"
