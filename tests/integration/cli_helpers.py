"""Running the real `hubfleet` CLI from tests, and finding what a course left on the Docker engine."""

from __future__ import annotations

import subprocess
import sys

HUBFLEET = [sys.executable, "-m", "hubfleet"]


def hubfleet(env: dict, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*HUBFLEET, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"hubfleet {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def labelled(course: str) -> list[str]:
    """Containers, volumes and networks on this machine's engine labelled with the course."""
    found = []
    for cmd in (["docker", "ps", "-aq"], ["docker", "volume", "ls", "-q"], ["docker", "network", "ls", "-q"]):
        found += subprocess.run([*cmd, "--filter", f"label=hubfleet.course={course}"], capture_output=True,
                                text=True).stdout.split()
    return found
