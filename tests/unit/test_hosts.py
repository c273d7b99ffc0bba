"""Stock hosts' inputs without Docker: the site's address ranges, the peers' pre-flight, how the
course image travels, the inventory a provider's hosts become, and the Swarm's nodes as reported."""

from __future__ import annotations

import ipaddress

import pytest
import yaml

from hubfleet import ansible, course_image, peers
from hubfleet.descriptor import parse_course
from hubfleet.errors import InvalidInput, ProvisionError
from hubfleet.lifecycle import nodes_from, plan_for
from hubfleet.providers.base import Host
from hubfleet.providers.openstack.settings import parse_openstack_site
from hubfleet.site import Addresses, load_site_wide, parse_site_wide
from hubfleet.state import StateStore

MOODLE = {"kind": "lti13", "issuer": "https://moodle.campus.edu", "client_id": "hub",
          "deployment_ids": ["1"], "authorize_url": "https://moodle.campus.edu/mod/lti/auth.php",
          "jwks_url": "https://keys.campus.edu/mod/lti/certs.php"}


def site_problems(data) -> dict[str, str]:
    with pytest.raises(InvalidInput) as err:
        parse_site_wide(data)
    return {p.path: p.message for p in err.value.problems}


# --- the site's address ranges ------------------------------------------------------------------

def test_default_ranges_avoid_dockers_own_and_the_private_ranges():
    ranges = Addresses().ranges()
    for _, net in ranges:
        assert net.subnet_of(ipaddress.ip_network("198.18.0.0/15"))
        for campus in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"):
            assert not net.overlaps(ipaddress.ip_network(campus))
    variables = Addresses().role_variables()
    assert variables["engine_bridge_address"] == "198.18.0.1/24"
    assert variables["engine_address_pools"] == [{"base": "198.18.128.0/17", "size": 24}]
    assert variables["swarm_address_pools"] == ["198.19.0.0/16"] and variables["swarm_subnet_size"] == 24


def test_site_wide_sections_default_without_a_file_and_sit_beside_the_openstack_fields(tmp_path, monkeypatch):
    monkeypatch.delenv("HUBFLEET_SITE_CONFIG", raising=False)
    assert load_site_wide(tmp_path).docker.host_image == "auto"
    openstack = {"image": "debian-12", "external_network": "public", "operator_cidr": "198.51.100.7/32"}
    data = {**openstack, "addresses": {"engine_pools": ["10.250.0.0/17"]}, "docker": {"host_image": "stock"}}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(data))
    wide = load_site_wide(tmp_path)
    assert wide.addresses.engine_pools == ["10.250.0.0/17"] and wide.docker.host_image == "stock"
    assert parse_openstack_site(data).image == "debian-12", "the OpenStack model ignores the site-wide sections"


def test_bad_ranges_name_the_field_and_the_fix():
    assert "198.18.0.1/24" in site_problems({"addresses": {"engine_bridge": "198.18.0.0/24"}})["addresses.engine_bridge"]
    assert "not an IPv4 range" in site_problems({"addresses": {"swarm_pools": ["campus"]}})["addresses.swarm_pools"]
    message = site_problems({"addresses": {"engine_pools": ["198.19.0.0/17"]}})["addresses"]
    assert "overlaps" in message and "give each its own range" in message
    assert "smaller than one network" in site_problems({"addresses": {"swarm_pools": ["198.19.0.0/25"]}})["addresses"]
    assert "stock" in site_problems({"docker": {"host_image": "fast"}})["docker.host_image"]
    assert "is IPv6" in site_problems({"addresses": {"engine_pools": ["fd00::/64"]}})["addresses.engine_pools"]


# --- the peers' pre-flight ----------------------------------------------------------------------

def course_with(workshop_data, **changes):
    return parse_course({**workshop_data, **changes})


def test_the_peers_of_a_course_are_its_lms_ldap_acme_and_registry(workshop_data):
    course = course_with(workshop_data, authenticator=MOODLE, image="registry.campus.edu:5000/course/nb:1",
                         tls={"acme_server": "https://acme.campus.edu/directory", "email": "ops@campus.edu"})
    assert peers.course_peers(course) == [
        ("authenticator.issuer", "moodle.campus.edu"), ("authenticator.authorize_url", "moodle.campus.edu"),
        ("authenticator.jwks_url", "keys.campus.edu"), ("tls.acme_server", "acme.campus.edu"),
        ("image", "registry.campus.edu")]
    ldap = course_with(workshop_data, authenticator={"kind": "ldap", "server_uri": "ldaps://ldap.campus.edu",
                                                     "bind_dn_template": ["uid={username},dc=campus"]})
    assert peers.course_peers(ldap)[0] == ("authenticator.server_uri", "ldap.campus.edu")


