"""Benchmark the Docker provider's hosts from nothing: bake, cold create from the stock image and
from the baked one, each followed by a no-op re-run (changed=0).

Prints figures; asserts nothing. Talks only to 127.0.0.1 and to the containers it creates.
"Cold" means new hosts (containers, inner engines, volumes) and a new state directory; the images
(stock, baked, notebook) are built beforehand and not timed, except the bake when --rebake says so.

    .venv/bin/python bench/hosts.py               # stock and baked creates, re-runs
    .venv/bin/python bench/hosts.py --rebake      # also time a bake (removes the current baked image first)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import course_env, destroy, hubfleet, report  # noqa: E402
from hubfleet.providers.docker.images import (  # noqa: E402
    ensure_notebook_image,
    ensure_stock_image,
    host_recipe,
)


def timed_create(env: dict, descriptor: Path) -> tuple[float, int]:
    started = time.monotonic()
    proc = hubfleet(env, "create", str(descriptor))
    found = re.search(r"configured: (\d+) change", proc.stdout + proc.stderr)
    return time.monotonic() - started, int(found.group(1)) if found else -1


def run(kind: str, keep: bool) -> dict:
    name = f"bench-{kind}"
    env, descriptor, _ = course_env(name)
    site = Path(env["HUBFLEET_STATE_DIR"]) / "site.yaml"
    site.write_text(f"docker: {{host_image: {kind}}}\n")
    env["HUBFLEET_SITE_CONFIG"] = str(site)
    try:
        cold, changes = timed_create(env, descriptor)
        rerun, rerun_changes = timed_create(env, descriptor)
    finally:
        if not keep:
            destroy(env, name)
    return {f"{kind}: cold create (s)": round(cold, 1), f"{kind}: changes": changes,
            f"{kind}: no-op re-run (s)": round(rerun, 1), f"{kind}: re-run changes": rerun_changes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rebake", action="store_true", help="time a bake (the current baked image is removed)")
    parser.add_argument("--keep", action="store_true", help="leave the courses running")
    parser.add_argument("--only", choices=["stock", "baked"], help="one of the two creates")
    args = parser.parse_args()
    ensure_stock_image(print)
    ensure_notebook_image(print)
    figures: dict = {}
    if args.rebake:
        subprocess.run(["docker", "image", "rm", host_recipe().ref, f"{host_recipe().repo}:latest"],
                       capture_output=True)
    env, _, _ = course_env("bench-bake")
    started = time.monotonic()
    hubfleet(env, "bake", "docker")
    figures["bake (s)" if args.rebake else "bake, already current (s)"] = round(time.monotonic() - started, 1)
    for kind in ("stock", "baked"):
        if args.only in (None, kind):
            figures.update(run(kind, args.keep))
    report(figures)


if __name__ == "__main__":
    main()
