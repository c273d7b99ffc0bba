"""Benchmark the embedded default: create (cold / warm), no-op re-run, spawn latency, idle memory.

Prints figures; asserts nothing. Talks only to 127.0.0.1 and to the containers it creates.

    .venv/bin/python bench/embedded.py                 # warm: images already built
    .venv/bin/python bench/embedded.py --cold          # removes hubfleet's images first (minutes)
    .venv/bin/python bench/embedded.py --spawns 20

Spawn latency is login → own server → a kernel runs code, per student, one at a time; the
floor is a bare `docker run` of the same notebook image on the same host's engine, with the same
CPU and memory limits as a student's server, until its HTTP answers, measured in the same run
(and once more without limits, for reference).

Each spawn is also taken apart (medians, `spawn_part_*`), from this client's clock, the host
engine's events and the server's own log (the host shares this machine's clock):
  login           POST /hub/login until the hub's cookie is back
  hub             the hub's side: line, placing, until the Swarm service exists
  swarm           service created → its task's container started
  server          container started → "Jupyter Server ... is running" in the server's log
  ready           server running → the hub has seen it answer and says ready
  oauth           GET /user/NAME/lab through the OAuth redirects with the hub
  kernel          a kernel started and `1+1` run over its websocket, until the answer
and the floor likewise: `floor_part_docker` (docker run → started), `floor_part_server`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import course_env, course_facts, destroy, hubfleet, percentile, report  # noqa: E402
from hubfleet.jupyter import (  # noqa: E402
    HubUnavailable,
    cookie_for,
    execute,
    login_with_password,
    stop_own_server,
)

COURSE = "bench-embedded"


def timed(fn, *args):
    started = time.monotonic()
    result = fn(*args)
    return time.monotonic() - started, result


def floor_run(host: str, image: str, limits: str = "") -> tuple[float, float]:
    """A bare container of the notebook image on the host's engine, until its HTTP answers.

    (docker run → container started, started → HTTP answers), in seconds."""
    script = f"""
set -e
start=$(date +%s.%N)
cid=$(docker run -d --rm {limits} {image} jupyter lab --ip=0.0.0.0 --port=8888 --ServerApp.token=bench)
ip=$(docker inspect -f '{{{{range .NetworkSettings.Networks}}}}{{{{.IPAddress}}}}{{{{end}}}}' $cid)
until curl -sf -o /dev/null "http://$ip:8888/api/status?token=bench"; do sleep 0.05; done
end=$(date +%s.%N)
started=$(date -d "$(docker inspect -f '{{{{.State.StartedAt}}}}' $cid)" +%s.%N)
docker rm -f $cid >/dev/null
echo "$start $started $end"
"""
    out = subprocess.run(["docker", "exec", host, "bash", "-c", script], capture_output=True, text=True, check=True)
    start, started, end = map(float, out.stdout.split())
    return started - start, end - started


class EngineEvents:
    """The host engine's service and container events, collected while the spawns run."""

    def __init__(self, host: str):
        self.host = host
        self.since = time.time()

    def times(self) -> dict[str, dict[str, float]]:
        """{name: {"service create": t, "container start": t}} for the students' servers."""
        out = subprocess.run(
            ["docker", "exec", self.host, "docker", "events", "--since", f"{self.since:.3f}",
             "--until", f"{time.time():.3f}", "--filter", "type=service", "--filter", "type=container",
             "--format", "{{json .}}"], capture_output=True, text=True, check=True).stdout
        seen: dict[str, dict[str, float]] = {}
        for line in out.splitlines():
            event = json.loads(line)
            name = event.get("Actor", {}).get("Attributes", {}).get("name", "")
            service = name.split(".", 1)[0]  # a task's container is SERVICE.SLOT.TASKID
            kind = f"{event.get('Type')} {event.get('Action')}"
            if service.startswith("jupyter-") and kind in ("service create", "container start"):
                seen.setdefault(service, {}).setdefault(kind, event["timeNano"] / 1e9)
        return seen


