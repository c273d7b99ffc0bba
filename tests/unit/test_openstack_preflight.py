"""Pre-flight logic of the OpenStack provider as pure functions: no cloud, no SDK calls.

The functions under test take plain data (flavors, quotas, specs); the one test that needs an
SDK answer (`test_without_sdk_...`) hides openstacksdk to check the message an operator gets.
"""

from __future__ import annotations

import base64
import builtins

import pytest
import yaml

from hubfleet.descriptor import parse_course
from hubfleet.errors import ProvisionError
from hubfleet.providers.base import HostSpec
from hubfleet.flavors import Catalogue, Flavor, load_catalogue
from hubfleet.providers.openstack.cloud import connect
from hubfleet.providers.openstack.names import host_name
from hubfleet.providers.openstack.preflight import (
    PreflightReport,
    QuotaUse,
    catalogue_from_flavors,
    data_volume_gib,
    quota_message,
    quota_shortages,
    resource_needs,
    rule_key,
    security_group_rules,
    smallest_fitting,
)
from hubfleet.providers.openstack.settings import parse_openstack_site
from hubfleet.providers.openstack.terraform import hosts_from_terraform_outputs
from hubfleet.providers.openstack.userdata import cloud_init
from hubfleet.sizing import plan_course

GiB = 1024**3
FLAVORS = [
    Flavor("c1.tiny", 1, 1 * GiB, 10 * GiB),
    Flavor("c1.small", 2, 4 * GiB, 20 * GiB),
    Flavor("c1.wide", 8, 4 * GiB, 20 * GiB),
    Flavor("c1.large", 4, 16 * GiB, 80 * GiB),
]


def spec(role="hub", flavor="c1.small", vcpus=2, ram=4, disk=20) -> HostSpec:
    return HostSpec(role, flavor, vcpus, ram * GiB, disk * GiB)


def test_smallest_fitting_flavor_is_the_least_memory_then_fewest_cores():
    assert smallest_fitting(FLAVORS, 2, 4 * GiB).name == "c1.small"
    assert smallest_fitting(FLAVORS, 3, 2 * GiB).name == "c1.wide"
    assert smallest_fitting(FLAVORS, 4, 8 * GiB).name == "c1.large"
    assert smallest_fitting(FLAVORS, 64, GiB) is None


def test_catalogue_from_real_flavors_keeps_preferred_ones_and_known_prices():
    prices = Catalogue((Flavor("c1.small", 2, 4 * GiB, 20 * GiB, 0.5),), currency="CHF")
    catalogue = catalogue_from_flavors(FLAVORS, ["c1.small", "c1.large"], prices)
    assert [(f.name, f.price_per_hour) for f in catalogue.flavors] == [("c1.small", 0.5), ("c1.large", None)]
    assert catalogue.currency == "CHF"
    assert len(catalogue_from_flavors(FLAVORS, [], None).flavors) == 4


def test_plan_from_real_flavors_names_real_flavors(workshop_data):
    course = parse_course({**workshop_data, "provider": "openstack"})
    plan = plan_course(course, catalogue_from_flavors(FLAVORS, [], load_catalogue("openstack")))
    assert {h.flavor for h in plan.hosts} <= {f.name for f in FLAVORS}
    assert plan.cost_per_day is None  # the packaged prices do not name these flavors


def test_quota_shortages_list_every_short_resource_with_numbers():
    quotas = {
        "instances": QuotaUse("instances", 10, 9), "cores": QuotaUse("cores", 20, 18),
        "ram": QuotaUse("ram", 51200, 40960), "floating_ips": QuotaUse("floating_ips", 2, 2),
        "security_groups": QuotaUse("security_groups", -1, 50), "networks": QuotaUse("networks", 5, 0),
    }
    needs = {"instances": 3, "cores": 6, "ram": 12288, "floating_ips": 1, "security_groups": 1, "networks": 1}
    lines = quota_shortages(needs, quotas)
    assert lines == [
        "instances: the plan needs 3, 1 free (quota 10, 9 in use)",
        "cores: the plan needs 6, 2 free (quota 20, 18 in use)",
        "RAM: the plan needs 12Gi, 10Gi free (quota 50Gi, 40Gi in use)",
        "floating IPs: the plan needs 1, 0 free (quota 2, 2 in use)",
    ]
    message = quota_message(lines)
    assert message.startswith("the project's quota does not cover the plan — nothing was created")
    assert all(line in message for line in lines)


def test_unlimited_or_unknown_quotas_are_never_short():
    assert quota_shortages({"instances": 100, "volumes": 5}, {"instances": QuotaUse("instances", -1, 3)}) == []


