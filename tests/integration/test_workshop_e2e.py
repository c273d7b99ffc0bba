"""End to end on the embedded default: the workshop example becomes a real hub on Docker hosts.

One course for the whole module (CI time is precious); the tests run in file order and the
last ones destroy it: killed with SIGKILL at each of its steps and run again until it is done,
then every awkward entry a student made is checked in the archive. A second course lives a term
beside it, driven by `hubfleet reconcile --now`: made before its start (the run killed half-way and
finished by the next), changed live (a new image, more students, everybody switched at a set moment) with
the end-of-term banner, backed up in its grace while nobody is on it, its host then removed
with every volume on it and made again by reconcile with the students' files from the backup, and
archived and removed after the grace. Everything talks to 127.0.0.1 or to containers this run created.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shlex
import signal
import struct
import subprocess
import tarfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import websocket
import yaml

from hubfleet import tls
from hubfleet.providers.docker import acme_local
from hubfleet.jupyter import (HubClient, cookie_for, execute, login_with_password, open_websocket, start_own_server,
                              stop_own_server)
from hubfleet.descriptor import load_course
from hubfleet.site import TermSite
from hubfleet.state import StateStore
from hubfleet.term import moment, term_of
from hubfleet.usernames import HEALTH_LOGIN, PROBE_USER, typed_username
from tests.conftest import EXAMPLES, future
from tests.integration.cli_helpers import HUBFLEET, hubfleet, labelled
from tests.support import awkward, egress_peers
from tests.support.smtp import body, running_inbox
from tests.support.workshop_course import COURSE, HUB, IDLE_TIMEOUT, SECOND, SHARED_FILES

pytestmark = [pytest.mark.docker, pytest.mark.slow]

pytest_plugins = ["tests.support.workshop_course"]


@pytest.fixture(scope="module")
def env(workshop_env):
    return workshop_env


@pytest.fixture(scope="module", autouse=True)
def as_a_browser(workshop_browser):
    return workshop_browser


@pytest.fixture(scope="module")
def course(workshop):
    """The workshop (tests/support/workshop_course.py): made once, test_tls.py's checks already run on it."""
    return workshop


def test_create_prints_url_and_how_to_log_in(course, as_a_browser):
    assert f"url: {course['url']}" in course["output"]
    assert course["url"].startswith(f"https://{COURSE}.hub.localhost:")
    assert f"CA certificate: {as_a_browser}" in course["output"]
    assert "shared password" in course["output"]
    assert course["creds"]["shared-password"] not in course["output"], "create must not print a secret"
    assert requests.get(course["url"] + "/hub/api/", timeout=10).json()["version"].startswith("6.")


def test_student_logs_in_runs_code_and_work_survives_restart(course):
    url, password = course["url"], course["creds"]["shared-password"]
    with pytest.raises(Exception, match="refused"):
        login_with_password(url, "mallory", "wrong-password")
    student = login_with_password(url, "alice", password)
    start_own_server(student, url, "alice")
    server = f"{url}/user/alice"
    code = ("import hashlib, pathlib; p = pathlib.Path('/home/jovyan/results.txt'); "
            "p.write_text('alice was here\\n' * 100); print(hashlib.sha256(p.read_bytes()).hexdigest())")
    written = execute(server, code, session=student)
    assert written.status == "ok", written.error
    checksum = written.output.strip()
    assert checksum == hashlib.sha256(b"alice was here\n" * 100).hexdigest()

    stop_own_server(student, url, "alice")
    start_own_server(student, url, "alice")
    again = execute(server, "print(open('/home/jovyan/results.txt').read().count('alice'))", session=student)
    assert again.output.strip() == "100"

    limits = execute(server, "print(open('/sys/fs/cgroup/memory/memory.limit_in_bytes').read())", session=student)
    assert int(limits.output.strip()) == 512 * 2**20
    course["alice_checksum"] = checksum
    course["alice"] = student


def test_a_student_makes_every_kind_of_entry_from_her_kernel(course):
    """Names with a Latin-1 byte, a newline, U+2028; links, hard links, empty folders, modes, large and sparse files."""
    made = execute(f"{course['url']}/user/alice", awkward.WRITE, session=course["alice"], timeout=300)
    assert made.status == "ok", made.error
    course["alice_awkward"] = json.loads(made.output)
    assert len(course["alice_awkward"]) > 50


def attempt_login(url: str, name: str, password: str) -> requests.Response:
    session = requests.Session()
    session.get(f"{url}/hub/login", timeout=30)
    return session.post(f"{url}/hub/login", data={"username": name, "password": password,
                                                   "_xsrf": cookie_for(session, "_xsrf", "/hub/login") or ""},
                        allow_redirects=False, timeout=30)


def test_the_hubs_own_names_are_refused_and_lookalikes_are_ordinary_students(course):
    url, creds = course["url"], course["creds"]
    for name in ("admin", "ADMIN", " Admin "):  # the operator's account: the admin password only
        assert attempt_login(url, name, creds["shared-password"]).status_code == 403
    for name in ("hubfleet-probe", PROBE_USER, "Hubfleet-Probe", "root", "idle-culler"):
        refused = attempt_login(url, name, creds["shared-password"])
        assert refused.status_code == 403 and "reserved for the hub itself" in refused.text, name
    admin = login_with_password(url, "admin", creds["admin-password"])
    assert admin.get(f"{url}/hub/api/users", timeout=30).status_code == 200
    names = {}
    for name in ("ａｄｍｉｎ", "José García", "Josè Garcìa", "JOSÉ GARCÍA"):
        student = login_with_password(url, name, creds["shared-password"])
        names[name] = student.get(f"{url}/hub/api/user", timeout=30).json()["name"]
        assert names[name] == typed_username(name)
        assert student.get(f"{url}/hub/api/users", timeout=30).status_code == 403, "no admin rights"
    assert names["ａｄｍｉｎ"].startswith("admin--")
    assert names["José García"] != names["Josè Garcìa"], "accents are not folded onto one account"
    assert names["JOSÉ GARCÍA"] == names["José García"], "a typed name's case does not count"
    course["lookalikes"] = sorted(set(names.values()))


