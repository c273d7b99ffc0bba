"""What the benchmarks share: a throwaway state dir, a course made from the workshop example, the CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
_REACHING = ExitStack()  # held for the whole (short) benchmark process


def course_env(name: str, *, load: dict | None = None, flavors: dict | None = None) -> tuple[dict, Path, Path | None]:
    """(environment with its own state dir, descriptor path, flavors path) for a bench course."""
    state = Path(tempfile.mkdtemp(prefix=f"hubfleet-{name}-"))
    data = yaml.safe_load((ROOT / "examples" / "workshop.yaml").read_text())
    today = dt.date.today()
    data.update(name=name, domain=f"{name}.hub.localhost",
                dates={"start": str(today), "end": str(today + dt.timedelta(days=7))})
    data.pop("tls", None)  # the default: HTTPS from the embedded ACME server
    if load:
        data["load"] = {**data["load"], **load}
    descriptor = state / "course.yaml"
    descriptor.write_text(yaml.safe_dump(data))
    flavors_path = None
    if flavors:
        flavors_path = state / "flavors.yaml"
        flavors_path.write_text(yaml.safe_dump(flavors))
    return {**os.environ, "HUBFLEET_STATE_DIR": str(state)}, descriptor, flavors_path


def hubfleet(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hubfleet", *args], env=env, capture_output=True, text=True,
                          check=True)


def on_this_machine(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == "127.0.0.1" or host.endswith(".localhost")


def reach(env: dict, url: str) -> None:
    """From now on this process opens the course as a browser on this machine would: its *.localhost name
    is 127.0.0.1 and the embedded ACME server's root is trusted (requests and kernel websockets)."""
    from hubfleet import tls
    from hubfleet.providers.docker import acme_local

    host = urlsplit(url).hostname or ""
    if host.endswith(".localhost"):
        _REACHING.enter_context(tls.resolving_to_loopback(host))
    from hubfleet.state import default_state_dir

    root = acme_local.acme_dir(Path(env.get("HUBFLEET_STATE_DIR") or default_state_dir())) / "root.pem"
    if root.exists():
        _REACHING.enter_context(tls.trusting(root))
        os.environ["WEBSOCKET_CLIENT_CA_BUNDLE"] = str(root)


def course_facts(env: dict, name: str) -> tuple[str, str, dict]:
    """(url, shared password, status) of a ready course, reachable from this process."""
    status = json.loads(hubfleet(env, "status", name, "--json", "--no-probe").stdout)
    password = json.loads(hubfleet(env, "credentials", name, "--json").stdout)["shared-password"]
    reach(env, status["url"])
    return status["url"], password, status


def destroy(env: dict, name: str) -> None:
    """Remove the course without an archive, then the embedded ACME server of its own state dir."""
    from hubfleet.providers.docker import acme_local

    subprocess.run([sys.executable, "-m", "hubfleet", "destroy", name, "--yes", "--no-archive"], env=env,
                   capture_output=True)
    acme_local.stop_local_acme(Path(env["HUBFLEET_STATE_DIR"]))


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def report(figures: dict) -> None:
    for key, value in figures.items():
        print(f"{key:28} {value}")
    print(json.dumps(figures))