def test_needs_count_only_what_is_missing():
    names = [host_name("c", 0, "hub"), host_name("c", 1, "worker"), host_name("c", 2, "worker")]
    assert names == ["c-hub", "c-worker-1", "c-worker-2"]
    specs = [spec(), spec("worker"), spec("worker")]
    flavors = {"c1.small": FLAVORS[1]}
    fresh = resource_needs(specs, flavors, missing_hosts=set(names), names=names, need_floating_ip=True,
                           need_security_group=True, need_network=True)
    assert (fresh["instances"], fresh["cores"], fresh["ram"]) == (3, 6, 3 * 4096)
    assert fresh["floating_ips"] == fresh["security_groups"] == fresh["networks"] == fresh["routers"] == 1
    assert fresh["ports"] == 4 and fresh["security_group_rules"] == 9 and fresh["volumes"] == 0
    rerun = resource_needs(specs, flavors, missing_hosts={"c-worker-2"}, names=names, need_floating_ip=False,
                           need_security_group=False, need_network=False)
    assert (rerun["instances"], rerun["cores"], rerun["floating_ips"], rerun["networks"]) == (1, 2, 0, 0)


def test_a_host_whose_flavor_disk_is_too_small_needs_a_data_volume():
    assert data_volume_gib(spec(disk=20), FLAVORS[1]) == 0
    assert data_volume_gib(spec(disk=60), FLAVORS[1]) == 50  # everything but the 10 GiB base stays on the volume
    names = ["c-hub"]
    needs = resource_needs([spec(disk=60)], {"c1.small": FLAVORS[1]}, missing_hosts={"c-hub"}, names=names,
                           need_floating_ip=False, need_security_group=False, need_network=False)
    assert (needs["volumes"], needs["gigabytes"]) == (1, 50)


def test_security_group_opens_ssh_to_the_operator_only_and_swarm_inside_the_group():
    rules = security_group_rules("198.51.100.7/32", "G")
    ssh = [r for r in rules if r["port_range_min"] == 22]
    assert ssh == [{"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
                    "remote_ip_prefix": "198.51.100.7/32", "ether_type": "IPv4"}]
    assert {(r["protocol"], r["port_range_min"]) for r in rules if r.get("remote_group_id") == "G"} == {
        ("tcp", 2377), ("tcp", 7946), ("udp", 7946), ("udp", 4789)}
    assert all("remote_ip_prefix" not in r for r in rules if r.get("remote_group_id"))
    assert {r["port_range_min"] for r in rules if r.get("remote_ip_prefix") in ("0.0.0.0/0", "::/0")} == {80, 443}
    assert security_group_rules("2001:db8::/64", "G")[0]["ether_type"] == "IPv6"


def test_rule_key_treats_an_any_address_prefix_like_neutron_does():
    created = security_group_rules("198.51.100.7/32", "G")[1]  # HTTP from 0.0.0.0/0
    stored = {**created, "remote_ip_prefix": None, "id": "x"}
    assert rule_key(created) == rule_key(stored)


def test_cloud_init_names_the_host_and_authorises_the_course_key_and_installs_nothing():
    text = cloud_init("c-hub", "ssh-ed25519 AAAA key\n")
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    assert data == {"hostname": "c-hub", "ssh_authorized_keys": ["ssh-ed25519 AAAA key"]}
    base64.b64encode(text.encode())  # what the server create sends


def test_hosts_from_terraform_outputs_put_the_hub_first_with_its_ports_and_volumes():
    outputs = {"hosts": [
        {"name": "c-worker-2", "role": "worker", "id": "3", "address": "10.0.0.3", "private_address": "10.0.0.3",
         "ssh_user": "debian"},
        {"name": "c-hub", "role": "hub", "id": "1", "address": "203.0.113.5", "private_address": "10.0.0.1",
         "ssh_user": "debian", "volume_id": "v-1"},
        {"name": "c-worker-10", "role": "worker", "id": "4", "address": "10.0.0.4", "private_address": "10.0.0.4",
         "ssh_user": "debian"},
    ]}
    hosts = hosts_from_terraform_outputs(outputs)
    assert [h.name for h in hosts] == ["c-hub", "c-worker-2", "c-worker-10"]
    assert hosts[0].http_port == 80 and hosts[1].http_port is None
    assert hosts[0].extra["floating_ip"] == "203.0.113.5" and hosts[1].extra["floating_ip"] == ""
    assert (hosts[0].data_volume_id, hosts[1].data_volume_id) == ("v-1", "")
    assert hosts_from_terraform_outputs({}) == []


def test_report_with_problems_raises_one_error_listing_them_all():
    report = PreflightReport(cloud="x", problems=["image 'a' does not exist", "flavor b does not exist"])
    assert not report.ok and report.to_dict()["ok"] is False
    with pytest.raises(ProvisionError) as err:
        report.raise_for_problems()
    assert "nothing was created" in str(err.value)
    assert "image 'a'" in str(err.value) and "flavor b" in str(err.value)
    PreflightReport(cloud="x").raise_for_problems()


def test_without_sdk_connect_says_how_to_install_it(monkeypatch):
    real_import = builtins.__import__

    def no_openstack(name, *args, **kwargs):
        if name == "openstack" or name.startswith("openstack."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openstack)
    site = parse_openstack_site({"image": "i", "external_network": "e", "operator_cidr": "192.0.2.1/32"})
    with pytest.raises(ProvisionError, match="openstacksdk is not installed") as err:
        connect(site)
    assert "hubfleet[openstack]" in str(err.value)
