"""The Docker provider end to end: a one-host course booted from the baked host image, reached over
SSH as cloud-init's login user, given the notebook image, asked again (idempotent and fast), then
destroyed without leftovers.

The tests of this module share one course and run in file order; the last one destroys it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hubfleet.baking import bake_image
from hubfleet.environ import environ
from hubfleet.providers.base import Host, HostSpec
from hubfleet.providers.docker import HOST_CPU_SHARES, DockerProvider
from hubfleet.providers.docker.images import ensure_notebook_image, host_recipe
from tests.integration.conftest import docker, ssh_run, unique_course_name

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]  # the first image build takes minutes

HUB_SPEC = HostSpec(role="hub", flavor="small", vcpus=1, ram_bytes=2 * 1024**3, disk_bytes=20 * 1024**3)
MiB = 1024**2


class Recorder:
    """Collects the provider's progress messages (and shows them with pytest -s)."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, message: str) -> None:
        print(f"[progress] {message}")
        self.messages.append(message)

    def since(self, mark: int) -> list[str]:
        return self.messages[mark:]


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory, recorder: Recorder):
    course = unique_course_name("itdock")
    state = tmp_path_factory.mktemp("state")
    site = state / "site.yaml"
    site.write_text("docker: {host_image: baked}\n")
    bake_image("docker", state, recorder)  # seconds when current; minutes after the roles changed
    with environ(HUBFLEET_SITE_CONFIG=str(site)):
        provider = DockerProvider(course, tmp_path_factory.mktemp(course), recorder)
        yield provider
        provider.destroy_hosts()  # also when a test failed half-way


@pytest.fixture(scope="module")
def hub(provider: DockerProvider, ssh_keypair: tuple[Path, str]) -> Host:
    started = time.monotonic()
    hosts = provider.ensure_hosts([HUB_SPEC], ssh_keypair[1])
    print(f"[timing] ensure_hosts (first) {time.monotonic() - started:.1f} s")
    assert [host.name for host in hosts] == [f"{provider.course_name}-hub"]
    return hosts[0]


@pytest.fixture(scope="module")
def notebook_image(recorder: Recorder) -> str:
    return ensure_notebook_image(recorder)


@pytest.fixture(scope="module")
def notebook_on_hub(provider: DockerProvider, hub: Host, notebook_image: str, recorder: Recorder) -> str:
    started = time.monotonic()
    assert provider.ensure_image(notebook_image), "a baked host's engine runs: the fast path copies the image"
    print(f"[timing] ensure_image (first) {time.monotonic() - started:.1f} s")
    return notebook_image


def test_hub_is_described_as_the_orchestration_needs_it(provider: DockerProvider, hub: Host) -> None:
    assert hub.role == "hub" and hub.address == "127.0.0.1" and hub.ssh_user == "debian"
    assert hub.ssh_port > 0 and hub.http_port and hub.https_port
    assert hub.private_address.count(".") == 3
    assert provider.hosts() == [hub]
    labels = docker("container", "inspect", "--format", "{{json .Config.Labels}}", hub.name).stdout
    for label in ('"hubfleet.managed":"true"', f'"hubfleet.course":"{provider.course_name}"', '"hubfleet.role":"hub"'):
        assert label in labels


def test_the_host_outweighs_the_students_containers_beside_it(hub: Host, notebook_on_hub: str) -> None:
    # On this machine the inner engine's containers sit beside their host in the cgroup tree.
    shares = docker("container", "inspect", "--format", "{{.HostConfig.CpuShares}}", hub.name).stdout
    assert int(shares) == HOST_CPU_SHARES
    student = docker("exec", hub.name, "docker", "run", "--rm", "--entrypoint", "sh", notebook_on_hub, "-c",
                     "cat /sys/fs/cgroup/cpu/cpu.shares")
    assert int(student.stdout) * 64 == HOST_CPU_SHARES, student.stderr


def test_real_cores_are_the_hosts_cpu_limits_within_this_machine(provider: DockerProvider, hub: Host) -> None:
    assert provider.cpu_cores([hub]) == HUB_SPEC.vcpus  # 1 CPU asked, at most the machine's cores
    assert provider.cpu_cores([]) is None


def test_the_login_user_logs_in_with_the_key_only_and_becomes_root(hub: Host, ssh_keypair: tuple[Path, str]) -> None:
    result = ssh_run(hub.ssh_port, ssh_keypair[0], "sudo -n id -u")
    assert result.returncode == 0 and result.stdout.strip() == "0", result.stderr
    config = ssh_run(hub.ssh_port, ssh_keypair[0], "sudo -n sshd -T").stdout
    assert "passwordauthentication no" in config
    root = ssh_run(hub.ssh_port, ssh_keypair[0], "id -u", user="root")
    assert root.stdout.strip() != "0", "cloud-init keeps root from logging in directly"


def test_host_boots_cleanly_with_its_own_identity(hub: Host, ssh_keypair: tuple[Path, str]) -> None:
    state = ssh_run(hub.ssh_port, ssh_keypair[0],
                    "timeout 60 systemctl is-system-running --wait; systemctl --failed --no-legend; "
                    "cloud-init status; hostname")
    lines = state.stdout.splitlines()
    assert lines[0] == "running" and "status: done" in lines and lines[-1] == hub.name, state.stdout
    # Nothing of the machine it was baked on: host keys, machine id, login keys.
    baked = docker("run", "--rm", "--entrypoint", "sh", host_recipe().ref, "-c",
                   "ls /etc/ssh/ssh_host_* /home/*/.ssh/authorized_keys /root/.ssh/authorized_keys 2>/dev/null; "
                   "cat /etc/machine-id; ls /var/lib/cloud/instances 2>/dev/null")
    assert baked.stdout.strip() == "", "the baked image must not carry the baking host's identity"


