"""roles/engine's data volume on a real block device: a loop device attached to a Docker host as
/dev/vdb, found by its volume id under /dev/disk/by-id (the link udev makes on a VM, made here by
hand: udev does not run in a container), formatted once, mounted where Docker keeps volumes before
Docker starts, and left alone on the second run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hubfleet import ansible
from hubfleet.baking import bake_image
from hubfleet.environ import environ
from hubfleet.providers.base import HostSpec
from hubfleet.providers.docker import provider as docker_provider
from tests.integration.conftest import docker, unique_course_name

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

VOLUME_ID = "0c1e5d6a-8f3b-4c2e-9d7a-1b2c3d4e5f60"  # a cloud's volume id; virtio keeps its first 20 characters
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def loop_device(tmp_path_factory):
    image = tmp_path_factory.mktemp("disk") / "data.img"
    subprocess.run(["truncate", "-s", "512M", str(image)], check=True)
    device = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True, check=True)
    yield device.stdout.strip()
    subprocess.run(["losetup", "-d", device.stdout.strip()], capture_output=True)


@pytest.fixture(scope="module")
def host(tmp_path_factory, loop_device):
    state = tmp_path_factory.mktemp("state")
    (state / "site.yaml").write_text("docker: {host_image: baked}\n")
    bake_image("docker", state, print)
    workdir = state / "instances" / "course"
    provider = docker_provider.DockerProvider(unique_course_name("itdata"), workdir, print)
    key, public_key = ansible.ensure_ssh_key(workdir / "secrets")
    flags = [*docker_provider.HOST_RUN_FLAGS, "--device", f"{loop_device}:/dev/vdb"]
    with environ(HUBFLEET_SITE_CONFIG=str(state / "site.yaml")), \
            pytest.MonkeyPatch.context() as patch:
        patch.setattr(docker_provider, "HOST_RUN_FLAGS", flags)
        (made,) = provider.ensure_hosts([HostSpec("hub", "d", 1, 2 * 1024**3, 0)], public_key)
    # What udev does on a VM when the volume is attached.
    docker("exec", made.name, "sh", "-c", f"mkdir -p /dev/disk/by-id && ln -sf /dev/vdb "
           f"/dev/disk/by-id/virtio-{VOLUME_ID[:20]}")
    inventory = ansible.write_inventory(workdir, [made], provider.inventory_vars(), key)
    yield made, inventory
    provider.destroy_hosts()


def converge(inventory: Path, tmp_path: Path) -> str:
    playbook = tmp_path / "engine.yml"
    playbook.write_text(json.dumps([{"hosts": "all", "become": True, "gather_facts": False,
                                     "roles": [{"role": "engine", "engine_data_volume_id": VOLUME_ID}]}]))
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_HOST_KEY_CHECKING": "False",
           "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
                           str(playbook)], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout


def test_the_volume_is_formatted_once_and_mounted_before_docker_starts(host, tmp_path):
    made, inventory = host
    first = converge(inventory, tmp_path)
    assert "Make a file system on the data volume" in first
    mount = docker("exec", made.name, "findmnt", "-n", "-o", "SOURCE,FSTYPE", "/var/lib/docker/volumes").stdout.split()
    assert mount == ["/dev/vdb", "ext4"]
    assert docker("exec", made.name, "systemctl", "is-active", "docker").stdout.strip() == "active"
    created = docker("exec", made.name, "docker", "volume", "create", "hubfleet-user-ada")
    assert created.returncode == 0, created.stderr
    docker("exec", made.name, "sh", "-c", "echo notebook > /var/lib/docker/volumes/hubfleet-user-ada/_data/work.txt")
    drop_in = docker("exec", made.name, "cat", "/etc/systemd/system/docker.service.d/hubfleet-data.conf").stdout
    assert "RequiresMountsFor=/var/lib/docker/volumes" in drop_in


def test_the_second_run_changes_nothing_and_keeps_the_students_files(host, tmp_path):
    made, inventory = host
    second = converge(inventory, tmp_path)
    assert "changed=0" in second, second[-2000:]
    kept = docker("exec", made.name, "cat", "/var/lib/docker/volumes/hubfleet-user-ada/_data/work.txt")
    assert kept.stdout.strip() == "notebook", "the data volume is never formatted again"
