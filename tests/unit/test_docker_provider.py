"""The Docker provider's pure logic: host names, resource clamping, plan and key checks (no Docker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubfleet.errors import ProvisionError
from hubfleet.providers import get_provider
from hubfleet.providers.base import HostSpec
from hubfleet.providers.docker.provider import (
    MIN_MEMORY_BYTES,
    DockerProvider,
    MachineResources,
    check_public_key,
    plan_problems,
)

GiB = 1024**3


def spec(role: str, vcpus: float = 1, ram: int = 2 * GiB) -> HostSpec:
    return HostSpec(role=role, flavor="small", vcpus=vcpus, ram_bytes=ram, disk_bytes=20 * GiB)


def test_registry_gives_the_docker_provider(tmp_path: Path) -> None:
    assert isinstance(get_provider("docker", "workshop", tmp_path), DockerProvider)


def test_hosts_are_named_hub_then_numbered_workers(tmp_path: Path) -> None:
    planned = DockerProvider("workshop", tmp_path).plan([spec("hub"), spec("worker"), spec("worker")])
    assert [(h.name, h.short, h.role) for h in planned] == [
        ("workshop-hub", "hub", "hub"),
        ("workshop-worker-1", "worker-1", "worker"),
        ("workshop-worker-2", "worker-2", "worker"),
    ]


@pytest.mark.parametrize(
    "roles, problem",
    [([], "no hosts"), (["worker"], "first host must be the hub"), (["hub", "hub"], "only the first")],
)
def test_impossible_plans_are_refused(roles: list[str], problem: str, tmp_path: Path) -> None:
    specs = [spec(role) for role in roles]
    assert any(problem in text for text in plan_problems(specs))
    with pytest.raises(ProvisionError, match=problem):
        DockerProvider("workshop", tmp_path).plan(specs)


def test_resources_are_clamped_to_the_machine() -> None:
    machine = MachineResources(memory_bytes=8 * GiB, cpus=2)
    assert machine.clamp(spec("hub", vcpus=4, ram=16 * GiB)) == (8 * GiB, 2.0)
    assert machine.clamp(spec("hub", vcpus=0.5, ram=1 * GiB)) == (1 * GiB, 0.5)
    assert machine.clamp(spec("hub", vcpus=1, ram=1024)) == (MIN_MEMORY_BYTES, 1.0)


def test_only_public_key_lines_are_accepted() -> None:
    check_public_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9 someone@example\n")
    for bad in ["", "AAAA", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"]:
        with pytest.raises(ProvisionError, match="not an OpenSSH public key"):
            check_public_key(bad)


def test_inventory_vars_skip_host_key_checks(tmp_path: Path) -> None:
    variables = DockerProvider("workshop", tmp_path).inventory_vars()
    assert "StrictHostKeyChecking=no" in variables["ansible_ssh_common_args"]
    assert variables["ansible_python_interpreter"] == "/usr/bin/python3"