def test_rerun_converges_with_no_change(env, course):
    started = time.monotonic()
    proc = hubfleet(env, "create", str(course["path"]), "--json", "--no-probe")
    result = json.loads(proc.stdout)
    assert result["changed"] == 0, proc.stderr
    assert result["status"] == "ready"
    print(f"no-op re-run: {time.monotonic() - started:.1f} s")


def test_status_is_live(env, course):
    """Healthy means a student gets in: status logs in at the form with the shared password (and removes
    the account it made: the users counted before and after are the same)."""
    proc = hubfleet(env, "status", COURSE, "--json")
    status = json.loads(proc.stdout)
    assert status["healthy"] and status["health"]["probe"] is True and status["health"]["student_login"] is True
    assert status["health"]["users"] >= 1
    text = hubfleet(env, "status", COURSE).stdout
    assert "probe: started a server and ran code" in text and "student login: a student got in" in text
    again = json.loads(hubfleet(env, "status", COURSE, "--json", "--no-probe").stdout)
    assert again["health"]["users"] == status["health"]["users"], "the check's own account is gone again"
    users = HubClient(course["url"], StateStore(Path(env["HUBFLEET_STATE_DIR"])).get_secret(COURSE, "hub-api-token"),
                      verify=tls.trust(Path(env["HUBFLEET_STATE_DIR"]), load_course(course["path"]))).users()
    assert HEALTH_LOGIN not in {u["name"] for u in users}


def test_list_shows_the_course(env, course):
    listed = json.loads(hubfleet(env, "list", "--json").stdout)
    assert [i["name"] for i in listed] == [COURSE] and listed[0]["url"] == course["url"]
    assert course["creds"]["shared-password"] not in hubfleet(env, "list").stdout


def test_destroy_refused_while_another_command_holds_the_course(env, course):
    store = StateStore(Path(env["HUBFLEET_STATE_DIR"]))
    with store.lock(COURSE, "create"):
        proc = hubfleet(env, "destroy", COURSE, "--yes", check=False)
    assert proc.returncode == 4
    assert "is busy" in proc.stderr and "`create` has been running" in proc.stderr
    assert labelled(COURSE), "nothing may be removed"


@pytest.fixture(scope="module")
def term(env, tmp_path_factory):
    """The second course's term, as an operator keeps it: its descriptor in a courses directory that
    `hubfleet reconcile` holds the fleet to, and the moments its dates give (the site's defaults). Its
    teachers are its contacts, mailed by reconcile through an SMTP server on 127.0.0.1 (the site's `mail`)."""
    directory = tmp_path_factory.mktemp("courses")
    data = yaml.safe_load((EXAMPLES / "workshop.yaml").read_text())
    data.update(name=SECOND, domain=f"{SECOND}.hub.localhost", dates={"start": future(30), "end": future(40)},
                contacts=CONTACTS, egress="open")  # the third egress mode (the workshop has the other two)
    path = directory / f"{SECOND}.yaml"
    path.write_text(yaml.safe_dump(data))
    site = Path(env["HUBFLEET_STATE_DIR"]) / "site.yaml"
    before = site.read_text() if site.exists() else None  # the workshop's egress section (workshop_peers)
    with running_inbox() as (inbox, port):
        site.write_text(yaml.safe_dump({**(yaml.safe_load(before or "{}") or {}), "mail": {
            "host": "127.0.0.1", "port": port, "sender": "hubs@example.edu", "starttls": False}}))
        yield {"dir": directory, "path": path, "data": data, "term": term_of(load_course(path), TermSite()),
               "inbox": inbox}
        if before is None:
            site.unlink()
        else:
            site.write_text(before)
    # The next image test_a_new_image_... builds, which the course's host made again needs too.
    subprocess.run(["docker", "image", "rm", f"hubfleet/notebook:{SECOND}"], capture_output=True)


CONTACTS = ["ada@example.edu", "grace@example.edu"]


