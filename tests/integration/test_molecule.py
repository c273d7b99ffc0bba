"""Each role's molecule scenario: converge on a hubfleet Docker host, converge again with no change, verify."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_role_converges_idempotently_and_verifies(scenario):
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        if os.environ.get("HUBFLEET_REQUIRE_DOCKER") == "1":
            pytest.fail("HUBFLEET_REQUIRE_DOCKER=1 but no Docker engine answers")
        pytest.skip("no Docker engine")
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1",
           "NO_COLOR": "1"}
    proc = subprocess.run(["molecule", "test", "-s", scenario], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1200)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "idempotence" in output.lower()
    assert "not idempotent" not in output.lower(), output[-6000:]
