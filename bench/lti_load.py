"""Load: N students arrive by LTI 1.1 within a window and each gets a running kernel.

Prints figures; asserts nothing. Makes its own LTI 1.1 course on Docker hosts (or uses one with
--course and HUBFLEET_STATE_DIR), talks only to 127.0.0.1, and is bounded in students (at most
200) and in time (--timeout for the whole run).

    .venv/bin/python bench/lti_load.py --students 25
    .venv/bin/python bench/lti_load.py --students 25 --within 60 --keep

Each simulated student, starting at an even offset inside the window, does what a browser does
after clicking the activity in the LMS: POSTs a launch signed like Moodle's, follows the hub to
its spawn, waits for its own server (retrying when the hub answers 429), opens JupyterLab and
runs 1+1 in a new kernel. Time to kernel runs from the launch POST to that result. Hub API
latency is every GET /hub/api/users/<me> a student made while waiting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import course_env, destroy, hubfleet, on_this_machine, percentile, reach, report  # noqa: E402
from hubfleet.jupyter import HubClient, cookie_for, execute  # noqa: E402
from hubfleet.state import StateStore  # noqa: E402
from tests.support.lti11_consumer import launch_fields, sign  # noqa: E402

COURSE = "bench-lti"
MAX_STUDENTS = 200


@dataclass
class Student:
    name: str
    seconds: float | None = None  # launch POST to a kernel that ran 1+1
    error: str = ""
    api_latencies: list[float] = field(default_factory=list)
    retries_429: int = 0


def make_course(students: int) -> tuple[dict, float]:
    env, descriptor, _ = course_env(COURSE, load={"students": students, "concurrent": 1.0,
                                                  "memory_per_user": "256Mi", "cpu_per_user": 0.1})
    data = yaml.safe_load(descriptor.read_text())
    data["authenticator"] = {"kind": "lti11", "secret": "generate"}
    descriptor.write_text(yaml.safe_dump(data))
    started = time.monotonic()
    hubfleet(env, "create", str(descriptor), "--no-probe")
    return env, time.monotonic() - started


def one_student(student: Student, cfg: dict, base: str, deadline: float) -> None:
    session = requests.Session()
    started = time.monotonic()
    try:
        form = sign(cfg["launch_url"], cfg["consumer_key"], cfg["consumer_secret"], launch_fields(student.name))
        launched = session.post(cfg["launch_url"], data=form, allow_redirects=False, timeout=60)
        if launched.status_code != 302:
            raise RuntimeError(f"launch answered {launched.status_code}")
        session.get(base + launched.headers["Location"], allow_redirects=False, timeout=60)  # starts the spawn
        headers = {"X-XSRFToken": cookie_for(session, "_xsrf", "/hub/api") or ""}
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError("run timed out before the server was ready")
            asked = time.monotonic()
            info = session.get(f"{base}/hub/api/users/{student.name}", headers=headers, timeout=60)
            student.api_latencies.append(time.monotonic() - asked)
            server = info.json().get("servers", {}).get("")
            if server and server.get("ready"):
                break
            if not server:  # not started (the hub was busy): ask again, as a student would reload
                spawn = session.post(f"{base}/hub/api/users/{student.name}/server", headers=headers, timeout=60)
                if spawn.status_code == 429:
                    student.retries_429 += 1
                    time.sleep(float(spawn.headers.get("Retry-After", "2")))
                    continue
            time.sleep(0.5)
        opened = session.get(f"{base}/user/{student.name}/lab", timeout=120)
        if opened.status_code != 200:
            raise RuntimeError(f"JupyterLab answered {opened.status_code}")
        result = execute(f"{base}/user/{student.name}", "1+1", session=session, timeout=120)
        if result.output.strip() != "2":
            raise RuntimeError(f"kernel answered {result.output!r} {result.error}")
        student.seconds = time.monotonic() - started
    except Exception as exc:  # one student's failure is a figure, not the end of the run
        student.error = f"{type(exc).__name__}: {exc}"[:200]


def stop_everyone(client: HubClient, names: list[str]) -> None:
    for name in names:
        client.session.delete(f"{client.base}/hub/api/users/{name}/server", timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=20, help=f"simulated students (at most {MAX_STUDENTS})")
    parser.add_argument("--within", type=float, default=60.0, help="seconds over which they arrive")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds the whole run may take")
    parser.add_argument("--course", help="use this existing LTI 1.1 course (HUBFLEET_STATE_DIR) instead of making one")
    parser.add_argument("--keep", action="store_true", help="keep the course made for the run")
    args = parser.parse_args()
    if not 1 <= args.students <= MAX_STUDENTS:
        parser.error(f"--students must be between 1 and {MAX_STUDENTS}")
    deadline = time.monotonic() + args.timeout

    created_seconds = None
    if args.course:
        env, name = dict(os.environ), args.course
    else:
        env, created_seconds = make_course(args.students)
        name = COURSE
    try:
        cfg = json.loads(hubfleet(env, "lti-config", name, "--json").stdout)
        base = cfg["launch_url"].rsplit("/hub/", 1)[0]
        if not on_this_machine(base):
            raise SystemExit(f"{name} is not on this machine ({base}): the bench talks to 127.0.0.1 only")
        reach(env, base)
        store = StateStore(Path(env["HUBFLEET_STATE_DIR"])) if env.get("HUBFLEET_STATE_DIR") else StateStore()
        client = HubClient(base, store.get_secret(name, "hub-api-token"))
        students = [Student(f"load-{i:03d}") for i in range(args.students)]
        gap = args.within / args.students

        def arrive(index: int) -> None:
            time.sleep(index * gap)
            one_student(students[index], cfg, base, deadline)

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=args.students) as pool:
            list(pool.map(arrive, range(args.students)))
        wall = time.monotonic() - started
        stop_everyone(client, [s.name for s in students])

        done = [s.seconds for s in students if s.seconds is not None]
        latencies = [x for s in students for x in s.api_latencies]
        errors = sorted({s.error for s in students if s.error})
        figures = {
            "students": args.students,
            "arrival_window_s": args.within,
            "spawn_success_rate": f"{len(done)}/{args.students} ({100 * len(done) / args.students:.0f}%)",
            "time_to_kernel_median_s": round(statistics.median(done), 1) if done else None,
            "time_to_kernel_p95_s": round(percentile(done, 95), 1) if done else None,
            "time_to_kernel_max_s": round(max(done), 1) if done else None,
            "hub_api_p50_ms": round(1000 * percentile(latencies, 50)) if latencies else None,
            "hub_api_p95_ms": round(1000 * percentile(latencies, 95)) if latencies else None,
            "hub_api_requests": len(latencies),
            "spawn_retries_429": sum(s.retries_429 for s in students),
            "wall_s": round(wall, 1),
            "course_create_s": round(created_seconds, 1) if created_seconds else None,
        }
        report(figures)
        for error in errors:
            print(f"error: {error}")
    finally:
        if not args.course and not args.keep:
            destroy(env, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
