"""Benchmark a course's Swarm: students spawned per minute on one host and on two, and the time
to add a host to a live course, in the same run. Prints figures; asserts nothing.

    .venv/bin/python bench/swarm.py --students 6

Each wave logs in `--students` new students at once (threads) and waits until every one has run
code in a kernel. Both hosts are containers on this same machine: a second host adds a Docker
engine and a node, not CPU, so the figures show the Swarm's overhead more than its capacity.
Talks only to 127.0.0.1 and to the containers it creates.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import course_env, course_facts, destroy, hubfleet, report  # noqa: E402
from hubfleet.jupyter import execute, login_with_password, start_own_server, stop_own_server  # noqa: E402

COURSE = "bench-swarm"
FLAVORS = {"currency": "EUR", "docker": [{"name": "d.bench", "vcpus": 4, "ram": "8Gi", "disk": "20Gi"}]}


def wave(url: str, password: str, users: list[str]) -> tuple[float, int]:
    """Spawn these students at once; (seconds until all ran code, how many succeeded)."""
    def one(user: str) -> bool:
        session = login_with_password(url, user, password)
        start_own_server(session, url, user, timeout=300)
        ok = execute(f"{url}/user/{user}", "1+1", session=session).output.strip() == "2"
        stop_own_server(session, url, user)
        return ok

    started = time.monotonic()
    with ThreadPoolExecutor(len(users)) as pool:
        results = list(pool.map(one, users))
    return time.monotonic() - started, sum(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=4, help="students per wave (bounded: at most 20)")
    args = parser.parse_args()
    count = max(1, min(args.students, 20))
    # The plan's capacity must admit a whole wave on one host (active_server_limit).
    env, descriptor, flavors = course_env(COURSE, load={"students": 2 * count, "concurrent": 0.5,
                                                        "memory_per_user": "256Mi", "cpu_per_user": 0.25},
                                          flavors=FLAVORS)
    figures: dict[str, object] = {}
    try:
        hubfleet(env, "create", str(descriptor), "--flavors", str(flavors), "--hosts", "1", "--no-probe")
        url, password, _ = course_facts(env, COURSE)
        seconds, ok = wave(url, password, [f"one{i:02d}" for i in range(count)])
        figures.update(one_host_students=count, one_host_ok=ok, one_host_per_minute=round(60 * ok / seconds, 1))

        started = time.monotonic()
        hubfleet(env, "scale", COURSE, "--hosts", "2")
        figures["add_host_s"] = round(time.monotonic() - started, 1)

        url, password, status = course_facts(env, COURSE)
        seconds, ok = wave(url, password, [f"two{i:02d}" for i in range(count)])
        figures.update(two_hosts_students=count, two_hosts_ok=ok, two_hosts_per_minute=round(60 * ok / seconds, 1),
                       nodes=len(status["nodes"]))
    finally:
        destroy(env, COURSE)
        report(figures)


if __name__ == "__main__":
    main()
