"""Each role's molecule scenario: converge on hubfleet Docker hosts, converge again with no change, verify.

The hosts boot the baked host image (the roles' install steps done ahead by `hubfleet bake`, which
runs them on a stock host; the OpenStack end-to-end test runs them from nothing on the dev cloud's
stock Debian servers). HUBFLEET_MOLECULE_HOSTS=stock runs every scenario on stock hosts instead
(the engine installed from nothing, a converge of about ten minutes per scenario here).
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from hubfleet.baking import bake_image

ROOT = Path(__file__).resolve().parents[2]
EVERY_SCENARIO = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
# The suite runs the scenarios of the roles that no live course converges a second time. The others'
# second converge is asserted with no change on a live course (test_workshop_e2e: hub, proxy, tls,
# shared_password; test_lti13: lti, trust), and what they do is tested there against real peers.
# HUBFLEET_MOLECULE_SCENARIOS=all (or a comma-separated list) runs those too.
IN_SUITE = ("ldap", "swarm")
_CHOSEN = os.environ.get("HUBFLEET_MOLECULE_SCENARIOS", "")
SCENARIOS = (EVERY_SCENARIO if _CHOSEN == "all"
             else [s for s in EVERY_SCENARIO if s in (_CHOSEN.split(",") if _CHOSEN else IN_SUITE)])
ALL_ON = os.environ.get("HUBFLEET_MOLECULE_HOSTS")
RUNS = [(s, ALL_ON or "baked") for s in SCENARIOS]

pytestmark = [pytest.mark.docker, pytest.mark.slow]


PARALLEL = 2  # scenarios at once: their hosts are separate containers; a converge waits on its hosts much of the time


def _molecule(scenario: str, hosts: str, folder: Path) -> subprocess.CompletedProcess[str]:
    site = folder / "site.yaml"
    site.write_text(yaml.safe_dump({"docker": {"host_image": hosts}}))
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1",
           "NO_COLOR": "1", "HUBFLEET_SITE_CONFIG": str(site)}
    return subprocess.run(["molecule", "test", "-s", scenario], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every scenario started at once, PARALLEL at a time; each test waits for its own."""
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        if os.environ.get("HUBFLEET_REQUIRE_DOCKER") == "1":
            pytest.fail("HUBFLEET_REQUIRE_DOCKER=1 but no Docker engine answers")
        pytest.skip("no Docker engine")
    if any(hosts == "baked" for _, hosts in RUNS):  # seconds when the baked image is current
        bake_image("docker", tmp_path_factory.mktemp("bake"), print)
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        yield {(scenario, hosts): pool.submit(_molecule, scenario, hosts, tmp_path_factory.mktemp(scenario))
               for scenario, hosts in RUNS}


@pytest.mark.parametrize(("scenario", "hosts"), RUNS, ids=[f"{s}-{h}" for s, h in RUNS])
def test_role_converges_idempotently_and_verifies(scenario, hosts, runs):
    proc = runs[(scenario, hosts)].result(timeout=3600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "idempotence" in output.lower()
    assert "not idempotent" not in output.lower(), output[-6000:]
