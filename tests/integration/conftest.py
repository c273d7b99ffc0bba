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


# --- running modules side by side (scripts/test.sh: pytest-xdist, --dist loadscope) -----------------
#
# Most of a real-peer test's time is spent waiting (hosts booting, Ansible on them, Swarm heartbeats),
# so two modules run at once. A module is one work unit (its module-scoped course is made once);
# modules that share a session-scoped peer are one unit, so the peer is made once; the longest units
# start first so that no long one is left alone at the end.
SHARED = {
    "test_browser_lti": "lti11-course", "test_lti11": "lti11-course",  # tests/support/lti_course.py
    "test_openstack_e2e": "dev-cloud", "test_openstack_bake": "dev-cloud",  # openstack_env.dev_cloud
    "test_openstack_provider": "dev-cloud",
    "test_tls": "workshop-course", "test_workshop_e2e": "workshop-course",  # tests/support/workshop_course.py
}
# Minutes a unit took in a clean-clone run (docs/benchmarks.md); only the order matters.
EXPECTED_MINUTES = {
    "dev-cloud": 20, "test_swarm": 11, "test_rush": 10, "workshop-course": 28, "test_molecule": 4,
    "test_teaching": 5, "test_portal_browser": 4, "test_lti13": 4, "lti11-course": 5,
    "test_ldap": 3, "test_pressure": 6,
}


def unit_of(nodeid: str) -> str:
    """The work unit of a test: its module's name, or the name of the peer its module shares."""
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
    return SHARED.get(module, module)


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModulesLongestFirst(LoadScopeScheduling):
        """xdist's scope scheduling with our units (xdist_group marks do not reach this pytest's node ids),
        handing out the longest unit left first instead of the one with the most tests."""

        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

        def _assign_work_unit(self, node) -> None:
            longest = max(self.workqueue, key=lambda scope: EXPECTED_MINUTES.get(scope, 0))
            self.workqueue.move_to_end(longest, last=False)
            super()._assign_work_unit(node)

    return ModulesLongestFirst(config, log)
