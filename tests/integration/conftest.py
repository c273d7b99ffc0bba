"""Shared helpers for tests that need a Docker engine (the Docker provider's hosts are containers).

Every test marked `docker` is skipped when `docker info` fails, unless HUBFLEET_REQUIRE_DOCKER=1:
then it fails, so CI cannot pass by silently running nothing.
"""

from __future__ import annotations

import functools
import os
import secrets
import subprocess
from pathlib import Path

import pytest


@functools.cache
def docker_problem() -> str | None:
    """Why the Docker engine cannot be used, or None when it answers."""
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker info failed: {exc}"
    return None if result.returncode == 0 else f"docker info failed: {result.stderr.strip()[:200]}"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is None:
        return
    problem = docker_problem()
    if problem is None:
        return
    if os.environ.get("HUBFLEET_REQUIRE_DOCKER") == "1":
        pytest.fail(f"HUBFLEET_REQUIRE_DOCKER=1 but {problem} (run scripts/ensure-docker.sh)")
    pytest.skip(f"no Docker engine: {problem}")


def unique_course_name(prefix: str = "it") -> str:
    """A course name no other test run uses, so runs never share (or destroy) each other's hosts."""
    return f"{prefix}-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def ssh_keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A fresh ed25519 key pair: (private key path, public key text). The private key is never printed."""
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hubfleet-test", "-f", str(key)], check=True)
    return key, key.with_suffix(".pub").read_text().strip()


def ssh_run(port: int, key: Path, command: str, timeout: float = 60,
            user: str = "debian") -> subprocess.CompletedProcess[str]:
    """Run `command` as `user` (the hosts' cloud-init login user) on 127.0.0.1:port with only this key
    (no agent, no password, no known_hosts)."""
    return subprocess.run(
        [
            "ssh", "-i", str(key), "-p", str(port),
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=10",
            f"{user}@127.0.0.1", command,
        ],
        capture_output=True, text=True, timeout=timeout,
    )


def docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
