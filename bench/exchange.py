"""The course exchange's cost, without Docker: a release, then N students fetch and submit at once.

The exchange service (roles/grading/files/hubfleet_exchange.py) runs in this process on 127.0.0.1
with the hub's answer about each caller stood in for (the hub's own token check is one cached API
call per token); N client threads play the students' servers. Prints the figures; asserts nothing.

    .venv/bin/python -m bench.exchange --students 100 --notebook-kib 512 --parallel 10
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "roles" / "grading" / "files"))
import hubfleet_exchange as exchange  # noqa: E402


def notebook_archive(kib: int) -> bytes:
    import base64
    import os

    # Outputs (plots, tables) compress little: random text stands for them.
    body = b'{"cells": [], "outputs": "' + base64.b64encode(os.urandom(kib * 768)) + b'"}'
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("ps1.ipynb")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def serve(root: Path) -> str:
    from jupyterhub.services.auth import HubAuthenticated
    from tornado.httpserver import HTTPServer
    from tornado.ioloop import IOLoop

    def current_user(handler):
        kind, _, name = handler.request.headers.get("X-Caller", "").partition(":")
        return {"kind": kind, "name": name} if name else None

    HubAuthenticated.get_current_user = current_user
    store = exchange.Store(root, "bench-101")
    ready, holder = threading.Event(), {}

    def run():
        asyncio.set_event_loop(asyncio.new_event_loop())
        server = HTTPServer(exchange.make_app(store, "/services/exchange/"), max_body_size=exchange.MAX_ARCHIVE_BYTES)
        server.listen(0, "127.0.0.1")
        holder["port"] = next(iter(server._sockets.values())).getsockname()[1]
        ready.set()
        IOLoop.current().start()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(10)
    return f"http://127.0.0.1:{holder['port']}/services/exchange/api/bench-101"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--notebook-kib", type=int, default=512)
    parser.add_argument("--parallel", type=int, default=10)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hubfleet-exchange-bench-"))
    url = serve(root)
    upload = notebook_archive(args.notebook_kib)
    grader = {"X-Caller": "service:grader"}
    started = time.monotonic()
    requests.put(f"{url}/assignments/ps1", data=upload, headers=grader, timeout=60).raise_for_status()
    release = time.monotonic() - started

    def student(n: int) -> tuple[float, float]:
        me = {"X-Caller": f"user:student-{n:04d}"}
        t0 = time.monotonic()
        requests.get(f"{url}/assignments/ps1", headers=me, timeout=120).raise_for_status()
        t1 = time.monotonic()
        requests.post(f"{url}/submissions/ps1", data=upload, headers=me, timeout=120).raise_for_status()
        return t1 - t0, time.monotonic() - t1

    started = time.monotonic()
    with ThreadPoolExecutor(args.parallel) as pool:
        timings = list(pool.map(student, range(args.students)))
    wall = time.monotonic() - started
    t0 = time.monotonic()
    listed = requests.get(f"{url}/submissions/ps1", headers=grader, timeout=120).json()
    listing = time.monotonic() - t0
    fetch, submit = [t[0] for t in timings], [t[1] for t in timings]
    print(f"exchange: {args.students} students, {len(upload) // 1024} KiB archive each, {args.parallel} at once")
    print(f"  release: {release * 1000:.0f} ms")
    print(f"  fetch  p50 {statistics.median(fetch) * 1000:.0f} ms  p95 {percentile(fetch, 0.95) * 1000:.0f} ms")
    print(f"  submit p50 {statistics.median(submit) * 1000:.0f} ms  p95 {percentile(submit, 0.95) * 1000:.0f} ms")
    print(f"  all fetched and submitted in {wall:.1f} s ({args.students / wall:.1f} students/s)")
    print(f"  grader lists {len(listed)} submissions in {listing * 1000:.0f} ms")


if __name__ == "__main__":
    main()
