"""A class arriving at once, side by side: hubfleet, and the hub a user sets up by hand, on the same host.

Prints figures; asserts nothing. Makes one LTI 1.1 course on Docker hosts with a tiny flavor (SEATS
students at once on one host) that may grow to --max-hosts hosts, with `hubfleet autoscale --watch`
beside it as an operator runs it. Then, on the same hub host, the hub JupyterHub's and
DockerSpawner's documentation lead to: JupyterHub with LTI11Authenticator and DockerSpawner (the same
notebook image, the same memory and CPU limits, a named volume per user), `active_server_limit` at
the same seats so the host is not overcommitted, plain HTTP on the host's address. Talks only to
127.0.0.1 and the containers it made; bounded in students (at most 60 a rush) and time (--timeout).

    .venv/bin/python bench/rush.py                      # rushes of 1x, 3x and 10x the plan's concurrency
    .venv/bin/python bench/rush.py --rushes 1,3 --max-hosts 2

A student, for each rush all at the same moment: POSTs a launch signed as edX signs it and follows
every redirect as a browser does; on the spawn-pending page reads its progress stream until the
server is ready; opens JupyterLab, runs code in a new kernel, and leaves (stops the server). A
response of 400 or more is an error page: an LTI launch cannot be reloaded (its nonce is spent), so
that student is counted as turned away and stops there. Launch to kernel runs from the POST to the
code's result. Hub API p95: GET /hub/api every half second during the rush. Hosts over time:
the course's ready Swarm nodes, every two seconds (the hand-made hub has one host).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import course_env, destroy, hubfleet, percentile, reach, report  # noqa: E402
from hubfleet.jupyter import HubClient, cookie_for, execute, stop_own_server  # noqa: E402
from hubfleet.state import StateStore  # noqa: E402
from tests.support.courses import username_in  # noqa: E402
from tests.support.lti11_consumer import launch_fields, sign  # noqa: E402

COURSE = "bench-rush"
SEATS = 2  # the d.bench flavor: 2 GiB, 512 MiB a student
FLAVORS = {"currency": "EUR", "docker": [{"name": "d.bench", "vcpus": 2, "ram": "2Gi", "disk": "20Gi"}]}
LOAD = {"students": 2 * SEATS, "concurrent": 0.5, "memory_per_user": "512Mi", "cpu_per_user": 0.5,
        "disk_per_user": "1Gi"}
MAX_STUDENTS = 60
HANDMADE_PORT = 8100
HANDMADE_KEY = "handmade-key"


@dataclass
class Visit:
    student: str
    seconds: float | None = None
    error: str = ""  # the first error page (status and path), or why the student stopped
    statuses: list[int] = field(default_factory=list)

    def followed(self, response: requests.Response) -> bool:
        """Record every response of a followed request; True (and the error noted) when one was an error page."""
        seen = [*response.history, response]
        self.statuses += [r.status_code for r in seen]
        bad = next((r for r in seen if r.status_code >= 400), None)
        if bad is not None:
            self.error = f"{bad.status_code} {urlsplit(bad.url).path}"
        return bad is not None


def one_student(base: str, launch_url: str, key: str, secret: str, student: str, verify, start: threading.Barrier,
                limit: float) -> Visit:
    visit, session = Visit(student), requests.Session()
    session.verify = verify
    start.wait()
    started = time.monotonic()
    try:
        form = sign(launch_url, key, secret, launch_fields(student), style="edx")
        landed = session.post(launch_url, data=form, timeout=120)
        if visit.followed(landed):
            return visit
        user = next((username_in(r.url) for r in [*landed.history, landed] if username_in(r.url)), "")
        if not user and urlsplit(landed.url).path.rstrip("/") == "/hub/home":
            # The hub's home page (a plain JupyterHub after an LTI launch): the student clicks "Start My Server".
            headers = {"X-XSRFToken": cookie_for(session, "_xsrf", "/hub/api") or ""}
            user = session.get(f"{base}/hub/api/user", headers=headers, timeout=60).json()["name"]
            landed = session.get(f"{base}/hub/spawn/{user}", timeout=120)
            if visit.followed(landed):
                return visit
        if not user:
            visit.error = f"landed on {urlsplit(landed.url).path}"
            return visit
        headers = {"X-XSRFToken": cookie_for(session, "_xsrf", "/hub/api") or ""}
        deadline = started + limit
        ready = "/user/" in landed.url
        while not ready and time.monotonic() < deadline:
            with session.get(f"{base}/hub/api/users/{user}/server/progress", headers=headers, stream=True,
                             timeout=(30, limit)) as stream:
                visit.statuses.append(stream.status_code)
                if stream.status_code >= 400:
                    visit.error = f"{stream.status_code} progress"
                    return visit
                for raw in stream.iter_lines(decode_unicode=True):
                    if raw and raw.startswith("data:"):
                        event = json.loads(raw[5:])
                        if event.get("failed"):
                            visit.error = f"spawn failed: {event.get('message', '')[:100]}"
                            return visit
                        if event.get("ready"):
                            ready = True
                            break
            if not ready:
                time.sleep(0.5)
        if not ready:
            visit.error = f"no server within {limit:.0f} s"
            return visit
        opened = session.get(f"{base}/user/{user}/lab", timeout=120)
        visit.statuses.append(opened.status_code)
        if opened.status_code >= 400:
            visit.error = f"{opened.status_code} lab"
            return visit
        result = execute(f"{base}/user/{user}", "print(6 * 7)", session=session, timeout=180)
        if result.output.strip() != "42":
            visit.error = f"kernel: {result.status} {result.error}"[:120]
            return visit
        visit.seconds = time.monotonic() - started
        stop_own_server(session, base, user)
    except Exception as exc:  # one student's failure is a figure, not the end of the run
        visit.error = f"{type(exc).__name__}: {exc}"[:160]
    return visit


class Sampler:
    """Hub API latency every half second; hosts every two seconds (from `hosts()`), while a rush runs."""

    def __init__(self, base: str, verify, hosts):
        self.base, self.verify, self.hosts = base, verify, hosts
        self.latencies: list[float] = []
        self.host_counts: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.began = time.monotonic()
        self.threads = [threading.Thread(target=self._api, daemon=True), threading.Thread(target=self._hosts,
                                                                                            daemon=True)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _api(self):
        session = requests.Session()
        session.verify = self.verify
        while not self.stop.is_set():
            asked = time.monotonic()
            try:
                session.get(f"{self.base}/hub/api", timeout=30)
                self.latencies.append(time.monotonic() - asked)
            except requests.RequestException:
                self.latencies.append(30.0)
            self.stop.wait(0.5)

    def _hosts(self):
        while not self.stop.is_set():
            try:
                count = self.hosts()
            except Exception:  # noqa: BLE001 - a reading missed is not a figure
                count = None
            if count is not None and (not self.host_counts or self.host_counts[-1][1] != count):
                self.host_counts.append((round(time.monotonic() - self.began), count))
            self.stop.wait(2)


def rush(label: str, base: str, launch_url: str, key: str, secret: str, students: int, verify, hosts,
         limit: float) -> dict:
    start = threading.Barrier(students)
    names = [f"{label}-{students}-{i:02d}" for i in range(1, students + 1)]
    with Sampler(base, verify, hosts) as sampler:
        began = time.monotonic()
        with ThreadPoolExecutor(students) as pool:
            visits = list(pool.map(lambda n: one_student(base, launch_url, key, secret, n, verify, start, limit),
                                   names))
        wall = time.monotonic() - began
    done = [v.seconds for v in visits if v.seconds is not None]
    errors = sorted({v.error for v in visits if v.error})
    return {
        "students": students,
        "in": f"{len(done)}/{students}",
        "error_pages": sum(1 for v in visits for s in v.statuses if s >= 400),
        "launch_to_kernel_p50_s": round(percentile(done, 50), 1) if done else None,
        "launch_to_kernel_p95_s": round(percentile(done, 95), 1) if done else None,
        "hub_api_p95_ms": round(1000 * percentile(sampler.latencies, 95)) if sampler.latencies else None,
        "hosts_over_time": sampler.host_counts,
        "rush_s": round(wall, 1),
        "errors": errors[:3],
    }


# --- hubfleet ----------------------------------------------------------------------------------------


def make_course(max_hosts: int) -> tuple[dict, float]:
    env, descriptor, flavors = course_env(COURSE, load={**LOAD, "max_hosts": max_hosts}, flavors=FLAVORS)
    import yaml

    data = yaml.safe_load(descriptor.read_text())
    data["authenticator"] = {"kind": "lti11", "secret": "generate"}
    descriptor.write_text(yaml.safe_dump(data))
    started = time.monotonic()
    hubfleet(env, "create", str(descriptor), "--no-probe", "--flavors", str(flavors))
    return env, time.monotonic() - started


def hubfleet_hosts(client: HubClient):
    def count() -> int:
        nodes = client.api("GET", "/hubfleet/seats").json()["nodes"]
        return sum(1 for n in nodes.values() if n["ready"])
    return count


def wait_back(count, hosts: int, bound: float) -> float | None:
    """Seconds until the course is back to `hosts` hosts (None: not within `bound`)."""
    began = time.monotonic()
    while time.monotonic() - began < bound:
        if count() <= hosts:
            return time.monotonic() - began
        time.sleep(5)
    return None


# --- the hub set up by hand --------------------------------------------------------------------------

HANDMADE_CONFIG = """
# What JupyterHub's and DockerSpawner's documentation lead to for LTI 1.1 and one Docker host.
c.JupyterHub.authenticator_class = "ltiauthenticator.lti11.auth.LTI11Authenticator"
c.LTI11Authenticator.consumers = {{{key!r}: {secret!r}}}
c.LTI11Authenticator.username_key = "user_id"
c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.image = {image!r}
c.DockerSpawner.mem_limit = "512M"
c.DockerSpawner.cpu_limit = 0.5
c.DockerSpawner.remove = True
c.DockerSpawner.notebook_dir = "/home/jovyan"
c.DockerSpawner.volumes = {{"handmade-{{username}}": "/home/jovyan"}}  # where the course image keeps work
c.DockerSpawner.default_url = "/lab"
c.JupyterHub.bind_url = "http://:{port}"
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.hub_connect_ip = {gateway!r}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.JupyterHub.active_server_limit = {seats}  # the host's seats: the documented way not to overcommit it
c.JupyterHub.cookie_secret_file = "/srv/handmade/cookie_secret"
c.JupyterHub.db_url = "sqlite:////srv/handmade/jupyterhub.sqlite"
c.ConfigurableHTTPProxy.pid_file = "/srv/handmade/proxy.pid"
c.Authenticator.allow_all = True
"""


def host_exec(host: str, *argv: str, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(["docker", "exec", "-i", host, *argv], input=stdin, capture_output=True, text=True,
                          timeout=300)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} on {host}: {proc.stderr.strip()[:300]}")
    return proc.stdout


def start_handmade(host: str, image: str, secret: str) -> str:
    """Start the hand-made hub on the course's hub host; returns its base URL (the host's address)."""
    gateway = host_exec(host, "docker", "network", "inspect", "bridge", "--format",
                        "{{(index .IPAM.Config 0).Gateway}}").strip()
    config = HANDMADE_CONFIG.format(key=HANDMADE_KEY, secret=secret, image=image, port=HANDMADE_PORT,
                                    hub_port=HANDMADE_PORT + 81, api_port=HANDMADE_PORT + 1, seats=SEATS,
                                    gateway=gateway)
    host_exec(host, "mkdir", "-p", "/srv/handmade")
    host_exec(host, "sh", "-c", "cat > /srv/handmade/jupyterhub_config.py", stdin=config)
    host_exec(host, "sh", "-c", "cd /srv/handmade && nohup /opt/jupyterhub/venv/bin/jupyterhub "
                                "-f jupyterhub_config.py > hub.log 2>&1 &")
    address = subprocess.run(["docker", "inspect", host, "--format",
                              "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"],
                             capture_output=True, text=True, check=True).stdout.split()[0]
    base = f"http://{address}:{HANDMADE_PORT}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/hub/api", timeout=5).status_code == 200:
                return base
        except requests.RequestException:
            pass
        time.sleep(2)
    raise RuntimeError("the hand-made hub did not answer: " + host_exec(host, "tail", "-20", "/srv/handmade/hub.log",
                                                                        check=False))


def stop_handmade(host: str) -> None:
    host_exec(host, "sh", "-c", "pkill -f 'jupyterhub -f jupyterhub_config.py'; pkill -f 'configurable-http-proxy.*"
                                f"{HANDMADE_PORT + 1}'; docker rm -f $(docker ps -aq --filter name=jupyter-) "
                                "2>/dev/null; true", check=False)


def stop_scaler(scaler: subprocess.Popen) -> None:
    """Stop `hubfleet autoscale --watch` as an operator would (Ctrl-C), killing it if a round does not end."""
    if scaler.poll() is not None:
        return
    scaler.send_signal(signal.SIGINT)
    try:
        scaler.wait(timeout=60)
    except subprocess.TimeoutExpired:
        scaler.kill()
        scaler.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rushes", default="1,3,10", help="rush sizes, as multiples of the plan's concurrency")
    parser.add_argument("--max-hosts", type=int, default=3, help="load.max_hosts of the hubfleet course")
    parser.add_argument("--limit", type=float, default=900.0, help="seconds one student may wait for a kernel")
    parser.add_argument("--keep", action="store_true", help="keep the course made for the run")
    parser.add_argument("--hubs", default="hubfleet,handmade", help="which hubs to rush: hubfleet, handmade or both")
    args = parser.parse_args()
    sizes = [int(x) * SEATS for x in args.rushes.split(",")]
    if not all(1 <= n <= MAX_STUDENTS for n in sizes):
        parser.error(f"each rush must be between 1 and {MAX_STUDENTS} students")

    env, created = make_course(args.max_hosts)
    figures: dict = {"seats_per_host": SEATS, "max_hosts": args.max_hosts, "create_s": round(created, 1)}
    scaler = None
    try:
        cfg = json.loads(hubfleet(env, "lti-config", COURSE, "--json").stdout)
        status = json.loads(hubfleet(env, "status", COURSE, "--json", "--no-probe").stdout)
        base = status["url"]
        reach(env, base)
        store = StateStore(Path(env["HUBFLEET_STATE_DIR"]))
        client = HubClient(base, store.get_secret(COURSE, "hub-api-token"))
        log = Path(env["HUBFLEET_STATE_DIR"]) / "autoscale.jsonl"
        with log.open("w") as out:
            scaler = subprocess.Popen([sys.executable, "-m", "hubfleet", "autoscale", COURSE, "--watch", "--interval",
                                       "5", "--empty-for", "30", "--json"], env=env, stdout=out,
                                      stderr=subprocess.DEVNULL)
        count = hubfleet_hosts(client)
        for n in sizes if "hubfleet" in args.hubs else []:
            print(f"hubfleet: a rush of {n} ...", flush=True)
            figures[f"hubfleet_{n}"] = result = rush("hf", base, cfg["launch_url"], cfg["consumer_key"],
                                                     cfg["consumer_secret"], n, True, count, args.limit)
            back = wait_back(count, 1, 600)
            result["back_to_1_host_s"] = None if back is None else round(back)
            print(json.dumps(result), flush=True)
        stop_scaler(scaler)

        host = f"{COURSE}-hub"
        image = store.get(COURSE).descriptor.get("image") or "hubfleet/notebook:latest"
        stop_handmade(host)
        hand = start_handmade(host, image, "handmade-secret")
        for n in sizes if "handmade" in args.hubs else []:
            print(f"by hand: a rush of {n} ...", flush=True)
            figures[f"handmade_{n}"] = result = rush("hm", hand, f"{hand}/hub/lti/launch", HANDMADE_KEY,
                                                     "handmade-secret", n, True, lambda: 1, args.limit)
            print(json.dumps(result), flush=True)
        stop_handmade(host)
    finally:
        if scaler is not None:
            stop_scaler(scaler)
        if not args.keep:
            destroy(env, COURSE)
    report(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
