"""The local OpenStack (scripts/openstack-dev.sh) as pytest fixtures, for the `openstack` tests.

Used when its services already run; started here (Debian packages installed if missing) when
HUBFLEET_REQUIRE_OPENSTACK=1, and then stopped at the end of the session; skipped otherwise.
Its APIs listen on 127.0.0.1; its servers are containers this run's dev cloud started, reached on
the external network and namespaces the dev cloud made (this machine is their gateway).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hubfleet.environ import environ

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "openstack-dev.sh"


@dataclass
class DevCloud:
    dir: Path
    clouds_yaml: Path
    site_yaml: Path
    started_here: bool
    start_seconds: float | None


def _status() -> bool:
    return subprocess.run([str(SCRIPT), "status"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def dev_cloud():
    folder = Path(os.environ.get("HUBFLEET_OPENSTACK_DIR", "/tmp/hubfleet-openstack"))
    started, seconds = False, None
    if not _status():
        if os.environ.get("HUBFLEET_REQUIRE_OPENSTACK", "") in ("", "0"):
            pytest.skip("the local OpenStack is not running: scripts/openstack-dev.sh start "
                        "(or HUBFLEET_REQUIRE_OPENSTACK=1 to start it here)")
        t0 = time.monotonic()
        result = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=1200)
        if result.returncode != 0:
            subprocess.run([str(SCRIPT), "stop"], capture_output=True)
            pytest.fail(f"scripts/openstack-dev.sh start failed:\n{result.stderr[-3000:]}")
        started, seconds = True, time.monotonic() - t0
    try:
        with environ(OS_CLIENT_CONFIG_FILE=str(folder / "clouds.yaml"), OS_CLOUD=None):
            yield DevCloud(folder, folder / "clouds.yaml", folder / "site.yaml", started, seconds)
    finally:
        if started:
            subprocess.run([str(SCRIPT), "stop"], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def admin_conn(dev_cloud):
    import openstack

    return openstack.connect(cloud="hubfleet-dev-admin")


@pytest.fixture(scope="session")
def member_conn(dev_cloud):
    import openstack

    return openstack.connect(cloud="hubfleet-dev")


def tagged_everywhere(conn, course: str) -> list[str]:
    """Everything of a course, listed independently of the provider's own lookups."""
    tag = f"hubfleet-course={course}"
    name = f"hubfleet-{course}"
    found = [f"server {s.name}" for s in conn.compute.servers() if (s.metadata or {}).get("hubfleet-course") == course]
    for kind, items in (("floating IP", conn.network.ips()), ("security group", conn.network.security_groups()),
                        ("network", conn.network.networks()), ("subnet", conn.network.subnets()),
                        ("router", conn.network.routers()), ("port", conn.network.ports())):
        found += [f"{kind} {getattr(i, 'name', '') or i.id}" for i in items
                  if tag in (i.tags or []) or i.description == tag or getattr(i, "name", None) == name]
    networks = {n.id for n in conn.network.networks() if tag in (n.tags or []) or n.name == name}
    found += [f"port {p.id} on the course's network" for p in conn.network.ports() if p.network_id in networks]
    found += [f"volume {v.name}" for v in conn.block_storage.volumes()
              if (v.metadata or {}).get("hubfleet-course") == course]
    if conn.compute.find_keypair(name) is not None:
        found.append(f"keypair {name}")
    return found


def devcloud_containers() -> set[str]:
    """The dev cloud's server containers on this machine's engine (its compute driver labels them)."""
    out = subprocess.run(["docker", "ps", "-a", "--filter", "label=hubfleet.devcloud.instance", "--format",
                          "{{.Names}}"], capture_output=True, text=True).stdout
    return set(out.split())
