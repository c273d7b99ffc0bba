"""OpenStack end to end on the dev cloud (scripts/openstack-dev.sh), whose servers really boot.

examples/workshop.yaml with `provider: openstack` (and this run's own name, domain and dates)
goes up from the stock Debian 12 image: pre-flight, servers ACTIVE, SSH with the course key, the
roles from nothing, HTTPS from the embedded ACME server; a student logs in and runs code; scaling
adds a worker server that gets Docker and the image and joins the Swarm, and shrinking removes it
(server, port, volume) once it holds no student's work; destroy archives (the student's file is in
it) and removes everything, then nothing carries the course's tag. create and destroy are each
killed with SIGKILL half-way and run again: they converge. The Terraform engine, whose OpenStack
provider cannot be downloaded here, runs a module of Terraform's built-in resources that adopts the
same servers (tests/fixtures/terraform-adopt): its outputs become the inventory that converges the
course with no change.

One course for the module, tests in file order. The dev cloud's APIs are on 127.0.0.1; its
servers are containers on this machine, reached through the external network and router
namespaces the dev cloud made (this machine is that network's gateway).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from hubfleet import tls
from hubfleet.jupyter import execute, login_with_password, start_own_server
from hubfleet.providers.docker import acme_local
from hubfleet.providers.docker.images import ensure_notebook_image
from hubfleet.providers.openstack import OpenStackProvider
from hubfleet.state import StateStore
from tests.conftest import EXAMPLES, future
from tests.support.awkward import student_archive
from tests.integration.cli_helpers import HUBFLEET, hubfleet
from tests.integration.conftest import unique_course_name

from .openstack_env import admin_conn, dev_cloud, devcloud_containers, member_conn, tagged_everywhere  # noqa: F401

pytestmark = [
    pytest.mark.openstack, pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(3600),
    pytest.mark.filterwarnings("ignore:The ignore_missing parameter:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::Warning:openstack"),  # openstacksdk's own deprecations of its internals
]

COURSE = unique_course_name("osw")
DOMAIN = f"{COURSE}.hub.localhost"


@pytest.fixture(scope="module")
def env(dev_cloud, tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    site = yaml.safe_load(dev_cloud.site_yaml.read_text())
    site["host_image"] = "stock"  # the stock path, whatever has been baked on the dev cloud
    (state / "site.yaml").write_text(yaml.safe_dump(site))
    values = {"HUBFLEET_STATE_DIR": str(state), "HUBFLEET_SITE_CONFIG": str(state / "site.yaml"),
              "OS_CLIENT_CONFIG_FILE": str(dev_cloud.clouds_yaml), "PYTHONUNBUFFERED": "1"}
    with pytest.MonkeyPatch.context() as patch:  # this process asks the same cloud as the CLI
        for name, value in values.items():
            patch.setenv(name, value)
        patch.delenv("OS_CLOUD", raising=False)
        yield {**os.environ}
    if StateStore(state).find(COURSE) and StateStore(state).get(COURSE).status != "archived":
        hubfleet({**os.environ, **values}, "destroy", COURSE, "--yes", "--no-archive", check=False)
    acme_local.stop_local_acme(state)


def run_until(env: dict, args: list[str], marker: str, log: Path, timeout: float = 1200) -> str:
    """Start `hubfleet ARGS`, SIGKILL it as soon as its output shows `marker`; its output so far."""
    with log.open("w") as out:
        proc = subprocess.Popen([*HUBFLEET, *args], env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    try:
        while marker not in log.read_text():
            if proc.poll() is not None:
                pytest.fail(f"hubfleet {args[0]} ended before {marker!r}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {marker!r} within {timeout} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    return log.read_text()


@pytest.fixture(scope="module")
def course(env, tmp_path_factory):
    """The workshop with provider: openstack, created once (its first create killed half-way)."""
    data = yaml.safe_load((EXAMPLES / "workshop.yaml").read_text())
    assert data["provider"] == "docker"
    data.update(provider="openstack", name=COURSE, domain=DOMAIN, dates={"start": future(0), "end": future(7)})
    # By its content tag: `:latest` moves when another worktree rebuilds the notebook image.
    data["image"] = ensure_notebook_image(lambda message: None)
    # Its stock Debian servers boot under emulation, where every package costs minutes: `none` needs no proxy
    # (the egress rules are still applied; the proxy's install is the bake's and the Docker hosts').
    data["egress"] = "none"
    path = tmp_path_factory.mktemp("course") / f"{COURSE}.yaml"
    path.write_text(yaml.safe_dump(data))
    started = time.monotonic()
    killed = run_until(env, ["create", str(path)], "to be ACTIVE", path.with_suffix(".killed.log"))
    proc = hubfleet(env, "create", str(path), timeout=3000)
    creds = json.loads(hubfleet(env, "credentials", COURSE, "--json").stdout)
    store = StateStore(Path(env["HUBFLEET_STATE_DIR"]))
    root = Path(env["HUBFLEET_STATE_DIR"]) / "acme-local" / "root.pem"
    yield {"path": path, "killed": killed, "output": proc.stdout + proc.stderr, "creds": creds, "store": store,
           "url": store.get(COURSE).outputs["url"], "root": root, "seconds": time.monotonic() - started}


def provider() -> OpenStackProvider:
    state = Path(os.environ["HUBFLEET_STATE_DIR"])
    return OpenStackProvider(COURSE, state / "instances" / COURSE)


def on_host(host, command: str) -> str:
    """A command on a course host over SSH as Ansible reaches it (a worker through the hub)."""
    result = subprocess.run(provider().login_command(host, command), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{command} on {host.name}: {result.stderr}"
    return result.stdout


def test_killed_create_then_create_again_gives_a_hub_from_the_stock_image(course, member_conn):
    assert "creating server" in course["killed"]
    assert f"url: https://{DOMAIN}" in course["output"]
    assert "hosts start from the stock image debian-12" in course["output"]
    assert course["creds"]["shared-password"] not in course["output"], "create must not print a secret"
    servers = [s for s in member_conn.compute.servers() if (s.metadata or {}).get("hubfleet-course") == COURSE]
    assert [(s.name, s.status) for s in servers] == [(f"{COURSE}-hub", "ACTIVE")], "the killed create left no twin"
    hub = provider().hosts()[0]
    assert hub.ssh_user == "debian" and hub.address == hub.extra["floating_ip"]
    # The roles installed it all on a bare Debian 12: Docker, nginx, the hub's environment.
    installed = on_host(hub, "dpkg-query -W -f '${Package} ${Status}\\n' docker.io nginx certbot")
    assert installed.count("install ok installed") == 3, installed
    assert "cloud-init" in on_host(hub, "dpkg-query -W cloud-init") and on_host(hub, "cat /etc/hostname").strip() \
        == f"{COURSE}-hub"
    print(f"create (killed once, then again) to a working hub: {course['seconds']:.0f} s")


def test_the_url_create_printed_opens_over_https_from_this_machine(course):
    hub = provider().hosts()[0]
    # A DNS record for the name (create says which address): here the name maps to the floating IP.
    assert f"point {DOMAIN}. at {hub.address}" in course["output"]
    with tls.resolving_to(DOMAIN, hub.address):
        reply = requests.get(course["url"] + "/hub/api/", timeout=30, verify=str(course["root"]))
        assert reply.json()["version"].startswith("6.")
        assert requests.get(f"http://{DOMAIN}/hub/login", timeout=30, allow_redirects=False).status_code in (301, 308)


def test_student_logs_in_and_runs_code(course):
    hub = provider().hosts()[0]
    with tls.resolving_to(DOMAIN, hub.address), tls.trusting(course["root"]), \
            pytest.MonkeyPatch.context() as patch:
        patch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", str(course["root"]))
        student = login_with_password(course["url"], "alice", course["creds"]["shared-password"],
                                      verify=str(course["root"]))
        start_own_server(student, course["url"], "alice", timeout=600)
        code = ("import hashlib, pathlib; p = pathlib.Path('/home/jovyan/homework.txt'); "
                "p.write_text('alice on openstack\\n' * 50); print(hashlib.sha256(p.read_bytes()).hexdigest())")
        result = execute(f"{course['url']}/user/alice", code, session=student, timeout=300)
    assert result.status == "ok", result.error
    assert result.output.strip() == hashlib.sha256(b"alice on openstack\n" * 50).hexdigest()
    course["checksum"] = result.output.strip()


def test_terraform_engine_outputs_make_the_inventory_that_converges_the_same_course(env, course, member_conn,
                                                                                   tmp_path):
    """Terraform (init, plan, apply, output) on built-in resources stands in for terraform/openstack:
    the servers it outputs are the ones the SDK engine made, as the cloud's own API lists them."""
    import shutil

    if shutil.which("terraform") is None:
        pytest.skip("needs the terraform binary")
    module = tmp_path / "terraform-adopt"
    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "terraform-adopt", module)
    servers = {}
    for server in member_conn.compute.servers():
        if (server.metadata or {}).get("hubfleet-course") == COURSE:
            ports = list(member_conn.network.ports(device_id=server.id))
            floating = [ip.floating_ip_address for ip in member_conn.network.ips() if ip.port_id in {p.id for p in ports}]
            volume = [v.id for v in member_conn.block_storage.volumes() if v.name == f"{server.name}-data"]
            servers[server.name] = {"id": server.id, "private_address": ports[0].fixed_ips[0]["ip_address"],
                                    "floating_ip": floating[0] if floating else "", "volume_id": (volume or [""])[0]}
    (module / "servers.json").write_text(json.dumps(servers))
    site = yaml.safe_load(Path(env["HUBFLEET_SITE_CONFIG"]).read_text())
    site.update(engine="terraform", terraform_module=str(module))
    site_path = tmp_path / "site-terraform.yaml"
    site_path.write_text(yaml.safe_dump(site))
    proc = hubfleet({**env, "HUBFLEET_SITE_CONFIG": str(site_path)}, "create", str(course["path"]), "--json",
                    "--no-probe", timeout=1800)
    result = json.loads(proc.stdout)
    assert result["status"] == "ready" and result["changed"] == 0, proc.stderr
    assert "terraform apply" in proc.stderr
    state = Path(env["HUBFLEET_STATE_DIR"]) / "instances" / COURSE / "terraform" / "terraform.tfstate"
    assert state.exists() and f'"{servers[f"{COURSE}-hub"]["id"]}"' in state.read_text()
    inventory = yaml.safe_load((state.parent.parent / "inventory" / "hosts.yml").read_text())
    hub = inventory["all"]["children"]["hub"]["hosts"][f"{COURSE}-hub"]
    assert hub["ansible_host"] == servers[f"{COURSE}-hub"]["floating_ip"] and hub["ansible_user"] == "debian"


