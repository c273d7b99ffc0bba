"""Benchmark the OpenStack provider on the dev cloud (scripts/openstack-dev.sh): cold create from the
stock Debian image and from the baked one, a no-op re-run (changed=0), and the time to add a worker.

Prints figures; asserts nothing. The dev cloud's APIs are on 127.0.0.1 and its servers are
containers on this machine (this machine is its external network's gateway); the courses it makes
have HTTPS from the embedded ACME server as the workshop example does. "Cold" means new servers,
network and volumes and a new state directory; the stock and notebook images are built beforehand
and not timed; the bake is timed when it runs (--rebake forces one).

    .venv/bin/python bench/openstack_course.py                # start the dev cloud if needed, bake, both creates
    .venv/bin/python bench/openstack_course.py --only stock   # stock create, re-run, add a worker
    .venv/bin/python bench/openstack_course.py --rebake       # delete the current baked image first
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import course_env, destroy, hubfleet, report  # noqa: E402
from hubfleet.providers.docker.images import ensure_notebook_image, ensure_stock_image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEV_CLOUD = Path("/tmp/hubfleet-openstack")


def start_dev_cloud() -> float:
    started = time.monotonic()
    subprocess.run([str(ROOT / "scripts" / "openstack-dev.sh"), "start"], check=True)
    return time.monotonic() - started


def openstack_env(name: str, host_image: str) -> tuple[dict, Path]:
    env, descriptor, _ = course_env(name)
    data = yaml.safe_load(descriptor.read_text())
    data["provider"] = "openstack"
    data["tls"] = {"acme_server": "local", "email": "teacher@example.edu"}  # as examples/workshop.yaml
    descriptor.write_text(yaml.safe_dump(data))
    site = yaml.safe_load((DEV_CLOUD / "site.yaml").read_text())
    site["host_image"] = host_image
    site_path = Path(env["HUBFLEET_STATE_DIR"]) / "site.yaml"
    site_path.write_text(yaml.safe_dump(site))
    env.update(HUBFLEET_SITE_CONFIG=str(site_path), OS_CLIENT_CONFIG_FILE=str(DEV_CLOUD / "clouds.yaml"))
    env.pop("OS_CLOUD", None)
    return env, descriptor


def timed(env: dict, *args: str) -> tuple[float, int]:
    started = time.monotonic()
    proc = hubfleet(env, *args)
    found = re.search(r"configured: (\d+) change", proc.stdout + proc.stderr)
    return time.monotonic() - started, int(found.group(1)) if found else -1


def run(kind: str, keep: bool, scale: bool) -> dict:
    name = f"bench-os-{kind}"
    env, descriptor = openstack_env(name, kind)
    figures = {}
    try:
        cold, changes = timed(env, "create", str(descriptor))
        rerun, rerun_changes = timed(env, "create", str(descriptor))
        figures.update({f"{kind}: cold create (s)": round(cold, 1), f"{kind}: changes": changes,
                        f"{kind}: no-op re-run (s)": round(rerun, 1), f"{kind}: re-run changes": rerun_changes})
        if scale:
            added, _ = timed(env, "scale", name, "--hosts", "2")
            figures[f"{kind}: add a worker (s)"] = round(added, 1)
    finally:
        if not keep:
            destroy(env, name)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["stock", "baked"], help="one of the two creates")
    parser.add_argument("--rebake", action="store_true", help="delete the current baked image and time a bake")
    parser.add_argument("--keep", action="store_true", help="leave the courses running")
    args = parser.parse_args()
    ensure_stock_image(print)
    ensure_notebook_image(print)
    figures: dict = {"dev cloud start (s)": round(start_dev_cloud(), 1)}
    if args.only in (None, "baked"):
        env, _ = openstack_env("bench-os-bake", "auto")
        if args.rebake:
            import openstack

            conn = openstack.connect(cloud="hubfleet-dev")
            for image in conn.image.images():
                if image.name.startswith("hubfleet-host-"):
                    conn.image.delete_image(image)
        started = time.monotonic()
        hubfleet(env, "bake", "openstack")
        figures["bake (s)"] = round(time.monotonic() - started, 1)
    for kind in ("stock", "baked"):
        if args.only in (None, kind):
            figures.update(run(kind, args.keep, scale=True))
    report(figures)


if __name__ == "__main__":
    main()