def reconcile(env, term, when: dt.datetime, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return hubfleet(env, "reconcile", "--courses", str(term["dir"]), "--course", SECOND, "--now", when.isoformat(),
                    *args, check=check)


def test_reconcile_makes_the_second_course_warm_before_its_start_even_killed_half_way(env, course, term):
    """Side by side with the workshop: nothing before its time; made from warm_before, finished by the next run."""
    moments, store, hour = term["term"], StateStore(Path(env["HUBFLEET_STATE_DIR"])), dt.timedelta(hours=1)
    early = reconcile(env, term, moments.warm_at - hour)
    assert f"{SECOND} [waiting] wait: made from {moment(moments.warm_at)}" in early.stdout
    assert store.find(SECOND) is None and labelled(SECOND) == []
    assert f"would create: due since {moment(moments.warm_at)}" in reconcile(env, term, moments.warm_at + hour,
                                                                             "--dry-run").stdout
    assert store.find(SECOND) is None

    proc = subprocess.Popen([*HUBFLEET, "reconcile", "--courses", str(term["dir"]), "--course", SECOND,
                             "--now", (moments.warm_at + hour).isoformat()], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # killed, ansible and all, once Ansible is configuring the host
        found = store.find(SECOND)
        if found and found.status == "configuring":
            break
        if proc.poll() is not None:
            pytest.fail("reconcile finished before it could be killed:\n" + proc.stdout.read())
        time.sleep(0.2)
    time.sleep(3)
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(60)
    assert store.get(SECOND).status == "configuring"

    finished = reconcile(env, term, moments.warm_at + 2 * hour)
    assert f"{SECOND} [live] finish: done" in finished.stdout, finished.stdout
    second = store.get(SECOND)
    assert second.status == "ready" and second.outputs["url"] != course["url"]
    # Twice does nothing twice (its first backup is a day after it was made: the site's default).
    assert "[live] keep: healthy" in reconcile(env, term, moments.warm_at + 3 * hour).stdout
    assert json.loads(hubfleet(env, "status", COURSE, "--json", "--no-probe").stdout)["healthy"]
    events = [message for _, _, kind, message in store.events(SECOND) if kind == "reconcile"]
    assert events[-1] == "finish: done" and "create: done" not in events
    ready = term["inbox"].wait(1)[0]
    assert ready["Subject"] == f"[hubfleet] {SECOND} is ready" and ready["X-Envelope-To"] == ", ".join(CONTACTS)
    assert second.outputs["url"] in body(ready)
    assert json.loads(hubfleet(env, "credentials", SECOND, "--json").stdout)["shared-password"] not in body(ready)


def test_a_new_image_and_more_students_go_live_with_the_banner_and_her_work_is_kept(env, course, term,
                                                                                     workshop_peers):
    moments, store = term["term"], StateStore(Path(env["HUBFLEET_STATE_DIR"]))
    url = store.get(SECOND).outputs["url"]
    password = json.loads(hubfleet(env, "credentials", SECOND, "--json").stdout)["shared-password"]
    bob = login_with_password(url, "bob", password)
    start_own_server(bob, url, "bob")
    server = f"{url}/user/bob"
    open_egress_holds(store, url, bob, workshop_peers)
    wrote = execute(server, "open('/home/jovyan/essay.md', 'w').write('# bob, week 1\\n'); print('ok')", session=bob)
    assert wrote.output.strip() == "ok", wrote.error

    # The next image: the course's own with one mark, built here (seconds: no RUN step).
    image = f"hubfleet/notebook:{SECOND}"
    subprocess.run(["docker", "build", "-q", "-t", image, "-"], check=True, capture_output=True, text=True,
                   input=f"FROM {term['data']['image']}\nENV HUBFLEET_TERM_IMAGE=next\n")
    switch = moments.notice_at + dt.timedelta(hours=2)  # everybody gets the new image then, at once
    # Offered as two environments: the new image, the default, and the first one, leaner, as "lean".
    first = term["data"]["image"]
    changed = {**{k: v for k, v in term["data"].items() if k != "image"},
               "environments": [{"name": "python", "title": "Python, this week's", "image": image},
                                {"name": "lean", "title": "Lean <small> & quick", "image": first,
                                 "memory_per_user": "256Mi", "cpu_per_user": 0.25}],
               "load": {**term["data"]["load"], "students": 40}, "image_switch_at": switch.isoformat()}
    term["path"].write_text(yaml.safe_dump(changed))
    applied = reconcile(env, term, moments.notice_at + dt.timedelta(hours=1))
    assert f"{SECOND} [live] apply: done" in applied.stdout, applied.stdout
    recorded = store.get(SECOND)
    assert recorded.descriptor["image"] == image and recorded.descriptor["load"]["students"] == 40
    assert "last day is" in recorded.outputs["announcement"]
    ending = term["inbox"].wait(2)[1]
    assert ending["Subject"].startswith(f"[hubfleet] {SECOND} ends on ") and moment(moments.remove_at) in body(ending)

    # Her running server keeps the image it started with; the hub's pages carry the banner.
    mark = "import os; print(os.environ.get('HUBFLEET_TERM_IMAGE'))"
    assert execute(server, mark, session=bob).output.strip() == "None"
    home = bob.get(f"{url}/hub/home", timeout=30)
    assert 'id="hubfleet-banner"' in home.text and "Download your work before" in home.text
    assert "/services/export/" in home.text
    # At the switch moment her server (started before the change) is stopped; she starts again into
    # the new image, with her work.
    switched = reconcile(env, term, switch + dt.timedelta(minutes=5))
    assert f"{SECOND} [live] switch: done" in switched.stdout and "(1 server(s) stopped)" in switched.stdout, \
        switched.stdout
    start_own_server(bob, url, "bob")
    assert execute(server, mark, session=bob).output.strip() == "next"
    assert execute(server, "print(open('/home/jovyan/essay.md').read())", session=bob).output == "# bob, week 1\n\n"
    stop_own_server(bob, url, "bob")
    choose_the_lean_environment(url, password, image, first)

    # In the grace, nobody on the hub and its first backup due for days: backed up, his essay in it.
    grace = reconcile(env, term, moments.end_at + dt.timedelta(hours=1))
    assert f"{SECOND} [grace] backup: done" in grace.stdout, grace.stdout
    backup = store.get(SECOND).outputs["backup"]
    members = tarfile.open(backup["path"]).getnames()
    assert any(m.endswith("/students/bob.tar.gz") for m in members), members
    shown = hubfleet(env, "status", SECOND, "--no-probe").stdout
    assert f"last backup: {(moments.end_at + dt.timedelta(hours=1)).isoformat()}" in shown, shown
    again = reconcile(env, term, moments.end_at + dt.timedelta(hours=2))
    assert f"{SECOND} [grace] keep: healthy, students told to download their work" in again.stdout, again.stdout


def open_egress_holds(store, url: str, bob, peers) -> None:
    """The second course is `egress: open` from its start: from Bob's kernel the internet servers answer and pip
    installs directly (his server has no proxy setting); the operator's range, the metadata address and the
    host's own services never answer (another student's server: the workshop's modes, the same rule first)."""
    host = f"{SECOND}-hub"
    egress_peers.connect(peers, host)
    private = next(h for h in store.get(SECOND).hosts if h["role"] == "hub")["private_address"]
    targets = {"host ssh": (private, 22), "host https": (private, 443), "bridge ssh": ("198.18.0.1", 22),
               "hub api": (private, 8081)}
    ran = execute(f"{url}/user/bob", egress_peers.probe_code(peers, targets, "open"), session=bob, timeout=300)
    assert ran.status == "ok", ran.error
    found = json.loads(ran.output)
    assert found["index"] == "open" and found["elsewhere"] == "open" and found["proxy-variable"] == ""
    assert found["pip"] == 0 and found["probe"] == egress_peers.ANSWER, found["pip-said"]
    assert found["hub api"] == "open"
    never = {name: found[name] for name in ("operator", "metadata", "host ssh", "host https", "bridge ssh")}
    assert all(state != "open" for state in never.values()), never
    print(f"open: {never}")


def choose_the_lean_environment(url: str, password: str, image: str, first: str) -> None:
    """Both images on the host; the spawn page offers both, refuses a name it does not offer, and the second,
    chosen, runs its image with its own limits."""
    for offered in (image, first):
        assert subprocess.run(["docker", "exec", f"{SECOND}-hub", "docker", "image", "inspect", offered],
                              capture_output=True).returncode == 0, f"{offered} is not on the host"
    alice = login_with_password(url, "alice", password)
    page = alice.get(f"{url}/hub/spawn/alice", timeout=30)
    assert page.status_code == 200 and page.text.count('name="environment"') == 2, page.text[:2000]
    assert "Lean &lt;small&gt; &amp; quick" in page.text and "<small> &" not in page.text
    refused = alice.get(f"{url}/hub/spawn/alice?environment=matlab", timeout=30)
    assert "is not offered in this course" in refused.text and "python, lean" in refused.text
    assert alice.get(f"{url}/hub/api/users/alice", timeout=30).json().get("servers") in ({}, None)
    xsrf = cookie_for(alice, "_xsrf", "/hub/spawn/alice")
    posted = alice.post(f"{url}/hub/spawn/alice", data={"environment": "lean", "_xsrf": xsrf or ""}, timeout=60,
                        allow_redirects=False)
    assert posted.status_code in (302, 303), posted.text[:500]
    start_own_server(alice, url, "alice")  # waits for the server the form started, and opens it
    shown = execute(f"{url}/user/alice", "import os; print(os.environ.get('HUBFLEET_TERM_IMAGE'), "
                    "os.environ['JUPYTER_IMAGE_SPEC'], os.environ['MEM_LIMIT'], os.environ['CPU_LIMIT'])",
                    session=alice).output.split()
    assert shown == ["None", first, str(256 * 2**20), "0.25"], shown
    stop_own_server(alice, url, "alice")
    # Where an LTI link's custom_next=/hub/spawn?environment=lean sends a student after the launch: no page to
    # choose on, her server starts in that environment.
    carol = login_with_password(url, "carol", password)
    assert carol.get(f"{url}/hub/spawn?environment=lean", timeout=60).status_code == 200
    start_own_server(carol, url, "carol")
    assert execute(f"{url}/user/carol", "import os; print(os.environ['JUPYTER_IMAGE_SPEC'])",
                   session=carol).output.strip() == first
    stop_own_server(carol, url, "carol")


DESKTOP = "hubfleet/desktop:latest"  # images/desktop, built by scripts/images.sh


def rfb_screen(ws) -> tuple[int, int, str]:
    """The VNC server's screen over the websocket: RFB 3.8 with security None (docs/web-apps.md), then
    ServerInit's width, height and desktop name."""
    buffer = b""

    def read(count: int) -> bytes:
        nonlocal buffer
        while len(buffer) < count:
            buffer += ws.recv()
        chunk, buffer = buffer[:count], buffer[count:]
        return chunk

    assert read(12) == b"RFB 003.008\n"
    ws.send_binary(b"RFB 003.008\n")
    offered = read(read(1)[0])
    assert 1 in offered, f"security types {list(offered)}: the hub is the desktop's only lock"
    ws.send_binary(bytes([1]))
    assert struct.unpack(">I", read(4))[0] == 0, "security result"
    ws.send_binary(bytes([1]))  # ClientInit: share the desktop
    width, height = struct.unpack(">HH", read(4))
    read(16)  # pixel format
    name = read(struct.unpack(">I", read(4))[0]).decode()
    return width, height, name


def a_desktop_behind_the_hub(url: str, password: str) -> None:
    """The desktop environment (images/desktop): Dora picks it as an LTI link would; its noVNC page and the VNC
    server behind it answer her through the hub; nobody logged out, nor Alice, reaches it."""
    dora = login_with_password(url, "dora", password)
    assert dora.get(f"{url}/hub/spawn?environment=desktop", timeout=60).status_code == 200
    start_own_server(dora, url, "dora")
    page = dora.get(f"{url}/user/dora/desktop/", timeout=60)
    assert page.status_code == 200 and "<title>Jupyter Remote Desktop Proxy</title>" in page.text, page.text[:300]
    ws = open_websocket(dora, f"{url}/user/dora/desktop-websockify/", timeout=60)
    try:
        width, height, name = rfb_screen(ws)
    finally:
        ws.close()
    assert (width, height) == (1680, 1050) and "(jovyan)" in name, (width, height, name)
    stranger = requests.Session()
    stranger.verify = dora.verify
    away = stranger.get(f"{url}/user/dora/desktop/", timeout=60)
    assert urlsplit(away.url).path == "/hub/login" and "Jupyter Remote Desktop Proxy" not in away.text, away.url
    with pytest.raises(websocket.WebSocketBadStatusException):
        open_websocket(stranger, f"{url}/user/dora/desktop-websockify/", timeout=30)
    alice = login_with_password(url, "alice", password)
    other = alice.get(f"{url}/user/dora/desktop/", timeout=60)
    assert other.status_code in (403, 404) and "Jupyter Remote Desktop Proxy" not in other.text, other.status_code
    stop_own_server(dora, url, "dora")
    print(f"desktop through the hub: {width}x{height} {name!r}")


def test_a_host_that_vanished_with_its_disks_is_made_again_with_the_students_files(env, term):
    """The host and its engine's volume (every student's volume with it) removed in the grace: status says so,
    a destroy refuses to remove anything unarchived; reconcile makes the host again and Bob finds his essay
    restored from the last backup; after the grace reconcile archives and removes the course."""
    store = StateStore(Path(env["HUBFLEET_STATE_DIR"]))
    host = store.get(SECOND).hosts[0]["name"]
    subprocess.run(["docker", "rm", "-f", host], check=True, capture_output=True)
    subprocess.run(["docker", "volume", "rm", f"{host}-docker"], check=True, capture_output=True)
    status = hubfleet(env, "status", SECOND, check=False)
    assert status.returncode == 7 and f"host {host} has disappeared" in status.stderr
    refused = hubfleet(env, "destroy", SECOND, "--yes", check=False)
    assert refused.returncode == 6 and "nothing was removed" in refused.stderr

    backup = Path(store.get(SECOND).outputs["backup"]["path"])
    repaired = reconcile(env, term, term["term"].end_at + dt.timedelta(hours=3))
    assert f"{SECOND} [grace] repair: done" in repaired.stdout, repaired.stdout
    assert f"host(s) {host} made again; the files of" in repaired.stdout
    url = store.get(SECOND).outputs["url"]
    password = json.loads(hubfleet(env, "credentials", SECOND, "--json").stdout)["shared-password"]
    bob = login_with_password(url, "bob", password)
    start_own_server(bob, url, "bob")
    folder = f"restored-{backup.name.removesuffix('.tar')}"
    read = execute(f"{url}/user/bob", f"print(open('/home/jovyan/{folder}/essay.md').read(), end='')", session=bob)
    assert read.output == "# bob, week 1\n", read.error or read.output
    stop_own_server(bob, url, "bob")

    over = reconcile(env, term, term["term"].remove_at + dt.timedelta(hours=1))
    assert f"{SECOND} [over] destroy: done" in over.stdout, over.stdout
    assert store.get(SECOND).status == "archived" and labelled(SECOND) == []
    archived = term["inbox"].wait(3)[2]
    assert archived["Subject"] == f"[hubfleet] {SECOND} is archived"
    assert Path(store.get(SECOND).outputs["archive"]["path"]).name in body(archived)
    assert term["inbox"].subjects()[:2] == [f"[hubfleet] {SECOND} is ready", ending_subject(term)]
    assert len(term["inbox"].messages) == 3, "each notice once, whatever the runs between"


def test_the_idle_culler_stopped_the_idle_teacher_and_never_the_silent_computation(env, course):
    """Made with the course (tests/support/workshop_course.py), many minutes ago: the teacher's JupyterLab,
    untouched since, was culled after the 300 s idle_timeout; Kim's kernel, busy printing nothing all that
    time, still runs, and the hub's record of her activity is fresh (her server reports a busy kernel as
    activity: the notebook image's hubfleet_computing)."""
    seen = course["culling"]
    store = StateStore(Path(env["HUBFLEET_STATE_DIR"]))
    hub = HubClient(course["url"], store.get_secret(COURSE, "hub-api-token"),
                    verify=tls.trust(Path(env["HUBFLEET_STATE_DIR"]), load_course(course["path"])))
    deadline = seen["teacher_in"] + IDLE_TIMEOUT + 240  # a cull round a minute, activity reported each minute
    while "teacher" in hub.running_servers():  # long past already when the suite runs in file order
        assert time.time() < deadline, "the teacher's idle server was not culled"
        time.sleep(5)
    log = subprocess.run(["docker", "exec", HUB, "journalctl", "-u", "jupyterhub", "--no-pager", "-o", "cat"],
                         capture_output=True, text=True, timeout=60).stdout
    assert "Culling server teacher" in log, "the idle culler stopped the teacher's server"
    # Kim's silence must outlast the timeout by two cull rounds before it tells anything: on a fast run the
    # module gets here sooner, so it waits for that moment (at most IDLE_TIMEOUT + 120 s after she started).
    time.sleep(max(0.0, seen["computing_since"] + IDLE_TIMEOUT + 120 - time.time()))
    log = subprocess.run(["docker", "exec", HUB, "journalctl", "-u", "jupyterhub", "--no-pager", "-o", "cat"],
                         capture_output=True, text=True, timeout=60).stdout
    busy_for = time.time() - seen["computing_since"]
    assert "kim" in hub.running_servers() and "Culling server kim" not in log, \
        f"Kim's computation, silent for {busy_for:.0f} s, was culled"
    kim = next(u for u in hub.users() if u["name"] == "kim")
    reported = dt.datetime.fromisoformat(kim["servers"][""]["last_activity"].replace("Z", "+00:00")).timestamp()
    assert time.time() - reported < 180, f"her last activity as the hub knows it: {time.time() - reported:.0f} s ago"
    kernels = seen["kim"].get(f"{course['url']}/user/kim/api/kernels", timeout=30).json()
    assert {k["id"]: k["execution_state"] for k in kernels}.get(seen["kernel"]) == "busy"
    print(f"teacher culled; Kim's silent computation kept after {busy_for:.0f} s")


# --- the course's shared folder (docs/shared-data.md) ---------------------------------------------------------

SHARED = "/home/jovyan/shared"
READ_SHARED = f"""
import json, os, pathlib
root = pathlib.Path({SHARED!r})
found = {{str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}}
try:
    (root / "mine.txt").write_text("a student's")
    found["written"] = "yes"
except OSError as exc:
    found["written"] = type(exc).__name__ + " " + str(exc.errno)
try:
    os.remove(root / "week 1" / "data.csv")
    found["removed"] = "yes"
except OSError as exc:
    found["removed"] = type(exc).__name__
print(json.dumps(found))
"""


def shared_seen_by(course, student: str, session) -> dict:
    ran = execute(f"{course['url']}/user/{student}", READ_SHARED, session=session)
    assert ran.status == "ok", ran.error
    return json.loads(ran.output)


def test_every_student_reads_the_shared_folder_a_teacher_writes_it_and_students_see_it_at_once(course):
    """The workshop was made with a shared folder filled from a directory (tests/support/workshop_course.py).
    Alice reads it and can neither add nor remove a file; the teacher (a course admin) is placed on the hub's
    node, writes a note there from her kernel, and Alice's running server sees it at once."""
    url = course["url"]
    alice = login_with_password(url, "alice", course["creds"]["shared-password"])
    start_own_server(alice, url, "alice")
    seen = shared_seen_by(course, "alice", alice)
    assert {name: seen[name] for name in SHARED_FILES} == SHARED_FILES
    assert seen["written"] == "OSError 30" and seen["removed"] == "OSError", "read-only for a student (EROFS)"
    teacher = login_with_password(url, "teacher", course["creds"]["admin-password"])
    start_own_server(teacher, url, "teacher")
    wrote = execute(f"{url}/user/teacher", "import pathlib; p = pathlib.Path('/home/jovyan/shared/from the teacher.md'); "
                    "p.write_text('Exercise 2 is online\\n'); print(p.stat().st_uid)", session=teacher)
    assert wrote.status == "ok" and wrote.output.strip() == "1000", wrote.error
    seen = shared_seen_by(course, "alice", alice)
    assert seen["from the teacher.md"] == "Exercise 2 is online\n" and seen["written"] == "OSError 30"
    stop_own_server(teacher, url, "teacher")
    course["alice"] = alice


# --- egress: where a student's server may connect to (docs/egress.md) -----------------------------------------


def on_hub_host(command: str, timeout: float = 120) -> str:
    return subprocess.run(["docker", "exec", HUB, "sh", "-c", command], capture_output=True, text=True, check=True,
                          timeout=timeout).stdout.strip()


def server_of(student: str) -> tuple[str, int]:
    """The student's server container on the hub host: its docker0 address (port 8888) and its published port."""
    container = on_hub_host(f"docker ps -q --filter name=jupyter-{student}.")
    address = on_hub_host(f"docker inspect {container} --format '{{{{.NetworkSettings.Networks.bridge.IPAddress}}}}'")
    published = on_hub_host(f"docker port {container} 8888").splitlines()[0].rsplit(":", 1)[1]
    return address, int(published)


def reached_from_the_host(address: str, port: int) -> bool:
    code = f"import socket; s = socket.socket(); s.settimeout(5); print(s.connect_ex(({address!r}, {port})))"
    return on_hub_host(f"python3 -c {shlex.quote(code)}") == "0"


@pytest.fixture(scope="module")
def reach(course, workshop_peers):
    """What Alice's kernel tries besides the peers: Kim's server (her container, her published port on the node),
    the host's own SSH and HTTPS on its course address and its bridge address, and the hub API it needs."""
    url = course["url"]
    alice = login_with_password(url, "alice", course["creds"]["shared-password"])
    start_own_server(alice, url, "alice")  # the idle culler may have stopped her since
    private = next(h for h in course["status"]["hosts"] if h["role"] == "hub")["private_address"]
    kim_address, kim_published = server_of("kim")
    targets = {"kim's server": (kim_address, 8888), "kim's published port": (private, kim_published),
               "host ssh": (private, 22), "host https": (private, 443), "bridge ssh": ("198.18.0.1", 22),
               "hub api": (private, 8081)}
    every = {**{name: (address, egress_peers.PORT) for name, address in workshop_peers.servers.items()}, **targets}
    unreached = [name for name, where in every.items() if not reached_from_the_host(*where)]
    assert not unreached, f"the hub host itself must reach them all (else a refusal proves nothing): {unreached}"
    return {"alice": alice, "targets": targets, "runs": 0}


def probe(course, peers, reach) -> dict:
    reach["runs"] += 1
    code = egress_peers.probe_code(peers, reach["targets"], str(reach["runs"]))
    ran = execute(f"{course['url']}/user/alice", code, session=reach["alice"], timeout=300)
    assert ran.status == "ok", ran.error
    return json.loads(ran.output)


NEVER = ("operator", "metadata", "kim's server", "kim's published port", "host ssh", "host https", "bridge ssh")


def change_egress(env, course, mode: str, **more) -> None:
    data = yaml.safe_load(course["path"].read_text())
    was = data.get("egress", "package-index")
    data.update(egress=mode, **more)
    course["path"].write_text(yaml.safe_dump(data))
    diff = hubfleet(env, "plan", str(course["path"]), "--diff").stdout
    assert f"egress: {was} → {mode}" in diff and "firewall changes at once" in diff, diff
    result = json.loads(hubfleet(env, "create", str(course["path"]), "--json", "--no-probe").stdout)
    assert result["status"] == "ready"


def test_package_index_a_course_that_said_nothing_installs_from_the_index_and_reaches_nothing_else(
        env, course, workshop_peers, reach):
    """The workshop's descriptor has no `egress`: package-index, with the site's one index (a server this run
    started on a network it created). pip installs from it through the host's proxy; nothing else answers, directly
    or through the proxy; Kim's server, the host's services, the operator's range and the metadata address never."""
    found = probe(course, workshop_peers, reach)
    assert found["pip"] == 0, found["pip-said"]
    assert found["probe"] == egress_peers.ANSWER
    assert found["proxy-variable"] == "http://198.18.0.1:3128"
    assert found["via-proxy"]["index"] == "index"
    assert {name: found["via-proxy"][name] for name in ("elsewhere", "operator", "metadata")} == {
        "elsewhere": "HTTPError 403", "operator": "HTTPError 403", "metadata": "HTTPError 403"}, found["via-proxy"]
    assert found["hub api"] == "open"
    refused = {name: found[name] for name in ("index", "elsewhere", *NEVER)}
    assert all(state != "open" for state in refused.values()), refused
    print(f"package-index: {refused}")


def test_none_refuses_the_index_too_at_once_for_the_running_server(env, course, workshop_peers, reach):
    """`egress: none` applied to the live course: Alice's server, started under package-index and still running
    with its proxy setting, reaches nothing now, not even the index; no server was restarted for it."""
    alice_before = on_hub_host("docker ps -q --filter name=jupyter-alice.")
    # The shared folder's source changes too: the same create fills it again (the next test looks).
    (course["shared"] / "week 2.md").write_text("# Week 2\n")
    (course["shared"] / "week 1" / "data.csv").write_text("x,y\n1,2\n3,4\n")
    # And the desktop is offered beside the course's image (its test follows).
    image = yaml.safe_load(course["path"].read_text())["image"]
    change_egress(env, course, "none", environments=[
        {"name": "python", "title": "Python", "image": image},
        {"name": "desktop", "title": "A Linux desktop", "image": DESKTOP, "memory_per_user": "1Gi"}])
    assert on_hub_host("docker ps -q --filter name=jupyter-alice.") == alice_before, "her server kept running"
    found = probe(course, workshop_peers, reach)
    assert found["proxy-variable"] == "http://198.18.0.1:3128", "the same server, started before the change"
    assert found["pip"] != 0 and "hubfleet-egress-probe" in found["pip-said"]
    assert all(not answer.startswith(("index", "elsewhere")) for answer in found["via-proxy"].values()), found
    assert found["hub api"] == "open"
    assert all(found[name] != "open" for name in ("index", "elsewhere", *NEVER)), found
    assert on_hub_host("systemctl is-active tinyproxy || true") == "inactive"


def test_the_desktop_answers_through_the_hub_and_not_without_a_login(course):
    a_desktop_behind_the_hub(course["url"], course["creds"]["shared-password"])


def test_a_changed_source_reaches_the_shared_folder_and_the_teachers_note_stays(course):
    """Between the last two creates (egress none) the folder's source gained a file and changed one: the
    create filled the folder again from it; what the teacher wrote there is still there."""
    seen = shared_seen_by(course, "alice", course["alice"])
    assert seen["week 2.md"] == "# Week 2\n" and seen["week 1/data.csv"] == "x,y\n1,2\n3,4\n"
    assert seen["from the teacher.md"] == "Exercise 2 is online\n" and seen["ünïcode ✓/read me.md"] == "# Bienvenue\n"


def test_the_rules_come_back_after_a_docker_restart_and_a_reboot_of_the_host(env, course, workshop_peers):
    """A restart of the engine and a reboot of the host both find the rules in place before any container
    runs: a fresh container on the hub host's bridge reaches none of the servers the host itself reaches (the
    course is `none` now)."""
    check = ("import json, socket\nfound = {}\nfor name, address in %r.items():\n"
             "    s = socket.socket(); s.settimeout(5)\n"
             "    found[name] = s.connect_ex((address, %d)) == 0\n    s.close()\nprint(json.dumps(found))"
             % (workshop_peers.servers, egress_peers.PORT))

    def from_a_fresh_container() -> dict:
        image = on_hub_host("docker image ls --format '{{.Repository}}:{{.Tag}}' hubfleet/notebook | head -1")
        return json.loads(on_hub_host(f"docker run --rm --entrypoint python3 {image} -c {shlex.quote(check)}"))

    expected = {"index": False, "elsewhere": False, "operator": False, "metadata": False}
    assert from_a_fresh_container() == expected
    # What a reboot leaves: no rules at all. The engine's restart applies them again before it starts.
    on_hub_host("iptables -D DOCKER-USER -i docker0 -j HUBFLEET-EGRESS; iptables -D INPUT -i docker0 -j "
                "HUBFLEET-EGRESS-HOST; iptables -F HUBFLEET-EGRESS; iptables -F HUBFLEET-EGRESS-HOST")
    on_hub_host("systemctl restart docker", timeout=300)
    assert on_hub_host("iptables -S DOCKER-USER").splitlines()[1] == "-A DOCKER-USER -i docker0 -j HUBFLEET-EGRESS"
    assert from_a_fresh_container() == expected
    # A real reboot: the host's container restarted, systemd boots it, the unit runs before the engine.
    subprocess.run(["docker", "restart", HUB], check=True, capture_output=True, timeout=300)
    deadline = time.monotonic() + 240
    while on_hub_host("systemctl is-active docker || true") != "active":
        assert time.monotonic() < deadline, "the host's engine did not come back after the reboot"
        time.sleep(2)
    assert on_hub_host("systemctl is-active hubfleet-egress") == "active"
    assert from_a_fresh_container() == expected
    # The course comes back with its host: its address and port as this machine now publishes them.
    status = json.loads(hubfleet(env, "status", COURSE, "--json").stdout)
    hub = next(h for h in status["hosts"] if h["role"] == "hub")
    course.update(url=status["url"], https=hub["https_port"], http=hub["http_port"], status=status)
    assert status["healthy"], status


def ending_subject(term) -> str:
    return f"[hubfleet] {SECOND} ends on {term['term'].end_at.date() - dt.timedelta(days=1)}"


def descendants(pid: int) -> list[int]:
    """Every process under `pid` (ansible-playbook and its ssh), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def destroy_killed_when(env, store, when, what: str) -> bool:
    """Run `destroy`; SIGKILL it and everything it started once `when(instance, messages since it started)`
    holds. False: it finished."""
    before = max([event_id for event_id, *_ in store.events(COURSE)], default=0)
    proc = subprocess.Popen([*HUBFLEET, "destroy", COURSE, "--yes"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read()
            assert proc.returncode == 0, output
            return False
        instance = store.find(COURSE)
        if instance is not None and when(instance, [m for _, _, _, m in store.events(COURSE, after_id=before)]):
            for pid in [proc.pid, *descendants(proc.pid)]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(30)
            print(f"killed destroy {what}")
            return True
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"destroy neither finished nor reached the point {what} in time")


def step(instance) -> str:
    return (instance.outputs.get("destroy") or {}).get("step", "")


def test_destroy_killed_at_each_step_finishes_with_the_archive_recorded(env, course):
    store = StateStore(Path(env["HUBFLEET_STATE_DIR"]))
    started = time.monotonic()
    archiving_task = "Archive each student's volume, compare it with the volume, and gather them in the host's part"

    assert destroy_killed_when(env, store, lambda i, new: step(i) == "archiving" and archiving_task in new,
                               "while the host archives")
    assert store.get(COURSE).status == "destroying" and not store.get(COURSE).outputs.get("archive")
    assert labelled(COURSE), "nothing removed"
    assert destroy_killed_when(env, store, lambda i, new: bool(i.outputs.get("archive")), "once the archive is recorded")
    recorded = store.get(COURSE).outputs["archive"]
    assert destroy_killed_when(env, store, lambda i, new: "removing hosts, volumes and networks" in new,
                               "while removing the hosts")
    # The last run is the term's: long after the course's end, reconcile finishes the destroy.
    after = (dt.date.today() + dt.timedelta(days=60)).isoformat()
    finished = hubfleet(env, "reconcile", "--course", COURSE, "--now", after)
    assert f"{COURSE} [over] destroy: done" in finished.stdout, finished.stdout
    instance = store.get(COURSE)
    assert instance.status == "archived" and instance.outputs["archive"] == recorded
    print(f"destroy, killed three times, done in {time.monotonic() - started:.0f} s")
    course["archive"] = recorded


def test_the_archive_holds_every_entry_byte_for_byte_and_no_hub_secret(env, course, tmp_path):
    recorded = course["archive"]
    archive = Path(recorded["path"])
    assert archive.stat().st_mode & 0o777 == 0o600
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        top = names[0].split("/")[0]
        index = json.loads(tar.extractfile(f"{top}/index.json").read())
    users = {s["user"] for s in index["students"]}
    assert "alice" in users and set(course["lookalikes"]) & users == set(), "no server, no volume"
    assert PROBE_USER not in users and not any("probe" in n for n in names), "the probe is not a student"
    assert not any("sqlite" in n or "cookie" in n for n in names), "the hub's database stays with the operator"
    alice, extracted = awkward.student_archive(archive, "alice", tmp_path)
    assert alice["sockets_skipped"] == [f"{awkward.FOLDER}/kernel.sock"]
    assert awkward.manifest(extracted / awkward.FOLDER) == course["alice_awkward"], "every entry, byte for byte"
    results = (extracted / "results.txt").read_bytes()
    assert hashlib.sha256(results).hexdigest() == course["alice_checksum"]
    sparse = os.stat(extracted / awkward.FOLDER / "sparse.img")
    assert sparse.st_size == 256 * 2**20 and sparse.st_blocks * 512 < 2**20, "sparse in the archive too"
    assert ".local/share/jupyter/runtime" in alice["kept_apart"], "her server's cookie secret and token"
    assert not (extracted / ".local" / "share" / "jupyter" / "runtime").exists()
    restore = Path(recorded["restore"])
    assert restore.stat().st_mode & 0o777 == 0o600 and restore.parent.stat().st_mode & 0o777 == 0o700
    with tarfile.open(restore) as tar:
        kept = {name.split("/", 1)[1] for name in tar.getnames()}
        with tarfile.open(fileobj=tar.extractfile(f"{restore.name.removesuffix('.tar')}/hub-data.tar.gz")) as hub:
            assert "jupyterhub/jupyterhub.sqlite" in hub.getnames()
    assert {"hub-data.tar.gz", "secrets/alice.tar.gz"} <= kept, "the operator keeps what the teacher may not see"
    (shared,) = [entry for entry in index["teaching"] if entry["name"] == "shared"]
    with tarfile.open(archive) as tar, tarfile.open(fileobj=tar.extractfile(f"{top}/{shared['file']}")) as folder:
        files = {m.name.removeprefix("./"): folder.extractfile(m).read() for m in folder if m.isfile()}
    assert files["from the teacher.md"] == b"Exercise 2 is online\n" and files["week 2.md"] == b"# Week 2\n", files


def test_archives_lists_the_real_archive_and_prunes_it_after_the_keep_time(env, course):
    recorded = course["archive"]
    archive, restore = Path(recorded["path"]), Path(recorded["restore"])
    listed = json.loads(hubfleet(env, "archives", "list", "--course", COURSE, "--json").stdout)
    assert [(a["course"], a["path"], a["sha256"], a["bytes"]) for a in listed] == [
        (COURSE, str(archive), recorded["sha256"], archive.stat().st_size)]
    seconds = json.loads(hubfleet(env, "archives", "list", "--course", SECOND, "--json").stdout)
    assert len(seconds) == 2 and all(a["students"] is not None for a in seconds), \
        "the second course's backup and its last archive, each readable"
    assert listed[0]["students"] >= 1 and listed[0]["restore"] == str(restore)
    made = dt.datetime.fromisoformat(listed[0]["made_at"])
    assert abs((dt.datetime.now(dt.timezone.utc) - made).total_seconds()) < 3600, "the date inside the archive"
    later = (made + dt.timedelta(days=31)).isoformat()
    kept = hubfleet(env, "archives", "prune", "--keep-days", "31", "--now", later, "--yes")
    # The second course's backup and archive, made minutes before, go: 31 days and a few minutes old then.
    assert "removed 2 archive(s) older than 31 day(s)" in kept.stderr and archive.exists(), kept.stderr
    assert json.loads(hubfleet(env, "archives", "list", "--course", SECOND, "--json").stdout) == []
    hubfleet(env, "archives", "prune", "--keep-days", "30", "--now", later, "--yes")
    assert not archive.exists() and not restore.exists()
    assert json.loads(hubfleet(env, "archives", "list", "--json").stdout) == []


def test_everything_is_gone_and_the_embedded_acme_server_stopped(env, course):
    assert labelled(COURSE) == []
    store = StateStore(Path(env["HUBFLEET_STATE_DIR"]))
    assert not (store.dir / "instances" / COURSE).exists(), "keys and secrets are removed"
    assert json.loads(hubfleet(env, "list", "--json").stdout) == []
    network = acme_local.network_name(store.dir)
    assert subprocess.run(["docker", "network", "inspect", network], capture_output=True).returncode != 0
    directory = acme_local.acme_dir(store.dir)
    assert acme_local._pid(directory, "pebble") is None and acme_local._pid(directory, "challtestsrv") is None
