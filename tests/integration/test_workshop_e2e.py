"""End to end on the embedded default: the workshop example becomes a real hub on Docker hosts.

One course for the whole module (CI time is precious); the tests run in file order and the
last ones destroy it. Everything talks to 127.0.0.1 or to containers this run created.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import tarfile
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests
import yaml

from hubfleet import tls
from hubfleet.providers.docker import acme_local
from hubfleet.jupyter import execute, login_with_password, start_own_server, stop_own_server
from hubfleet.state import StateStore
from tests.conftest import EXAMPLES, future
from tests.integration.cli_helpers import HUBFLEET, hubfleet, labelled

pytestmark = [pytest.mark.docker, pytest.mark.slow]

COURSE = "t-workshop"
SECOND = "t-second"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    yield {**os.environ, "HUBFLEET_STATE_DIR": str(state), "PYTHONUNBUFFERED": "1"}
    acme_local.stop_local_acme(state)  # the embedded ACME server the workshop's HTTPS came from


@pytest.fixture(scope="module", autouse=True)
def as_a_browser(env):
    """This process opens https://<course>.hub.localhost:<port> as Chromium does (*.localhost is loopback),
    its websockets trusting the embedded CA's root as a student who imported it (requests: see `course`)."""
    root = Path(env["HUBFLEET_STATE_DIR"]) / "acme-local" / "root.pem"
    with ExitStack() as stack, pytest.MonkeyPatch.context() as patch:
        for name in (COURSE, SECOND):
            stack.enter_context(tls.resolving_to_loopback(f"{name}.hub.localhost"))
        patch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", str(root))
        yield root


def descriptor(tmp_path_factory, name: str) -> Path:
    data = yaml.safe_load((EXAMPLES / "workshop.yaml").read_text())
    data.update(name=name, domain=f"{name}.hub.localhost", dates={"start": future(0), "end": future(7)})
    path = tmp_path_factory.mktemp(name) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def course(env, tmp_path_factory, as_a_browser):
    """Create the workshop once; yields what the tests need to reach it."""
    path = descriptor(tmp_path_factory, COURSE)
    started = time.monotonic()
    proc = hubfleet(env, "create", str(path))
    seconds = time.monotonic() - started
    creds = json.loads(hubfleet(env, "credentials", COURSE, "--json").stdout)
    status = json.loads(hubfleet(env, "status", COURSE, "--json", "--no-probe").stdout)
    with tls.trusting(as_a_browser):  # pebble's root exists once create has started it
        yield {"path": path, "output": proc.stdout + proc.stderr, "url": status["url"], "creds": creds,
               "seconds": seconds}
    if labelled(COURSE):  # a failed test left it behind: remove it without an archive
        hubfleet(env, "destroy", COURSE, "--yes", "--no-archive", check=False)


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


def test_rerun_converges_with_no_change(env, course):
    started = time.monotonic()
    proc = hubfleet(env, "create", str(course["path"]), "--json", "--no-probe")
    result = json.loads(proc.stdout)
    assert result["changed"] == 0, proc.stderr
    assert result["status"] == "ready"
    print(f"no-op re-run: {time.monotonic() - started:.1f} s")


def test_status_is_live(env, course):
    proc = hubfleet(env, "status", COURSE, "--json")
    status = json.loads(proc.stdout)
    assert status["healthy"] and status["health"]["probe"] is True
    assert status["health"]["users"] >= 1
    text = hubfleet(env, "status", COURSE).stdout
    assert "probe: started a server and ran code" in text


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


def test_second_course_side_by_side_and_interrupted_create_finishes(env, course, tmp_path_factory):
    path = descriptor(tmp_path_factory, SECOND)
    store = StateStore(Path(env["HUBFLEET_STATE_DIR"]))
    proc = subprocess.Popen([*HUBFLEET, "create", str(path), "--no-probe"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # interrupt once Ansible is configuring the host
        found = store.find(SECOND)
        if found and found.status == "configuring":
            break
        if proc.poll() is not None:
            pytest.fail("create finished before it could be interrupted:\n" + proc.stdout.read())
        time.sleep(0.2)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    assert store.get(SECOND).status in ("failed", "configuring")

    hubfleet(env, "create", str(path), "--no-probe")
    second = store.get(SECOND)
    assert second.status == "ready" and second.outputs["url"] != course["url"]
    assert json.loads(hubfleet(env, "status", COURSE, "--json", "--no-probe").stdout)["healthy"]


def test_host_that_disappeared_is_reported_and_blocks_the_archive(env):
    store = StateStore(Path(env["HUBFLEET_STATE_DIR"]))
    host = store.get(SECOND).hosts[0]["name"]
    subprocess.run(["docker", "rm", "-f", host], check=True, capture_output=True)
    status = hubfleet(env, "status", SECOND, check=False)
    assert status.returncode == 7 and f"host {host} has disappeared" in status.stderr
    refused = hubfleet(env, "destroy", SECOND, "--yes", check=False)
    assert refused.returncode == 6 and "nothing was removed" in refused.stderr
    assert store.get(SECOND).status != "archived"
    hubfleet(env, "destroy", SECOND, "--yes", "--no-archive")
    assert labelled(SECOND) == []


def test_destroy_archives_verifies_and_leaves_nothing(env, course):
    proc = hubfleet(env, "destroy", COURSE, "--yes")
    assert "archive verified" in proc.stderr
    archive = Path(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("archive:")))
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = tar.extractfile("MANIFEST.sha256").read().decode()
        member = next(n for n in names if n.endswith("hubfleet-user-alice/results.txt"))
        data = tar.extractfile(member).read()
    assert hashlib.sha256(data).hexdigest() == course["alice_checksum"]
    assert f"{course['alice_checksum']}  {member}" in manifest
    assert any(n.endswith("hub/jupyterhub.sqlite") for n in names)
    assert not any("hubfleet-probe" in n for n in names), "the probe user is not a student"
    assert labelled(COURSE) == []
    store = StateStore(Path(env["HUBFLEET_STATE_DIR"]))
    assert store.get(COURSE).status == "archived"
    assert not (store.dir / "instances" / COURSE).exists(), "keys and secrets are removed"
    assert json.loads(hubfleet(env, "list", "--json").stdout) == []
