"""testinfra: JupyterHub runs under systemd with the course's settings and no secret in its config."""

import json
import re


def test_hub_service_runs_and_is_enabled(host):
    hub = host.service("jupyterhub")
    assert hub.is_running and hub.is_enabled


def test_config_is_private_and_holds_no_secret(host):
    config = host.file("/etc/jupyterhub/jupyterhub_config.py")
    assert config.mode == 0o600 and config.user == "root"
    text = config.content_string
    assert 'c.DockerSpawner.allowed_images = ["hubfleet/base:latest"]' in text
    assert 'c.DockerSpawner.mem_limit = "256M"' in text
    assert "jupyterhub_idle_culler" in text
    assert "molecule-shared-pw" not in text and "molecule-service-token" not in text
    secrets = host.file("/etc/jupyterhub/secrets.json")
    assert secrets.mode == 0o600 and json.loads(secrets.content_string) == {
        "service_token": "molecule-service-token-0123456789abcdef"}


def test_hub_api_answers_and_knows_the_service(host):
    out = host.check_output("curl -sf http://127.0.0.1:8000/hub/api/")
    assert json.loads(out)["version"].startswith("6.")
    whoami = host.check_output(
        "curl -sf -H 'Authorization: token molecule-service-token-0123456789abcdef' http://127.0.0.1:8000/hub/api/user")
    assert json.loads(whoami)["kind"] == "service" and json.loads(whoami)["name"] == "hubfleet"
    assert host.run("pgrep -f jupyterhub_idle_culler").rc == 0, "the idle culler runs as a hub service"


def test_swarm_and_hub_api_on_the_course_address(host):
    assert host.check_output("docker info --format '{{.Swarm.LocalNodeState}}'") == "active"
    config = host.file("/etc/jupyterhub/jupyterhub_config.py").content_string
    assert 'c.DockerSpawner.network_name = ""' in config, "servers on docker0, on no shared network"
    address = re.search(r'hub_bind_url = "http://([0-9.]+):8081"', config).group(1)
    assert address == host.ansible("setup")["ansible_facts"]["ansible_default_ipv4"]["address"]
    assert host.socket(f"tcp://{address}:8081").is_listening
    assert not host.socket("tcp://0.0.0.0:8081").is_listening
    assert 'c.JupyterHub.spawner_class = "hubfleet_spawner.PinnedSwarmSpawner"' in config
