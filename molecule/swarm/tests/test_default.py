"""testinfra: every host runs its engine in the site's ranges; the hub manages a Swarm the worker joined."""

import json


def test_engine_runs_with_the_sites_bridge_and_pools(host):
    assert host.service("docker").is_running and host.service("docker").is_enabled
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon["bip"] == "198.18.0.1/24"
    assert daemon["default-address-pools"] == [{"base": "198.18.128.0/17", "size": 24}]
    assert "inet 198.18.0.1/24" in host.check_output("ip -4 addr show docker0")
    gwbridge = host.check_output("docker network inspect docker_gwbridge --format '{{json .IPAM.Config}}'")
    assert json.loads(gwbridge)[0]["Subnet"].startswith("198.18."), gwbridge
    assert host.package("python3-docker").is_installed


def test_the_hub_manages_both_nodes_labelled_for_placement(host):
    if not host.backend.get_hostname().endswith("-hub"):
        return
    nodes = [json.loads(line) for line in
             host.check_output("docker node ls --format '{{json .}}'").splitlines()]
    assert sorted(n["Hostname"] for n in nodes) == ["molecule-swarm-hub", "molecule-swarm-worker-1"]
    assert all(n["Status"] == "Ready" for n in nodes)
    for name in ("molecule-swarm-hub", "molecule-swarm-worker-1"):
        labels = json.loads(host.check_output(f"docker node inspect {name} --format '{{{{json .Spec.Labels}}}}'"))
        assert labels["hubfleet.host"] == name and labels["hubfleet.address"].count(".") == 3


def test_overlay_networks_come_from_the_swarms_pool(host):
    if not host.backend.get_hostname().endswith("-hub"):
        return
    config = json.loads(host.check_output("docker network inspect ingress --format '{{json .IPAM.Config}}'"))
    assert config[0]["Subnet"].startswith("198.19."), config
    overlays = host.check_output("docker network ls --filter driver=overlay --format '{{.Name}}'").split()
    assert overlays == ["ingress"], "students' servers share no overlay network (each is alone on docker0)"


def test_the_worker_is_a_swarm_worker(host):
    if host.backend.get_hostname().endswith("-hub"):
        return
    state = host.check_output("docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}'")
    assert state == "active false"
