"""A course larger than one host: the course's Swarm across Docker hosts.

One course for the module, sized with a tiny flavor so that one host carries one student. Its
hosts boot the site's default host image (baked when current: the roles' install steps were run
on a stock host by the bake; the stock path from nothing is the OpenStack end-to-end test's, on
the dev cloud's stock Debian servers): it starts on one host, grows to two while a student's
kernel runs (the new worker gets the image and joins), survives a killed worker, refuses to
shrink while the worker holds a student's volume, and is archived from both nodes. Tests run in
file order.
"""

from __future__ import annotations

import errno
import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from hubfleet import tls
from hubfleet.providers.docker import acme_local
from hubfleet.jupyter import cookie_for, execute, login_with_password, start_own_server, stop_own_server
from tests.conftest import EXAMPLES, future
from tests.integration.cli_helpers import HUBFLEET, hubfleet, labelled
from tests.integration.conftest import unique_course_name
from tests.support.awkward import student_archive

pytestmark = [pytest.mark.docker, pytest.mark.slow]

COURSE = unique_course_name("t-swarm")  # unique per run: other runs may share this Docker engine
WORKER = f"{COURSE}-worker-1"
# One student per node: 2 GiB / 1.3 headroom - 0.5 GiB hub = 1 GiB on the hub host, 1.5 GiB elsewhere.
FLAVORS = {"currency": "EUR", "docker": [{"name": "d.test", "vcpus": 2, "ram": "2Gi", "disk": "20Gi"}]}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    import os

    state = tmp_path_factory.mktemp("swarm-state")
    site = state / "site.yaml"
    site.write_text("docker: {host_image: auto}\n")
    return {**os.environ, "HUBFLEET_STATE_DIR": str(state), "PYTHONUNBUFFERED": "1", "HUBFLEET_SITE_CONFIG": str(site)}


@pytest.fixture(scope="module")
def course(env, tmp_path_factory):
    folder = tmp_path_factory.mktemp(COURSE)
    flavors = folder / "flavors.yaml"
    flavors.write_text(yaml.safe_dump(FLAVORS))
    data = yaml.safe_load((EXAMPLES / "workshop.yaml").read_text())
    data.update(name=COURSE, domain=f"{COURSE}.hub.localhost", dates={"start": future(0), "end": future(7)})
    data["load"] = {"students": 2, "concurrent": 0.5, "memory_per_user": "1Gi", "cpu_per_user": 0.5,
                    "disk_per_user": "1Gi"}
    data.pop("tls", None)  # the default: HTTPS from the embedded ACME server
    data["shared_data"] = {}  # a shared folder that starts empty: kept on the hub host, copied to the worker
    path = folder / f"{COURSE}.yaml"
    path.write_text(yaml.safe_dump(data))
    state_dir = Path(env["HUBFLEET_STATE_DIR"])
    try:
        started = time.monotonic()
        made = hubfleet(env, "create", str(path), "--flavors", str(flavors), "--no-probe", timeout=1800, check=False)
        if made.returncode != 0:
            raise AssertionError(f"create failed:\n{made.stdout}\n{made.stderr}")
        print(f"create of a one-host course: {time.monotonic() - started:.1f} s")
        creds = json.loads(hubfleet(env, "credentials", COURSE, "--json").stdout)
        state = {"path": path, "password": creds["shared-password"], "admin": creds["admin-password"], "files": {},
                 "created": made.stdout + made.stderr}
        root = acme_local.acme_dir(state_dir) / "root.pem"
        # As a student's browser: *.localhost is this machine, the embedded root is trusted (requests, websockets).
        with tls.resolving_to_loopback(f"{COURSE}.hub.localhost"), tls.trusting(root), \
                pytest.MonkeyPatch.context() as patch:
            patch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", str(root))
            yield state
    finally:
        if labelled(COURSE):
            hubfleet(env, "destroy", COURSE, "--yes", "--no-archive", check=False)
        acme_local.stop_local_acme(state_dir)


def status(env) -> dict:
    proc = subprocess.run([*HUBFLEET, "status", COURSE, "--json", "--no-probe"], env=env, capture_output=True,
                          text=True, timeout=300)
    return json.loads(proc.stdout)