def server_running_at(host: str, user: str) -> float | None:
    """When the server's own log says it is running (its log's timestamp, not ours)."""
    out = subprocess.run(["docker", "exec", host, "docker", "service", "logs", "--timestamps", "--raw",
                          f"jupyter-{user}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
    for line in out.splitlines():
        if "is running at" in line:
            stamp = line.split(" ", 1)[0]  # RFC 3339 with nanoseconds
            base, _, frac = stamp.rstrip("Z").partition(".")
            when = dt.datetime.fromisoformat(base).replace(tzinfo=dt.timezone.utc).timestamp()
            return when + float(f"0.{frac or 0}")
    return None


def one_spawn(url: str, user: str, password: str) -> tuple[float, dict[str, float]]:
    """Login → own server → a kernel runs code; (seconds, this client's clock at each step)."""
    marks = {"begin": time.time()}
    started = time.monotonic()
    session = login_with_password(url, user, password)
    marks["login"] = time.time()
    headers = {"X-XSRFToken": cookie_for(session, "_xsrf", "/hub/api") or ""}
    answer = session.post(f"{url}/hub/api/users/{user}/server", headers=headers, timeout=30)
    if answer.status_code not in (201, 202):
        raise HubUnavailable(f"starting {user}'s server answered {answer.status_code}")
    while not session.get(f"{url}/hub/api/users/{user}", headers=headers, timeout=30).json() \
            .get("servers", {}).get("", {}).get("ready"):
        if time.monotonic() - started > 180:
            raise HubUnavailable(f"{user}'s server was not ready in 180 s")
        time.sleep(0.1)
    marks["ready"] = time.time()
    opened = session.get(f"{url}/user/{user}/lab", timeout=60)
    if opened.status_code != 200:
        raise HubUnavailable(f"{user}'s server answered {opened.status_code}")
    marks["oauth"] = time.time()
    server = f"{url}/user/{user}"
    xsrf = {"X-XSRFToken": cookie_for(session, "_xsrf", f"/user/{user}") or ""}
    kernel = session.post(f"{server}/api/kernels", json={"name": "python3"}, headers=xsrf, timeout=30)
    kernel.raise_for_status()
    result = execute(server, "1+1", session=session, kernel_id=kernel.json()["id"])
    assert result.output.strip() == "2", result
    seconds = time.monotonic() - started  # the student's wait ends with the answer, not the kernel's shutdown
    marks["kernel"] = time.time()
    session.delete(f"{server}/api/kernels/{kernel.json()['id']}", headers=xsrf, timeout=30)
    return seconds, marks


def parts_of(marks: dict[str, float], engine: dict[str, float], running: float | None) -> dict[str, float]:
    """One spawn's parts in seconds (see the module's docstring); those the engine or log lack are left out."""
    parts = {"login": marks["login"] - marks["begin"], "oauth": marks["oauth"] - marks["ready"],
             "kernel": marks["kernel"] - marks["oauth"]}
    created, container = engine.get("service create"), engine.get("container start")
    if created and container and running:
        parts.update(hub=created - marks["login"], swarm=container - created, server=running - container,
                     ready=marks["ready"] - running)
    return parts


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

        spawns, marks = [], {}
        engine = EngineEvents(host)
        for i in range(args.spawns):
            user = f"student{i:03d}"
            seconds, marks[user] = one_spawn(url, user, password)
            spawns.append(seconds)
        events = engine.times()
        parts = [parts_of(marks[user], events.get(f"jupyter-{user}", {}), server_running_at(host, user))
                 for user in marks]
        time.sleep(10)  # let the servers settle to idle
        memory = idle_memory(host)
        for i in range(args.spawns):
            session = login_with_password(url, f"student{i:03d}", password)
            stop_own_server(session, url, f"student{i:03d}")
        limits = f"--cpus {course['load']['cpu_per_user']} --memory {course['load']['memory_per_user'].replace('i', '')}"
        floor_parts = [floor_run(host, course["image"], limits) for _ in range(args.floor_runs)]
        floors = [docker + server for docker, server in floor_parts]
        bare = [sum(floor_run(host, course["image"])) for _ in range(max(3, args.floor_runs // 3))]

        figures.update({
            "spawn_n": len(spawns),
            "spawn_median_s": round(statistics.median(spawns), 2),
            "spawn_p95_s": round(percentile(spawns, 95), 2),
            "floor_n": len(floors),
            "floor_median_s": round(statistics.median(floors), 2),  # same CPU/memory limits as a student
            "floor_unlimited_median_s": round(statistics.median(bare), 2),
            "spawn_over_floor": round(statistics.median(spawns) / statistics.median(floors), 2),
            **{f"spawn_part_{name}_s": round(statistics.median(p[name] for p in parts if name in p), 2)
               for name in ("login", "hub", "swarm", "server", "ready", "oauth", "kernel")
               if any(name in p for p in parts)},
            "floor_part_docker_s": round(statistics.median(d for d, _ in floor_parts), 2),
            "floor_part_server_s": round(statistics.median(v for _, v in floor_parts), 2),
            "idle_server_mib_median": round(statistics.median(memory), 1) if memory else None,
            "idle_server_mib_max": round(max(memory), 1) if memory else None,
        })
    finally:
        if not args.keep:
            destroy(env, COURSE)
        report(figures)


if __name__ == "__main__":
    main()