def test_scale_up_adds_a_worker_server_that_gets_docker_the_image_and_joins_the_swarm(env, course, member_conn):
    started = time.monotonic()
    hubfleet(env, "scale", COURSE, "--hosts", "2", timeout=3000)
    seconds = time.monotonic() - started
    hub, worker = provider().hosts()
    assert worker.name == f"{COURSE}-worker-1" and worker.address == worker.private_address
    assert "ProxyCommand" in worker.extra["ansible_ssh_common_args"]
    image = yaml.safe_load(course["path"].read_text())["image"]
    assert on_host(worker, f"sudo docker image inspect -f '{{{{.Id}}}}' {image}").startswith("sha256:")
    nodes = on_host(hub, "sudo docker node ls --format '{{.Hostname}} {{.Status}} {{.Availability}}'").split("\n")
    assert sorted(n for n in nodes if n) == sorted([f"{hub.name} Ready Active", f"{worker.name} Ready Active"])
    status = json.loads(hubfleet(env, "status", COURSE, "--json", "--no-probe").stdout)
    assert [n["state"] for n in status["nodes"]] == ["ready", "ready"]
    print(f"scale to 2 hosts (a stock worker server): {seconds:.0f} s")


def test_scale_down_removes_the_empty_worker_its_port_and_volume(env, course, member_conn):
    worker = provider().hosts()[1]
    ports = [p.id for p in member_conn.network.ports(device_id=worker.extra["server_id"])]
    assert ports
    hubfleet(env, "scale", COURSE, "--hosts", "1", timeout=1800)
    assert [h.name for h in provider().hosts()] == [f"{COURSE}-hub"]
    assert member_conn.compute.find_server(worker.extra["server_id"], ignore_missing=True) is None
    assert all(member_conn.network.find_port(p, ignore_missing=True) is None for p in ports)
    assert not [v for v in member_conn.block_storage.volumes() if v.name == f"{worker.name}-data"]
    status = json.loads(hubfleet(env, "status", COURSE, "--json", "--no-probe").stdout)
    assert [n["host"] for n in status["nodes"]] == [f"{COURSE}-hub"]


def test_killed_destroy_then_destroy_again_archives_the_work_and_leaves_nothing(env, course, member_conn,
                                                                                tmp_path):
    hub_container = f"hubfleet-devcloud-{provider().hosts()[0].extra['server_id']}"
    assert hub_container in devcloud_containers()
    killed = run_until(env, ["destroy", COURSE, "--yes"], "deleting server", tmp_path / "destroy.killed.log")
    assert "archive verified" in killed
    proc = hubfleet(env, "destroy", COURSE, "--yes", timeout=1800)
    assert "an earlier destroy stopped while removing" in proc.stderr
    assert "archive already verified and recorded" in proc.stderr, "the archive made before the kill is kept"
    archive = Path(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("archive:")))
    entry, extracted = student_archive(archive, "alice", tmp_path)
    assert entry["volume"] == "hubfleet-user-alice"
    assert hashlib.sha256((extracted / "homework.txt").read_bytes()).hexdigest() == course["checksum"]
    assert tagged_everywhere(member_conn, COURSE) == []
    assert hub_container not in devcloud_containers(), "the hub's container is gone from this machine"
    assert course["store"].get(COURSE).status == "archived"
