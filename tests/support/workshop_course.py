"""The workshop course shared by test_tls.py and test_workshop_e2e.py (pytest plugin: one course per run).

A create costs a worker two to three minutes; the TLS checks (pebble's certificate over HTTP-01,
testssl.sh, a forced renewal, refused TLS input) need nothing but a workshop with a certificate
from the embedded ACME server, which the workshop is. Both modules are one unit of the suite
(tests/integration/conftest.py's SHARED), so they run on one worker, test_tls.py first; the
workshop's own last tests destroy the course (and the second course beside it).
"""

from __future__ import annotations

import json
import os
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from hubfleet import tls
from hubfleet.jupyter import login_with_password, start_own_server
from hubfleet.providers.docker import acme_local
from tests.conftest import EXAMPLES, future
from tests.integration.cli_helpers import hubfleet, labelled
from tests.integration.conftest import unique_course_name
from tests.support import egress_peers
from tests.support.courses import start_computing

COURSE = unique_course_name("t-workshop")  # unique per run: other runs may share this Docker engine
SECOND = unique_course_name("t-second")
DOMAIN = f"{COURSE}.hub.localhost"
HUB = f"{COURSE}-hub"
IDLE_TIMEOUT = 300  # the workshop's culling.idle_timeout here: the shortest a descriptor takes
SHARED_FILES = {"week 1/data.csv": "x,y\n1,2\n", "ünïcode ✓/read me.md": "# Bienvenue\n"}
COMPUTING = "import time\ntime.sleep(3600)  # prints nothing: only its kernel's being busy says she is working"


def descriptor_data(name: str, **changes) -> dict:
    data = yaml.safe_load((EXAMPLES / "workshop.yaml").read_text())
    data.update(name=name, domain=f"{name}.hub.localhost", dates={"start": future(0), "end": future(7)})
    data.update(changes)
    return data


@pytest.fixture(scope="session")
def workshop_env(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    yield {**os.environ, "HUBFLEET_STATE_DIR": str(state), "PYTHONUNBUFFERED": "1"}
    acme_local.stop_local_acme(state)  # the embedded ACME server the workshop's HTTPS came from


@pytest.fixture(scope="session")
def workshop_browser(workshop_env):
    """This process opens https://<course>.hub.localhost:<port> as Chromium does (*.localhost is loopback),
    its websockets trusting the embedded CA's root as a student who imported it (requests: see `workshop`)."""
    root = Path(workshop_env["HUBFLEET_STATE_DIR"]) / "acme-local" / "root.pem"
    with ExitStack() as stack, pytest.MonkeyPatch.context() as patch:
        for name in (COURSE, SECOND):
            stack.enter_context(tls.resolving_to_loopback(f"{name}.hub.localhost"))
        patch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", str(root))
        yield root


@pytest.fixture(scope="session")
def workshop_peers(workshop_env, tmp_path_factory):
    """The world outside the workshop for its egress tests (tests/support/egress_peers.py): networks and
    servers this run creates. The site file names their package index and operator range before the
    workshop is made, as an operator's would."""
    peers = egress_peers.plan_peers(f"hubfleet-test-{COURSE}")
    site = Path(workshop_env["HUBFLEET_STATE_DIR"]) / "site.yaml"
    site.write_text(yaml.safe_dump({"egress": peers.site_egress()}))
    try:
        egress_peers.start(peers, tmp_path_factory.mktemp("egress-peers"))
        yield peers
    finally:
        egress_peers.stop(peers, [HUB, f"{SECOND}-hub"])


@pytest.fixture(scope="session")
def workshop(workshop_env, workshop_browser, workshop_peers, tmp_path_factory):
    """Create the workshop once; yields what the tests need to reach it. Removed at the end if a test
    did not (the workshop's last tests destroy it with its archive)."""
    directory = tmp_path_factory.mktemp(COURSE)
    path = directory / f"{COURSE}.yaml"
    shared = directory / "shared-source"  # the course's shared folder starts with these (test_workshop_e2e.py)
    for name, text in SHARED_FILES.items():
        (shared / name).parent.mkdir(parents=True, exist_ok=True)
        (shared / name).write_text(text)
    path.write_text(yaml.safe_dump(descriptor_data(COURSE, culling={"idle_timeout": IDLE_TIMEOUT},
                                                   shared_data=str(shared))))
    try:
        started = time.monotonic()
        proc = hubfleet(workshop_env, "create", str(path))
        seconds = time.monotonic() - started
        creds = json.loads(hubfleet(workshop_env, "credentials", COURSE, "--json").stdout)
        status = json.loads(hubfleet(workshop_env, "status", COURSE, "--json", "--no-probe").stdout)
        hub = next(h for h in status["hosts"] if h["role"] == "hub")
        egress_peers.connect(workshop_peers, HUB)
        with tls.trusting(workshop_browser):  # pebble's root exists once create has started it
            idle = start_idle_and_computing(status["url"], creds)
            yield {"path": path, "shared": shared, "output": proc.stdout + proc.stderr, "url": status["url"],
                   "creds": creds,
                   "seconds": seconds, "status": status, "https": hub["https_port"], "http": hub["http_port"],
                   "root": str(workshop_browser), "dir": directory, "culling": idle}
    finally:
        for name in (COURSE, SECOND):
            if labelled(name):
                hubfleet(workshop_env, "destroy", name, "--yes", "--no-archive", check=False)


def start_idle_and_computing(url: str, creds: dict) -> dict:
    """The teacher (a course admin: the admin password) opens JupyterLab and leaves; the student "kim" starts
    a silent computation. What test_workshop_e2e.py's culling test needs to look at them later."""
    teacher = login_with_password(url, "teacher", creds["admin-password"])
    start_own_server(teacher, url, "teacher")
    teacher_in = time.time()
    kim = login_with_password(url, "kim", creds["shared-password"])
    start_own_server(kim, url, "kim")
    kernel = start_computing(url, kim, "kim", COMPUTING)
    return {"teacher_in": teacher_in, "kim": kim, "kernel": kernel, "computing_since": time.time()}