def servers_per_node(env) -> dict[str, int]:
    return {n["host"]: n["servers"] for n in status(env)["nodes"]}


def write_file(url: str, session: requests.Session, user: str) -> str:
    code = (f"import hashlib, pathlib; p = pathlib.Path('/home/jovyan/{user}.txt'); "
            f"p.write_text('{user} ' * 1000); print(hashlib.sha256(p.read_bytes()).hexdigest())")
    result = execute(f"{url}/user/{user}", code, session=session)
    assert result.status == "ok", result.error
    return result.output.strip()


def image_on(host: str) -> str:
    return subprocess.run(["docker", "exec", host, "docker", "image", "inspect", "--format", "{{.Id}}",
                           "hubfleet/notebook:latest"], capture_output=True, text=True).stdout.strip()


def test_the_hosts_engine_has_the_course_image_and_the_sites_address_range(env, course):
    wanted = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", "hubfleet/notebook:latest"],
                            capture_output=True, text=True).stdout.strip()
    assert image_on(f"{COURSE}-hub") == wanted
    bridge = subprocess.run(["docker", "exec", f"{COURSE}-hub", "ip", "-4", "-o", "addr", "show", "docker0"],
                            capture_output=True, text=True).stdout
    assert "198.18.0.1/24" in bridge, "the engine takes the site's range, not 172.17.0.0/16"


def hub_log(lines: int = 60) -> str:
    """The end of JupyterHub's journal on the hub host, for a failure's message."""
    return subprocess.run(["docker", "exec", f"{COURSE}-hub", "journalctl", "-u", "jupyterhub", "--no-pager", "-o",
                           "cat", "-n", str(lines)], capture_output=True, text=True).stdout


def test_one_host_course_grows_to_two_while_a_kernel_runs(env, course):
    first = status(env)
    assert [n["host"] for n in first["nodes"]] == [f"{COURSE}-hub"]
    url = first["url"]
    alice = login_with_password(url, "alice", course["password"])
    try:
        start_own_server(alice, url, "alice")
    except Exception as exc:
        raise AssertionError(f"{exc}\n--- the hub's log ---\n{hub_log()}") from None
    server = f"{url}/user/alice"
    kernel = alice.post(f"{server}/api/kernels", json={"name": "python3"},
                        headers={"X-XSRFToken": cookie_for(alice, "_xsrf", "/user/alice") or ""}).json()["id"]
    assert execute(server, "x = 41", session=alice, kernel_id=kernel).status == "ok"

    started = time.monotonic()
    hubfleet(env, "scale", COURSE, "--hosts", "2", timeout=1800)
    print(f"adding a host to the live course: {time.monotonic() - started:.1f} s")
    assert image_on(WORKER) == image_on(f"{COURSE}-hub"), "the new worker gets the course image"

    assert execute(server, "print(x + 1)", session=alice, kernel_id=kernel).output.strip() == "42"
    nodes = servers_per_node(env)
    assert nodes == {f"{COURSE}-hub": 1, WORKER: 0}
    course.update(url=url, alice=alice)


def test_students_spread_and_find_their_work_after_restart(env, course):
    url = course["url"]
    bob = login_with_password(url, "bob", course["password"])
    start_own_server(bob, url, "bob")
    assert servers_per_node(env) == {f"{COURSE}-hub": 1, WORKER: 1}, "bob goes to the least loaded node"
    for user, session in (("alice", course["alice"]), ("bob", bob)):
        course["files"][user] = write_file(url, session, user)
        stop_own_server(session, url, user)
        start_own_server(session, url, user)
        again = execute(f"{url}/user/{user}", f"print(open('/home/jovyan/{user}.txt').read().count('{user}'))",
                        session=session)
        assert again.output.strip() == "1000", f"{user} must find their file on their node"
    assert servers_per_node(env) == {f"{COURSE}-hub": 1, WORKER: 1}, "each student stays on their node"
    stop_own_server(bob, url, "bob")


