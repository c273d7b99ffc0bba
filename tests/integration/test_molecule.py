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
from pathlib import Path

import pytest
import yaml

from hubfleet.baking import bake_image

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
ALL_ON = os.environ.get("HUBFLEET_MOLECULE_HOSTS")
RUNS = [(s, ALL_ON or "baked") for s in SCENARIOS]

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.mark.parametrize(("scenario", "hosts"), RUNS, ids=[f"{s}-{h}" for s, h in RUNS])
def test_role_converges_idempotently_and_verifies(scenario, hosts, tmp_path):
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        if os.environ.get("HUBFLEET_REQUIRE_DOCKER") == "1":
            pytest.fail("HUBFLEET_REQUIRE_DOCKER=1 but no Docker engine answers")
        pytest.skip("no Docker engine")
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"docker": {"host_image": hosts}}))
    if hosts == "baked":  # seconds when the baked image is current
        bake_image("docker", tmp_path, print)
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1",
           "NO_COLOR": "1", "HUBFLEET_SITE_CONFIG": str(site)}
    proc = subprocess.run(["molecule", "test", "-s", scenario], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "idempotence" in output.lower()
    assert "not idempotent" not in output.lower(), output[-6000:]
