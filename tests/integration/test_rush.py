"""A class arriving at once (issue 14) against a real hub: three times the course's seats launch from the LMS together.

One LTI 1.1 course for the module, sized with a tiny flavor so its one host seats 2 students, and
allowed one host past its plan (load.max_hosts 2). `hubfleet autoscale --watch` runs beside the class
as an operator would run it. Six students launch at once, as edX signs a launch; each follows the
hub's redirects as a browser does, reads the spawn-pending page's progress events (the place in
line), reaches a kernel that runs code and saves a file. The first in stay until the course has
grown (a class stays a while), the rest leave when done, which lets the next in line in. No
response any student sees is 400 or above; the Swarm never runs more servers than seats; a student
who launches again while in line keeps one place and one server. The course grows to a second host
during the rush and, once it is empty, moves the files of the students who started there back to
the first host (copied and compared), removes it, and those students find their file at their next
launch. `hubfleet status` shows the seats and the decisions.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from statistics import median

import pytest
import requests
import yaml

from hubfleet.jupyter import cookie_for, execute, stop_own_server
from hubfleet.lifecycle import VOLUME_PREFIX
from hubfleet.usernames import hub_username, spawner_escape
from tests.integration.conftest import unique_course_name
from tests.support.courses import (
    HUBFLEET,
    TestCourse,
    course_env,
    create_course,
    destroy_course,
    hubfleet,
    reaching,
    service_client,
    username_in,
    write_descriptor,
)
from tests.support.lti11_consumer import launch_fields, sign

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SEATS = 2  # the plan's concurrency on the d.test flavor: 2 GiB, 512 MiB a student
STUDENTS = 3 * SEATS
AGAIN = f"rush-student-{STUDENTS}"  # launches a second time while in line
FLAVORS = {"currency": "EUR", "docker": [{"name": "d.test", "vcpus": 2, "ram": "2Gi", "disk": "20Gi"}]}
MAX_HOSTS = 2  # load.max_hosts: one host past the plan
LIMIT = 600.0  # seconds one student may take from launch to kernel (a host added meanwhile): bounds the rush
HOLD = 420.0  # the first students in stay at most this long for the course to grow


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> TestCourse:
    name = unique_course_name("t-rush")
    directory = tmp_path_factory.mktemp(name)
    flavors = directory / "flavors.yaml"
    flavors.write_text(yaml.safe_dump(FLAVORS))
    env = course_env(directory / "state")
    descriptor = write_descriptor(directory, name, {"kind": "lti11", "secret": "generate"},
                                  load={"students": 2 * SEATS, "concurrent": 0.5, "memory_per_user": "512Mi",
                                        "cpu_per_user": 0.5, "disk_per_user": "1Gi", "max_hosts": MAX_HOSTS})
    try:
        made = create_course(env, descriptor, name, "--flavors", str(flavors))
        print(f"create: {made.seconds:.1f} s")
        made.extra.update(json.loads(hubfleet(env, "lti-config", name, "--json").stdout))
        with reaching(made):
            yield made
    finally:
        destroy_course(env, name)


@dataclass
class Visit:
    """What one student saw, from the launch to the kernel."""

    student: str
    statuses: list[tuple[int, str]] = field(default_factory=list)  # every response, redirects included
    messages: list[str] = field(default_factory=list)  # the spawn-pending page's progress events
    output: str = ""
    seconds: float = 0.0
    relaunched: str = ""

    def saw(self, response: requests.Response) -> requests.Response:
        for step in [*response.history, response]:
            self.statuses.append((step.status_code, step.url))
        return response


def launch(course: TestCourse, session: requests.Session, student: str) -> requests.Response:
    url = course.extra["launch_url"]
    form = sign(url, course.extra["consumer_key"], course.extra["consumer_secret"], launch_fields(student),
                style="edx")
    return session.post(url, data=form, timeout=60)  # followed, as the LMS iframe does


def progress_events(course: TestCourse, session: requests.Session, user: str, visit: Visit, on_place) -> None:
    """Read the progress stream the spawn-pending page reads, until the server is ready."""
    headers = {"X-XSRFToken": cookie_for(session, "_xsrf", "/hub/api") or ""}
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:
        with session.get(f"{course.url}/hub/api/users/{user}/server/progress", headers=headers, stream=True,
                         timeout=(30, LIMIT)) as stream:
            visit.statuses.append((stream.status_code, stream.url))
            for raw in stream.iter_lines(decode_unicode=True):
                if not raw or not raw.startswith("data:"):
                    continue
                event = json.loads(raw[5:])
                if event.get("message"):
                    visit.messages.append(event["message"])
                    if "in line" in event["message"]:
                        on_place(user)
                if event.get("failed"):
                    raise AssertionError(f"{user}'s start failed: {event}")
                if event.get("ready"):
                    return
        time.sleep(0.5)  # the stream ended before the server was ready: read it again, as the page does
    raise AssertionError(f"{user} did not reach a server within {LIMIT:.0f} s: {visit.messages[-3:]}")


def reach_kernel(course: TestCourse, session: requests.Session, student: str, visit: Visit, on_place=None) -> str:
    """Launch as the LMS does, follow it to JupyterLab (through the line if there is one): the hub username."""
    landed = visit.saw(launch(course, session, student))
    user = next(username_in(url) for _, url in visit.statuses if username_in(url))
    if "/spawn-pending/" in landed.url or "/hub/spawn" in landed.url:
        progress_events(course, session, user, visit, on_place or (lambda name: None))
    opened = visit.saw(session.get(f"{course.url}/user/{user}/lab", timeout=60))
    assert opened.status_code == 200
    return user


def student_rush(course: TestCourse, student: str, start: threading.Barrier, grown: threading.Event) -> Visit:
    visit, session = Visit(student), course.session()
    start.wait()
    started = time.monotonic()

    def again(name: str) -> None:  # a second click from the LMS while in line: same place, no second server
        if student == AGAIN and not visit.relaunched:
            visit.relaunched = "pending"
            second = visit.saw(launch(course, session, student))
            visit.relaunched = second.url

    user = reach_kernel(course, session, student, visit, again)
    result = execute(f"{course.url}/user/{user}", f"open('mine.txt', 'w').write({student!r}); print(6 * 7)",
                     session=session, timeout=120)
    visit.output = result.output if result.status == "ok" else f"{result.status}: {result.error}"
    visit.seconds = time.monotonic() - started
    grown.wait(timeout=HOLD)  # the first in stay a while: the line grows the course meanwhile
    stop_own_server(session, course.url, user)  # the student leaves: the next in line goes in
    return visit


def swarm_servers(course: TestCourse) -> int:
    listed = subprocess.run(["docker", "exec", course.host, "docker", "service", "ls", "--format", "{{.Name}}"],
                            capture_output=True, text=True, timeout=60)
    return sum(1 for name in listed.stdout.split() if name.startswith("jupyter-"))


def test_warm_before_the_class_makes_the_expected_students_volumes(course, tmp_path):
    expect = tmp_path / "class-list.txt"
    # Another class (the rush's students arrive unannounced, so the hub places them where seats are).
    expect.write_text("# the class\n" + "\n".join(f"class-student-{i}" for i in range(1, STUDENTS + 1)) + "\n")
    started = time.monotonic()
    warmed = json.loads(hubfleet(course.env, "warm", course.name, "--students", str(SEATS), "--for", "30",
                                 "--expect", str(expect), "--json", timeout=600).stdout)
    print(f"warm: {time.monotonic() - started:.1f} s")
    assert warmed["hosts"] == 1 and warmed["students"] == SEATS and warmed["volumes"] >= STUDENTS, warmed
    assert warmed["autoscale"]["action"] == "hold", warmed  # the one planned host seats that many at once
    listed = subprocess.run(["docker", "exec", course.host, "docker", "volume", "ls", "--format", "{{.Name}}"],
                            capture_output=True, text=True, timeout=60).stdout.split()
    for i in range(1, STUDENTS + 1):
        assert VOLUME_PREFIX + spawner_escape(hub_username(f"class-student-{i}")) in listed, listed


def autoscale_rounds(log) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def test_three_times_the_seats_all_reach_a_kernel_the_course_grows_and_shrinks_back(course, tmp_path):
    client = service_client(course)
    seats = client.api("GET", "/hubfleet/seats").json()
    assert seats["capacity"] == SEATS, seats

    log, errors_log = tmp_path / "autoscale.jsonl", tmp_path / "autoscale.err"
    with log.open("w") as out, errors_log.open("w") as err:  # as an operator runs it: a service beside the hub
        scaler = subprocess.Popen([*HUBFLEET, "autoscale", course.name, "--watch", "--interval", "5", "--empty-for",
                                   "20", "--json", "--for", "1500"], env=course.env, stdout=out, stderr=err)
    most, over, watching, grown, elsewhere = [0], [], threading.Event(), threading.Event(), {}

    def watch() -> None:  # servers at once never above the seats there are; who started on the added host
        while not watching.is_set():
            servers = swarm_servers(course)  # first: the seats only grow during the rush, so they cover these
            nodes = client.api("GET", "/hubfleet/seats").json()["nodes"]
            capacity = sum(n["capacity"] for n in nodes.values() if n["ready"] and n["active"])
            most[0] = max(most[0], servers)
            if servers > capacity:
                over.append((servers, capacity))
            for node, seen in nodes.items():
                if node != course.host and seen["ready"]:
                    grown.set()
                    elsewhere.update({student: node for student in seen["pinned"]})
            time.sleep(1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        start = threading.Barrier(STUDENTS)
        begun = time.monotonic()
        with ThreadPoolExecutor(STUDENTS) as pool:
            visits = list(pool.map(lambda i: student_rush(course, f"rush-student-{i}", start, grown),
                                   range(1, STUDENTS + 1)))
        rush = time.monotonic() - begun

        errors = [(v.student, status, url) for v in visits for status, url in v.statuses if status >= 400]
        assert not errors, errors
        assert [v.output for v in visits] == ["42\n"] * STUDENTS, [(v.student, v.output) for v in visits]
        placed = [v for v in visits if any("you are number" in m for m in v.messages)]
        assert placed, [(v.student, v.messages[:2]) for v in visits]
        places = [int(m.split("you are number ")[1].split()[0]) for v in placed for m in v.messages
                  if "you are number" in m]
        assert max(places) <= STUDENTS - SEATS, places  # never a place behind more students than could be waiting
        # Never more servers than the seats there are at that moment (an added host without the hub seats more
        # than the first: the watcher counts what the hub reports).
        assert 0 < most[0] and not over, (most[0], over)  # (servers, seats) when over
        relaunch = next(v for v in visits if v.student == AGAIN)
        if relaunch.relaunched:  # it waited in line: its second launch landed on its own waiting page, not an error
            assert "/spawn-pending/" in relaunch.relaunched or "/user/" in relaunch.relaunched, relaunch.relaunched
        times = sorted(v.seconds for v in visits)
        print(f"rush of {STUDENTS} on {SEATS} seats (+{SEATS} when grown): {rush:.1f} s; launch to kernel "
              f"p50 {median(times):.1f} s, max {times[-1]:.1f} s; most servers at once {most[0]}; "
              f"{len(placed)} shown a place in line; {len(elsewhere)} started on the added host")

        assert elsewhere, "no student started on the added host"  # it took students before its round ended
        deadline = time.monotonic() + 600  # the round that grew ends when the whole course has converged
        while time.monotonic() < deadline and not any(
                r["action"] == "grow" and r["hosts_after"] == MAX_HOSTS for r in autoscale_rounds(log)):
            assert scaler.poll() is None, errors_log.read_text()
            time.sleep(5)
        grew = [r for r in autoscale_rounds(log) if r["action"] == "grow" and r["hosts_after"] == MAX_HOSTS]
        assert grew, (autoscale_rounds(log), errors_log.read_text()[-2000:])

        deadline = time.monotonic() + 600  # empty for 20 s, the files moved, the host removed
        while time.monotonic() < deadline and not any(
                r["action"] in ("move", "shrink") and r["hosts_after"] == 1 for r in autoscale_rounds(log)):
            assert scaler.poll() is None, errors_log.read_text()
            time.sleep(5)
        shrunk = [r for r in autoscale_rounds(log) if r["action"] in ("move", "shrink") and r["hosts_after"] == 1]
        assert shrunk, (autoscale_rounds(log)[-3:], errors_log.read_text()[-2000:])
        print(f"grew in {grew[0]['seconds']:.0f} s; moved the files of {len(elsewhere)} student(s) and shrank in "
              f"{shrunk[0]['seconds']:.0f} s")
    finally:
        watching.set()
        watcher.join(timeout=120)
        scaler.send_signal(signal.SIGINT)
        try:
            scaler.wait(timeout=120)
        except subprocess.TimeoutExpired:
            scaler.kill()

    gone = set(elsewhere.values())
    remaining = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
                               timeout=60).stdout.split()
    assert not gone & set(remaining), f"{gone} is still there"
    nodes = client.api("GET", "/hubfleet/seats").json()["nodes"]
    assert list(nodes) == [course.host], nodes
    for student in sorted(elsewhere)[:2]:  # their files came home with them: each finds their own file
        name = next(f"rush-student-{i}" for i in range(1, STUDENTS + 1) if hub_username(f"rush-student-{i}") == student)
        assert student in nodes[course.host]["pinned"], nodes
        visit, session = Visit(name), course.session()
        user = reach_kernel(course, session, name, visit)
        result = execute(f"{course.url}/user/{user}", "print(open('mine.txt').read())", session=session, timeout=120)
        assert (result.status, result.output) == ("ok", f"{name}\n"), (name, result)
        assert not [s for s in visit.statuses if s[0] >= 400], visit.statuses
        stop_own_server(session, course.url, user)

    shown = hubfleet(course.env, "status", course.name, "--no-probe").stdout
    assert "seats: 0 of 2 taken" in shown and (": move: " in shown or ": shrink: " in shown), shown