def test_a_peer_inside_the_hosts_ranges_is_refused_with_its_field_and_the_fix(workshop_data):
    course = course_with(workshop_data, authenticator=MOODLE)
    answers = {"moodle.campus.edu": ["192.0.2.10"], "keys.campus.edu": ["198.18.200.7"]}
    problems = peers.colliding(course, Addresses(), resolve=lambda host: answers.get(host, []))
    assert [p.path for p in problems] == ["authenticator.jwks_url"]
    assert "keys.campus.edu is at 198.18.200.7, which is inside 198.18.128.0/17" in problems[0].message
    assert "addresses.engine_pools" in problems[0].message and "site file" in problems[0].message
    moved = Addresses(engine_pools=["10.250.0.0/17"])
    assert peers.colliding(course, moved, resolve=lambda host: answers.get(host, [])) == []


def test_docker_172_17_is_no_longer_in_the_hosts_way(workshop_data):
    course = course_with(workshop_data, authenticator=MOODLE)
    assert peers.colliding(course, Addresses(), resolve=lambda host: ["172.17.0.1"]) == []


def test_reserved_names_and_addresses_resolve_without_a_lookup():
    assert peers.system_resolver("192.0.2.4") == ["192.0.2.4"]
    assert peers.system_resolver("lms.example.edu") == [] and peers.system_resolver("x.invalid") == []


def test_plan_refuses_a_course_whose_peer_is_in_the_sites_ranges(workshop_data, tmp_path, monkeypatch):
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"addresses": {"engine_pools": ["192.0.2.0/24"]}}))
    monkeypatch.setenv("HUBFLEET_SITE_CONFIG", str(site))
    authenticator = {**MOODLE, "jwks_url": "https://192.0.2.9/certs"}
    with pytest.raises(InvalidInput) as err:
        plan_for(StateStore(tmp_path / "state"), course_with(workshop_data, authenticator=authenticator), strict=False)
    assert [p.path for p in err.value.problems] == ["authenticator.jwks_url"]


# --- the course image ---------------------------------------------------------------------------

@pytest.mark.parametrize(("image", "pulled"), [
    ("hubfleet/notebook:latest", False), ("jupyter/scipy-notebook", False), ("notebook", False),
    ("registry.campus.edu/course/nb:1", True), ("registry:5000/nb", True), ("localhost/nb:2", True),
])
def test_an_image_is_pulled_only_when_its_name_has_a_registry(image, pulled, tmp_path):
    assert course_image.names_registry(image) is pulled


def test_a_registry_image_is_pulled_by_each_host(tmp_path):
    assert course_image.role_variables("registry.campus.edu/nb:1", placed=False, cache=tmp_path,
                                       progress=print) == {"image_name": "registry.campus.edu/nb:1",
                                                           "image_pull": True}


def test_an_image_neither_local_nor_pullable_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(course_image, "local_image_id", lambda image: None)
    with pytest.raises(ProvisionError, match="no registry") as err:
        course_image.role_variables("course/nb:1", placed=False, cache=tmp_path, progress=print)
    assert "docker load" in err.value.hint


# --- the inventory and the nodes ----------------------------------------------------------------

def test_a_hosts_data_volume_and_login_user_reach_the_inventory(tmp_path):
    hosts = [Host("c-hub", "hub", "203.0.113.5", 22, ssh_user="debian", private_address="10.42.0.5",
                  data_volume_id="0c1e5d6a-8f3b-4c2e-9d7a-1b2c3d4e5f60"),
             Host("c-worker-1", "worker", "10.42.0.6", 22, ssh_user="debian")]
    path = ansible.write_inventory(tmp_path, hosts, {"ansible_python_interpreter": "/usr/bin/python3"},
                                   tmp_path / "key")
    data = yaml.safe_load(path.read_text())["all"]
    hub = data["children"]["hub"]["hosts"]["c-hub"]
    assert hub["ansible_user"] == "debian" and hub["engine_data_volume_id"].startswith("0c1e5d6a")
    assert "engine_data_volume_id" not in data["children"]["workers"]["hosts"]["c-worker-1"]
    ansible.write_course_variables(path, {"hub_course": "c"})
    assert yaml.safe_load((tmp_path / "inventory" / "group_vars" / "all.yml").read_text()) == {"hub_course": "c"}
    assert Host.from_dict({**hosts[1].to_dict(), "retired_field": 1}) == hosts[1]


def test_nodes_come_from_the_managers_report_and_each_hosts_memory():
    facts = {
        "c-hub": {"swarm_nodes": [
            {"ID": "w1", "Description": {"Hostname": "c-worker-1"}, "Status": {"State": "down"},
             "Spec": {"Availability": "pause"}},
            {"ID": "h", "Description": {"Hostname": "c-hub"}, "Status": {"State": "ready"},
             "Spec": {"Availability": "active"}}],
            "swarm_task_nodes": ["h", "h", "w1"],
            "memory_kib": {"MemTotal": "2048", "MemAvailable": "512"}},
    }
    nodes = nodes_from(facts)
    assert [(n.host, n.state, n.availability, n.servers) for n in nodes] == [
        ("c-hub", "ready", "active", 2), ("c-worker-1", "down", "pause", 1)]
    assert (nodes[0].memory_used, nodes[0].memory_total) == (1536 * 1024, 2048 * 1024)
    assert nodes[1].memory_total is None, "an unreachable host reports no memory"
    assert nodes_from({}) == []