def test_a_teachers_note_in_the_shared_folder_reaches_a_student_on_the_worker(env, course):
    """The teacher (a course admin) is placed on the hub's node, where the folder is kept, and writes a note;
    Bob, whose server is on the worker, reads it there within a minute (the worker copies the hub host's
    folder every 30 s) and cannot write next to it."""
    url = course["url"]
    teacher = login_with_password(url, "teacher", course["admin"])
    start_own_server(teacher, url, "teacher")
    assert {n["host"]: n["servers"] for n in status(env)["nodes"]}[f"{COURSE}-hub"] == 2, "the teacher is on the hub"
    wrote = execute(f"{url}/user/teacher", "open('/home/jovyan/shared/exam.md', 'w').write('Thursday, 9:00\\n')",
                    session=teacher)
    assert wrote.status == "ok", wrote.error
    stop_own_server(teacher, url, "teacher")
    bob = login_with_password(url, "bob", course["password"])
    start_own_server(bob, url, "bob")
    read = ("import os, time, errno\n"
            "for _ in range(90):\n"
            "    if os.path.exists('/home/jovyan/shared/exam.md'): break\n"
            "    time.sleep(1)\n"
            "try:\n    open('/home/jovyan/shared/bob.md', 'w')\nexcept OSError as exc:\n    print(exc.errno)\n"
            "print(open('/home/jovyan/shared/exam.md').read(), end='')")
    seen = execute(f"{url}/user/bob", read, session=bob, timeout=150)
    assert seen.status == "ok", seen.error
    assert seen.output == f"{errno.EROFS}\nThursday, 9:00\n", seen.output
    assert servers_per_node(env)[WORKER] == 1, "Bob read it on the worker"
    stop_own_server(bob, url, "bob")


def test_killed_worker_is_reported_new_students_still_spawn_and_create_recovers(env, course):
    subprocess.run(["docker", "kill", WORKER], check=True, capture_output=True)
    proc = subprocess.run([*HUBFLEET, "status", COURSE], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 7 and f"host {WORKER} is stopped" in proc.stderr

    deadline = time.monotonic() + 90  # the manager marks the node down after missed heartbeats
    while time.monotonic() < deadline:
        if any(n["host"] == WORKER and n["state"] == "down" for n in status(env)["nodes"]):
            break
        time.sleep(3)
    else:
        pytest.fail("the manager never reported the killed worker down")

    url = course["url"]
    # The course has the hub's one seat left (the plan seats one student a node), and alice holds it:
    # she leaves, so carol, new, gets it instead of waiting in line (tests/integration/test_rush.py).
    stop_own_server(course["alice"], url, "alice")
    carol = login_with_password(url, "carol", course["password"])
    start_own_server(carol, url, "carol")
    assert execute(f"{url}/user/carol", "1+1", session=carol).output.strip() == "2"
    stop_own_server(carol, url, "carol")

    hubfleet(env, "create", str(course["path"]), "--no-probe")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        report = status(env)
        if report["healthy"] and all(n["state"] == "ready" for n in report["nodes"]) and len(report["nodes"]) == 2:
            break
        time.sleep(3)
    else:
        pytest.fail(f"the course did not recover: {report['problems']}")
    course["url"] = report["url"]


def test_shrinking_refuses_while_the_worker_holds_a_student_volume(env, course):
    proc = subprocess.run([*HUBFLEET, "scale", COURSE, "--hosts", "1"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 5
    assert f"{WORKER} holds 1 student volume(s) (hubfleet-user-bob)" in proc.stderr
    nodes = status(env)["nodes"]
    assert len(nodes) == 2, "nothing was removed"
    assert all(n["availability"] == "active" for n in nodes), "the paused worker takes students again"


def test_destroy_archives_both_nodes(env, course, tmp_path):
    proc = hubfleet(env, "destroy", COURSE, "--yes")
    archive = Path(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("archive:")))
    for user, host in (("alice", f"{COURSE}-hub"), ("bob", WORKER)):
        folder = tmp_path / user
        folder.mkdir()
        entry, extracted = student_archive(archive, user, folder)
        assert entry["host"] == host and entry["volume"] == f"hubfleet-user-{user}"
        assert hashlib.sha256((extracted / f"{user}.txt").read_bytes()).hexdigest() == course["files"][user]
    assert labelled(COURSE) == []
