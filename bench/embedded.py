"""Benchmark the embedded default: create (cold / warm), no-op re-run, spawn latency, idle memory.

Prints figures; asserts nothing. Talks only to 127.0.0.1 and to the containers it creates.

    .venv/bin/python bench/embedded.py                 # warm: images already built
    .venv/bin/python bench/embedded.py --cold          # removes hubfleet's images first (minutes)
    .venv/bin/python bench/embedded.py --spawns 20

Spawn latency is login → own server → a kernel runs code, per student, one at a time; the
floor is a bare `docker run` of the same notebook image on the same host's engine, with the same
CPU and memory limits as a student's server, until its HTTP answers, measured in the same run
(and once more without limits, for reference).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import course_env, course_facts, destroy, hubfleet, percentile, report  # noqa: E402
from hubfleet.jupyter import execute, login_with_password, start_own_server, stop_own_server  # noqa: E402

COURSE = "bench-embedded"


def timed(fn, *args):
    started = time.monotonic()
    result = fn(*args)
    return time.monotonic() - started, result


def floor_run(host: str, image: str, limits: str = "") -> float:
    """A bare container of the notebook image on the host's engine, until its HTTP answers."""
    script = f"""
set -e
start=$(date +%s.%N)
cid=$(docker run -d --rm {limits} {image} jupyter lab --ip=0.0.0.0 --port=8888 --ServerApp.token=bench)
ip=$(docker inspect -f '{{{{range .NetworkSettings.Networks}}}}{{{{.IPAddress}}}}{{{{end}}}}' $cid)
until curl -sf -o /dev/null "http://$ip:8888/api/status?token=bench"; do sleep 0.05; done
end=$(date +%s.%N)
docker rm -f $cid >/dev/null
echo "$start $end"
"""
    out = subprocess.run(["docker", "exec", host, "bash", "-c", script], capture_output=True, text=True, check=True)
    start, end = map(float, out.stdout.split())
    return end - start


def idle_memory(host: str) -> list[float]:
    out = subprocess.run(["docker", "exec", host, "docker", "stats", "--no-stream", "--format",
                          "{{.Name}} {{.MemUsage}}"], capture_output=True, text=True, check=True).stdout
    sizes = []
    for line in out.splitlines():
        name, usage = line.split(" ", 1)
        if name.startswith("jupyter-"):
            value = usage.split("/")[0].strip()
            number, unit = float(value[:-3]), value[-3:]
            sizes.append(number * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[unit])
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", action="store_true", help="remove hubfleet's images first")
    parser.add_argument("--spawns", type=int, default=20)
    parser.add_argument("--floor-runs", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="leave the course running")
    args = parser.parse_args()

    env, descriptor, _ = course_env(COURSE)
    course = yaml.safe_load(descriptor.read_text())

    if args.cold:
        images = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "hubfleet/*"],
                                capture_output=True, text=True).stdout.split()
        if images:
            subprocess.run(["docker", "rmi", "-f", *images], capture_output=True)
    figures: dict[str, object] = {}
    try:
        seconds, _ = timed(hubfleet, env, "create", str(descriptor))
        figures["create_cold_s" if args.cold else "create_warm_s"] = round(seconds, 1)
        seconds, proc = timed(hubfleet, env, "create", str(descriptor), "--json", "--no-probe")
        figures["rerun_noop_s"] = round(seconds, 1)
        figures["rerun_changed"] = json.loads(proc.stdout)["changed"]

        url, password, status = course_facts(env, COURSE)
        host = status["hosts"][0]["name"]

        spawns = []
        for i in range(args.spawns):
            user = f"student{i:03d}"
            started = time.monotonic()
            session = login_with_password(url, user, password)
            start_own_server(session, url, user)
            result = execute(f"{url}/user/{user}", "1+1", session=session)
            assert result.output.strip() == "2", result
            spawns.append(time.monotonic() - started)
        time.sleep(10)  # let the servers settle to idle
        memory = idle_memory(host)
        for i in range(args.spawns):
            session = login_with_password(url, f"student{i:03d}", password)
            stop_own_server(session, url, f"student{i:03d}")
        limits = f"--cpus {course['load']['cpu_per_user']} --memory {course['load']['memory_per_user'].replace('i', '')}"
        floors = [floor_run(host, course["image"], limits) for _ in range(args.floor_runs)]
        bare = [floor_run(host, course["image"]) for _ in range(max(3, args.floor_runs // 3))]

        figures.update({
            "spawn_n": len(spawns),
            "spawn_median_s": round(statistics.median(spawns), 2),
            "spawn_p95_s": round(percentile(spawns, 95), 2),
            "floor_n": len(floors),
            "floor_median_s": round(statistics.median(floors), 2),  # same CPU/memory limits as a student
            "floor_unlimited_median_s": round(statistics.median(bare), 2),
            "spawn_over_floor": round(statistics.median(spawns) / statistics.median(floors), 2),
            "idle_server_mib_median": round(statistics.median(memory), 1) if memory else None,
            "idle_server_mib_max": round(max(memory), 1) if memory else None,
        })
    finally:
        if not args.keep:
            destroy(env, COURSE)
        report(figures)


if __name__ == "__main__":
    main()
