"""Courses for the authenticator tests, made and removed through the real CLI on Docker hosts.

A peer the hub must reach (LTI 1.3 platform, slapd) listens on the course network's gateway, the
address of this machine as the host container sees it. The network is made first, labelled as
the Docker provider labels its own, so the peer can bind to it before `hubfleet create` runs;
the provider then finds it and `destroy` removes it with the rest.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

import pytest
import requests
import websocket
import yaml

from hubfleet import tls
from hubfleet.providers.docker import acme_local
from hubfleet.descriptor import parse_course
from hubfleet.jupyter import HubClient, _ws_url, cookie_for, execute_request
from hubfleet.providers.docker import LABEL_COURSE, LABEL_MANAGED, DockerProvider
from hubfleet.state import StateStore
from tests.conftest import future

HUBFLEET = [sys.executable, "-m", "hubfleet"]


@dataclass
class TestCourse:
    __test__ = False  # not a pytest test class

    name: str
    url: str
    env: dict
    output: str
    seconds: float
    verify: bool | str = True  # what a student's browser trusts: the embedded ACME root for local TLS
    extra: dict = field(default_factory=dict)

    @property
    def host(self) -> str:
        """The hub host's container."""
        return f"{self.name}-hub"

    @property
    def state_dir(self) -> Path:
        return Path(self.env["HUBFLEET_STATE_DIR"])

    def session(self) -> requests.Session:
        """A student's browser: trusts the course's CA, keeps cookies."""
        session = requests.Session()
        session.verify = self.verify
        return session


@contextmanager
def reaching(course: TestCourse) -> Iterator[None]:
    """Inside, this process reaches the (HTTPS) course by its *.localhost name, as Chromium does, trusting
    the embedded ACME server's root as a student who imported it: requests and kernel websockets."""
    host = urlsplit(course.url).hostname or ""
    with ExitStack() as stack:
        if course.url.startswith("https://") and host.endswith(".localhost"):
            stack.enter_context(tls.resolving_to_loopback(host))
        if isinstance(course.verify, str):  # REQUESTS_CA_BUNDLE would override a session's own CA
            stack.enter_context(tls.trusting(Path(course.verify)))
            patch = stack.enter_context(pytest.MonkeyPatch.context())
            patch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", course.verify)
        yield


def hubfleet(env: dict, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*HUBFLEET, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"hubfleet {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def course_env(state: Path, **extra: str) -> dict:
    return {**os.environ, "HUBFLEET_STATE_DIR": str(state), "PYTHONUNBUFFERED": "1", **extra}


def ensure_course_network(name: str, workdir: Path) -> str:
    """Make the course's Docker network now (as the provider would) and return its gateway address."""
    network = DockerProvider(name, workdir, lambda message: None).network_name
    if subprocess.run(["docker", "network", "inspect", network], capture_output=True).returncode != 0:
        subprocess.run(["docker", "network", "create", "--label", f"{LABEL_MANAGED}=true",
                        "--label", f"{LABEL_COURSE}={name}", network], check=True, capture_output=True)
    gateway = subprocess.run(["docker", "network", "inspect", network, "--format",
                              "{{(index .IPAM.Config 0).Gateway}}"], check=True, capture_output=True, text=True)
    return gateway.stdout.strip()


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def write_descriptor(directory: Path, name: str, authenticator: dict, **extra) -> Path:
    data = {
        "name": name, "title": f"hubfleet test {name}", "provider": "docker", "image": "hubfleet/notebook:latest",
        "authenticator": authenticator,
        "load": {"students": 10, "concurrent": 0.5, "memory_per_user": "512Mi", "cpu_per_user": 0.5,
                 "disk_per_user": "1Gi"},
        "dates": {"start": future(0), "end": future(7)}, "domain": f"{name}.hub.localhost", **extra,
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def create_course(env: dict, descriptor: Path, name: str, *options: str, timeout: float = 900) -> TestCourse:
    started = time.monotonic()
    proc = hubfleet(env, "create", str(descriptor), "--no-probe", *options, timeout=timeout)
    seconds = time.monotonic() - started
    status = yaml.safe_load(hubfleet(env, "status", name, "--json", "--no-probe").stdout)
    store = StateStore(Path(env["HUBFLEET_STATE_DIR"]))
    course = parse_course(store.get(name).descriptor, source="recorded descriptor", today=dt.date.min)
    return TestCourse(name, status["url"], env, proc.stdout + proc.stderr, seconds,
                      verify=tls.trust(store.dir, course))


def destroy_course(env: dict, name: str) -> None:
    """Remove the course, then the embedded ACME server its HTTPS came from (one per test state dir)."""
    hubfleet(env, "destroy", name, "--yes", "--no-archive", check=False)
    acme_local.stop_local_acme(Path(env["HUBFLEET_STATE_DIR"]))


def service_client(course: TestCourse) -> HubClient:
    """The hub's API as hubfleet itself calls it (its service token from the state store)."""
    store = StateStore(course.state_dir)
    return HubClient(course.url, store.get_secret(course.name, "hub-api-token"), verify=course.verify)


def hub_log(course: TestCourse) -> str:
    """Everything JupyterHub logged on the hub host (the journal, as an operator reads it)."""
    proc = subprocess.run(["docker", "exec", course.host, "journalctl", "-u", "jupyterhub", "--no-pager", "-o", "cat"],
                          capture_output=True, text=True, timeout=60)
    return proc.stdout


def error_message(response: requests.Response) -> str:
    """The message of a JupyterHub error page (what the student reads)."""
    found = re.search(r'<div class="error">(.*?)</div>', response.text, re.S)
    text = found.group(1) if found else response.text
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def username_in(url: str) -> str:
    """The hub username a spawn, spawn-pending or server URL names ("" when it names none)."""
    parts = urlsplit(url).path.split("/")
    for marker in ("spawn", "spawn-pending", "user"):
        if marker in parts[:3] and len(parts) > parts.index(marker) + 1 and parts[1] in ("hub", "user"):
            return unquote(parts[parts.index(marker) + 1])
    return ""


def start_computing(url: str, session, user: str, code: str, *, verify: bool | str = True) -> str:
    """Start a kernel and send it code without waiting for the answer (the kernel goes on): its id."""
    server = f"{url}/user/{user}"
    xsrf = {"X-XSRFToken": cookie_for(session, "_xsrf", f"/user/{user}") or ""}
    kernel = session.post(f"{server}/api/kernels", json={"name": "python3"}, headers=xsrf, timeout=30)
    kernel.raise_for_status()
    kernel_id = kernel.json()["id"]
    cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    ws = websocket.create_connection(_ws_url(f"{server}/api/kernels/{kernel_id}/channels"),
                                     header=[f"Cookie: {cookie}", f"X-XSRFToken: {xsrf['X-XSRFToken']}"],
                                     timeout=30, sslopt={"ca_certs": verify} if isinstance(verify, str)
                                     else {})
    try:
        ws.send(execute_request(code)[1])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the kernel says it is busy with it
            message = json.loads(ws.recv())
            if message.get("msg_type") == "status" and message["content"].get("execution_state") == "busy":
                break
    finally:
        ws.close()
    return kernel_id