def test_hub_environment_is_baked(hub: Host, ssh_keypair: tuple[Path, str]) -> None:
    result = ssh_run(hub.ssh_port, ssh_keypair[0],
                     "/opt/jupyterhub/venv/bin/jupyterhub --version && configurable-http-proxy --version "
                     "&& /usr/sbin/nginx -v 2>&1 && certbot --version && sudo -n docker info --format '{{.ServerVersion}}'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0].startswith("6.") and result.stdout.split()[1].startswith("4.5.")
    # What Ansible's SSH sessions see: pip and requests trust the machine's CA bundle.
    trust = ssh_run(hub.ssh_port, ssh_keypair[0], "echo $REQUESTS_CA_BUNDLE; /opt/jupyterhub/venv/bin/pip config list")
    lines = trust.stdout.splitlines()
    assert lines[0] == "/etc/hubfleet/ca-bundle.crt", trust.stdout + trust.stderr
    assert "global.cert='/etc/hubfleet/ca-bundle.crt'" in lines, trust.stdout


def test_ensure_hosts_again_keeps_the_running_host(
    provider: DockerProvider, hub: Host, ssh_keypair: tuple[Path, str]
) -> None:
    started = time.monotonic()
    again = provider.ensure_hosts([HUB_SPEC], ssh_keypair[1])
    elapsed = time.monotonic() - started
    print(f"[timing] ensure_hosts (again) {elapsed:.1f} s")
    assert again == [hub] and again[0].extra["container_id"] == hub.extra["container_id"]
    assert elapsed < 15


def test_inner_engine_enforces_a_memory_limit(hub: Host, notebook_on_hub: str) -> None:
    limit = docker("exec", hub.name, "docker", "run", "--rm", "--memory", "64m", "--entrypoint", "cat",
                   notebook_on_hub, "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert limit.returncode == 0, limit.stderr
    assert int(limit.stdout) == 64 * MiB
    # Touch 256 MiB under a 64 MiB limit (no swap): the kernel must kill it.
    hog = docker("exec", hub.name, "docker", "run", "--rm", "--memory", "64m", "--memory-swap", "64m",
                 notebook_on_hub, "python3", "-c", "x = b'x' * (256 * 1024 * 1024); print('survived')")
    assert hog.returncode == 137 and "survived" not in hog.stdout


def test_notebook_image_starts_the_single_user_server(hub: Host, notebook_on_hub: str) -> None:
    check = docker("exec", hub.name, "docker", "run", "--rm", notebook_on_hub, "sh", "-c",
                   "id -u; pwd; jupyterhub-singleuser --version; python3 -c 'import numpy, pandas, matplotlib'")
    assert check.returncode == 0, check.stderr
    uid, workdir, version = check.stdout.split()[:3]
    assert (uid, workdir) == ("1000", "/home/jovyan") and version.startswith("6.")


def test_ensure_image_again_is_a_check_not_a_transfer(
    provider: DockerProvider, notebook_on_hub: str, recorder: Recorder
) -> None:
    mark = len(recorder.messages)
    started = time.monotonic()
    provider.ensure_image(notebook_on_hub)
    provider.ensure_image("hubfleet/notebook:latest")  # the descriptor's default names the same image
    elapsed = time.monotonic() - started
    print(f"[timing] ensure_image (again, twice) {elapsed:.2f} s")
    assert not any(message.startswith("copying") for message in recorder.since(mark))
    assert any("already on" in message for message in recorder.since(mark))
    assert elapsed < 5


def test_unknown_image_is_a_clear_error(provider: DockerProvider, hub: Host) -> None:
    from hubfleet.errors import ProvisionError

    with pytest.raises(ProvisionError, match="not on this machine") as info:
        provider.ensure_image("example.org/nobody/nothing:1")
    assert "docker load" in str(info.value)


def test_a_stopped_host_is_started_again(
    provider: DockerProvider, hub: Host, ssh_keypair: tuple[Path, str], notebook_on_hub: str
) -> None:
    assert docker("stop", hub.name, timeout=120).returncode == 0
    assert provider.hosts()[0].extra["state"] == "exited"
    started = time.monotonic()
    (restarted,) = provider.ensure_hosts([HUB_SPEC], ssh_keypair[1])
    print(f"[timing] ensure_hosts (stopped host) {time.monotonic() - started:.1f} s")
    assert restarted.extra["container_id"] == hub.extra["container_id"]
    assert ssh_run(restarted.ssh_port, ssh_keypair[0], "true").returncode == 0
    # The inner engine's images live on the volume: they survive a restart.
    provider.ensure_image(notebook_on_hub)


def test_destroy_leaves_nothing_behind(provider: DockerProvider, hub: Host) -> None:
    assert provider.leftovers()  # the course exists until now
    provider.destroy_hosts()
    assert provider.leftovers() == []
    assert provider.hosts() == []
    provider.destroy_hosts()  # idempotent
