"""Seats under pressure (issue 14) against a real hub: an idle server is stopped for a student waiting in
line, a server whose kernel is running code is kept. Then, on the same live course, one student's files
from an archive are restored beside their own (`hubfleet archives restore`).

One shared-password course on one host that seats 2 (the d.test flavor: 2 GiB, 512 MiB a student),
`culling.pressure_timeout` 60 s and idle_timeout an hour, so only the pressure service can stop anyone
here. Bob's kernel runs a long computation; Carol opened JupyterLab and did nothing since; Dave logs in
and starts his server: the course is full, he waits in line (202, a place in the seats API), and once
Carol has been idle 60 s her server is stopped for him (the hub's log says so), he goes in and runs
code; Bob's server and his running kernel are untouched.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from hubfleet.archive import FORMAT
from hubfleet.jupyter import (
    cookie_for,
    execute,
    login_with_password,
    start_own_server,
    stop_own_server,
)
from hubfleet.state import StateStore
from tests.integration.conftest import unique_course_name
from tests.support.courses import (
    TestCourse,
    course_env,
    create_course,
    destroy_course,
    hub_log,
    hubfleet,
    reaching,
    service_client,
    start_computing,
    write_descriptor,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

FLAVORS = {"currency": "EUR", "docker": [{"name": "d.test", "vcpus": 2, "ram": "2Gi", "disk": "20Gi"}]}
PRESSURE = 60  # culling.pressure_timeout, the shortest the descriptor takes
BUSY = 420  # seconds Bob's computation runs: longer than everything below


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> TestCourse:
    name = unique_course_name("t-press")
    directory = tmp_path_factory.mktemp(name)
    flavors = directory / "flavors.yaml"
    flavors.write_text(yaml.safe_dump(FLAVORS))
    env = course_env(directory / "state")
    descriptor = write_descriptor(directory, name, {"kind": "shared-password", "password": "generate"},
                                  load={"students": 4, "concurrent": 0.5, "memory_per_user": "512Mi",
                                        "cpu_per_user": 0.5, "disk_per_user": "1Gi"},
                                  culling={"idle_timeout": 3600, "pressure_timeout": PRESSURE})
    try:
        made = create_course(env, descriptor, name, "--flavors", str(flavors))
        print(f"create: {made.seconds:.1f} s")
        made.extra["password"] = json.loads(hubfleet(env, "credentials", name, "--json").stdout)["shared-password"]
        with reaching(made):
            yield made
    finally:
        destroy_course(env, name)


def kernels(course: TestCourse, session, user: str) -> list[dict]:
    return session.get(f"{course.url}/user/{user}/api/kernels", timeout=30).json()


def test_an_idle_server_is_stopped_for_a_waiting_student_and_a_busy_one_is_kept(course):
    password = course.extra["password"]
    bob = login_with_password(course.url, "bob", password, verify=course.verify)
    start_own_server(bob, course.url, "bob")
    computing = start_computing(course.url, bob, "bob", f"import time\ntime.sleep({BUSY})", verify=course.verify)
    carol = login_with_password(course.url, "carol", password, verify=course.verify)
    start_own_server(carol, course.url, "carol")  # opens JupyterLab, then nothing
    carol_in = time.monotonic()

    dave = login_with_password(course.url, "dave", password, verify=course.verify)
    headers = {"X-XSRFToken": cookie_for(dave, "_xsrf", "/hub/api") or ""}
    asked = dave.post(f"{course.url}/hub/api/users/dave/server", headers=headers, timeout=30)
    assert asked.status_code == 202, f"the course is full: Dave waits ({asked.status_code} {asked.text[:200]})"
    hub = service_client(course)
    seats = hub.api("GET", "/hubfleet/seats").json()
    assert seats["waiting"] == 1 and seats["running"] == 2, seats

    deadline = time.monotonic() + PRESSURE + 180
    while not dave.get(f"{course.url}/hub/api/users/dave", headers=headers, timeout=30).json() \
            .get("servers", {}).get("", {}).get("ready"):
        assert time.monotonic() < deadline, f"Dave still waits: {hub.api('GET', '/hubfleet/seats').text}"
        time.sleep(2)
    waited = time.monotonic() - carol_in
    print(f"Dave in {waited:.0f} s after Carol's last activity (pressure timeout {PRESSURE} s)")
    assert waited >= PRESSURE - 5, "Carol's seat was not given before she had been idle the pressure timeout"

    users = {u["name"]: u for u in hub.users()}
    assert "" not in users["carol"]["servers"], "Carol's idle server was stopped for Dave"
    assert "" in users["bob"]["servers"], "Bob's server, computing, is kept"
    running = {k["id"]: k["execution_state"] for k in kernels(course, bob, "bob")}
    assert running.get(computing) == "busy", f"Bob's kernel still runs his code: {running}"
    log = hub_log(course)
    assert "stopping carol's server" in log and "for a student waiting in line" in log
    assert "stopping bob's server" not in log

    start_own_server(dave, course.url, "dave")  # opens his JupyterLab through the OAuth redirects
    assert execute(f"{course.url}/user/dave", "print(6 * 7)", session=dave).output.strip() == "42"


RESTORED = {"notes.txt": "last term's notes\n", "café/résumé ü.py": "print('encore')\n"}


def archive_of_erin(state: Path, tmp: Path) -> Path:
    """A course archive as `destroy` writes it, whose one student, erin, has GNU tar's gzip of RESTORED."""
    volume = tmp / "erin-volume"
    for name, text in RESTORED.items():
        (volume / name).parent.mkdir(parents=True, exist_ok=True)
        (volume / name).write_text(text)
    packed = tmp / "erin.tar.gz"
    subprocess.run(["tar", "--create", "--format=gnu", "--numeric-owner", "--owner=1000", "--group=100", "--gzip",
                    "--file", str(packed), "-C", str(volume), "."], check=True)
    data = packed.read_bytes()
    top = "last-term-20270110T120000Z"
    index = {"format": FORMAT, "course": "last-term", "made_at": "2027-01-10T12:00:00+00:00", "teaching": [],
             "students": [{"user": "erin", "file": "students/erin.tar.gz", "entries": 4, "bytes": len(data),
                           "sha256": hashlib.sha256(data).hexdigest()}]}
    archive = StateStore(state).archive_dir() / f"{top}.tar"
    with tarfile.open(archive, "w") as tar:
        for name, content in ((f"{top}/students/erin.tar.gz", data), (f"{top}/index.json", json.dumps(index).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return archive


def test_a_students_archived_files_are_restored_beside_their_own_and_never_over_them(course, tmp_path):
    hub = service_client(course)
    for done_with in {"bob", "dave"} & set(hub.running_servers()):  # free seats: nobody below waits in line
        hub.stop_server(done_with)
    archive = archive_of_erin(course.state_dir, tmp_path)
    assert [s["user"] for s in json.loads(hubfleet(course.env, "archives", "students", archive.name, "--json").stdout)] \
        == ["erin"]
    done = json.loads(hubfleet(course.env, "archives", "restore", archive.name, "erin", "--into", course.name,
                               "--json", timeout=600).stdout)
    folder = done["folder"]
    assert folder == "restored-last-term-20270110T120000Z" and done["host"] == course.host

    erin = login_with_password(course.url, "erin", course.extra["password"], verify=course.verify)
    start_own_server(erin, course.url, "erin", timeout=300)  # her first start: where the restored files are
    read = execute(f"{course.url}/user/erin", "import json, pathlib\n"
                   f"root = pathlib.Path({folder!r})\n"
                   "print(json.dumps({str(p.relative_to(root)): p.read_text() for p in root.rglob('*') if p.is_file()}))\n"
                   "_ = (root / 'notes.txt').open('a').write('and more\\n')",
                   session=erin)
    assert read.status == "ok" and json.loads(read.output) == RESTORED, read
    again = hubfleet(course.env, "archives", "restore", archive.name, "erin", "--into", course.name, check=False,
                     timeout=600)
    assert again.returncode != 0 and "cannot be restored now" in again.stderr, "not while her server runs"
    stop_own_server(erin, course.url, "erin")
    twice = hubfleet(course.env, "archives", "restore", archive.name, "erin", "--into", course.name, check=False,
                     timeout=600)
    assert twice.returncode != 0 and "already in the student's files" in twice.stderr + twice.stdout
    start_own_server(erin, course.url, "erin")
    kept = execute(f"{course.url}/user/erin", f"print(open({folder + '/notes.txt'!r}).read(), end='')", session=erin)
    assert kept.output == RESTORED["notes.txt"] + "and more\n", "her folder was never written over"


def test_a_student_takes_all_their_files_home_as_one_zip_and_nobody_elses(course, tmp_path):
    password = course.extra["password"]
    erin = login_with_password(course.url, "erin", password, verify=course.verify)
    home = erin.get(f"{course.url}/hub/home", timeout=30)
    assert home.status_code == 200 and 'id="export"' in home.text and "services/export/" in home.text
    dave = login_with_password(course.url, "dave", password, verify=course.verify)
    start_own_server(dave, course.url, "dave")
    execute(f"{course.url}/user/dave", "open('daves-own.txt', 'w').write('not for erin')", session=dave)

    start_own_server(erin, course.url, "erin", timeout=300)  # (a stopped server: the hub's page starts it first)
    page = erin.get(f"{course.url}/services/export/", timeout=120)  # on through the hub to her own server
    assert page.status_code == 200 and page.url.startswith(f"{course.url}/user/erin/hubfleet/export"), page.url
    assert "file(s)" in page.text and 'id="download"' in page.text
    started = time.monotonic()
    got = erin.get(f"{course.url}/user/erin/hubfleet/export/files.zip", timeout=300, stream=True)
    assert got.status_code == 200 and got.headers["Content-Type"] == "application/zip"
    assert "attachment" in got.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(got.content)) as made:
        names = made.namelist()
        folder = "restored-last-term-20270110T120000Z"
        assert made.read(f"{folder}/notes.txt").decode() == RESTORED["notes.txt"] + "and more\n"
        assert made.read(f"{folder}/café/résumé ü.py").decode() == RESTORED["café/résumé ü.py"]
        assert not any("daves-own" in n for n in names), "only her own volume"
        assert not any(n.endswith("jupyter_cookie_secret") for n in names), "Jupyter's secrets stay"
    print(f"export: {len(got.content)} bytes in {time.monotonic() - started:.1f} s")

    refused = dave.get(f"{course.url}/user/erin/hubfleet/export/files.zip", timeout=60, allow_redirects=False)
    assert refused.status_code in (302, 403) and refused.headers.get("Content-Type") != "application/zip", \
        "another student never gets her files"
    if refused.status_code == 302:
        followed = dave.get(refused.headers["Location"] if refused.headers["Location"].startswith("http")
                            else course.url + refused.headers["Location"], timeout=60)
        assert followed.headers.get("Content-Type") != "application/zip" and b"not for erin" not in followed.content
