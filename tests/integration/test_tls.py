"""HTTPS against real peers: the embedded pebble issues over real HTTP-01 validation, nginx serves it,
certbot renews it through the host's timer unit while a kernel's websocket stays open, testssl.sh
rates the server, and bad TLS input stops create with a clear error before the hub is touched.

On the workshop's course, shared with test_workshop_e2e.py (tests/support/workshop_course.py), before
that module's tests; tests run in file order. The refused creates leave the hub as it was, and the
workshop's re-run then converges with no change. Everything talks to 127.0.0.1 or to containers this
run created (pebble's network and the course's).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
import websocket
import yaml
from cryptography import x509

from hubfleet import tls
from hubfleet.jupyter import _run_on_channel, cookie_for, login_with_password, start_own_server
from tests.integration.cli_helpers import hubfleet
from tests.support.workshop_course import COURSE, DOMAIN, HUB, descriptor_data

pytestmark = [pytest.mark.docker, pytest.mark.slow]

pytest_plugins = ["tests.support.workshop_course"]


def ensure_debian_packages(*packages: str) -> None:
    """The tools these tests drive, from Debian's packages (this machine is a Debian 12 root)."""
    missing = [p for p in packages if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
                                                     text=True).stdout != "install ok installed"]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, capture_output=True, timeout=600,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def write_descriptor(directory: Path, **changes) -> Path:
    """The workshop's descriptor with `changes`: what an operator re-running create with a mistake gives."""
    path = directory / f"{COURSE}-{len(list(directory.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(descriptor_data(COURSE, **changes)))
    return path


@pytest.fixture(scope="module")
def env(workshop_env):
    ensure_debian_packages("pebble", "testssl.sh")
    return workshop_env


@pytest.fixture(scope="module")
def course(env, workshop):
    """The workshop (tests/support/workshop_course.py), its certificate from the embedded pebble."""
    print(f"create with a certificate from pebble: {workshop['seconds']:.0f} s")
    return workshop


@contextmanager
def as_a_browser(course: dict) -> Iterator[None]:
    """The session's course already resolves to 127.0.0.1 and trusts pebble's root, as a browser that
    imported it (tests/support/workshop_course.py)."""
    yield


def served_certificate(port: int, cafile: str | None = None) -> x509.Certificate:
    """What 127.0.0.1:port serves for the course's name; verified (chain and name) when cafile is given."""
    context = ssl.create_default_context(cafile=cafile)
    if cafile is None:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=DOMAIN) as conn:
            return x509.load_der_x509_certificate(conn.getpeercert(binary_form=True))


def test_certificate_from_pebble_over_http01_chains_to_its_root_and_names_the_domain(course, env):
    assert course["url"] == f"https://{DOMAIN}:{course['https']}"
    cert = served_certificate(course["https"], cafile=course["root"])  # raises unless it chains and matches
    assert DOMAIN in tls.certificate_names(cert)
    assert "Pebble Intermediate CA" in cert.issuer.rfc4514_string()
    log = (Path(env["HUBFLEET_STATE_DIR"]) / "acme-local" / "pebble.log").read_text()
    # pebble really fetched the token from the proxy host over HTTP (no PEBBLE_VA_ALWAYS_VALID).
    assert f"Attempting to validate w/ HTTP: http://{DOMAIN}:80/.well-known/acme-challenge/" in log
    assert "set VALID by completed challenge" in log and "Issued certificate serial" in log
    stamps = [dt.datetime.strptime(" ".join(line.split()[1:3]), "%Y/%m/%d %H:%M:%S") for line in log.splitlines()
              if line.startswith("Pebble ") and ("/order-plz" in line or "Issued certificate" in line)]
    print(f"issuance, new order to certificate (pebble's clock, 1 s steps): {(stamps[-1] - stamps[0]).seconds} s")
    assert f"CA certificate: {course['root']}" in course["output"]
    with as_a_browser(course):
        assert requests.get(f"{course['url']}/hub/api/", timeout=10).json()["version"]


def test_status_reports_the_served_certificate(course, env):
    status = json.loads(hubfleet(env, "status", COURSE, "--json", "--no-probe").stdout)
    certificate = status["certificate"]
    assert certificate["for_domain"] and certificate["trusted"] and 85 <= certificate["days_left"] <= 90
    assert "Pebble Intermediate CA" in certificate["issuer"] and status["healthy"] and not status["warnings"]
    text = hubfleet(env, "status", COURSE, "--no-probe").stdout
    assert "certificate: " in text and "day(s) left" in text
    assert f"CA certificate to trust: {course['root']}" in text


def test_http_redirects_to_https_except_acme_challenges(course):
    http = f"http://127.0.0.1:{course['http']}"
    moved = requests.get(f"{http}/hub/login?next=%2Fhub%2F", headers={"Host": DOMAIN}, allow_redirects=False,
                         timeout=10)
    assert moved.status_code == 301
    assert moved.headers["Location"] == f"https://{DOMAIN}:{course['https']}/hub/login?next=%2Fhub%2F"
    challenge = requests.get(f"{http}/.well-known/acme-challenge/absent", headers={"Host": DOMAIN},
                             allow_redirects=False, timeout=10)
    assert challenge.status_code == 404
    with as_a_browser(course):
        page = requests.get(f"{course['url']}/hub/login", timeout=10)
    assert page.headers["Strict-Transport-Security"] == "max-age=63072000"
    assert len(page.raw.headers.getlist("Content-Security-Policy")) == 1, "the hub's policy, not two"


def test_testssl_finds_nothing_high_or_critical(course, tmp_path):
    report = tmp_path / "testssl.json"
    started = time.monotonic()
    # Protocols, cipher categories, server defaults (certificate, chain of trust), headers, vulnerabilities.
    proc = subprocess.run(
        [shutil.which("testssl") or "testssl.sh", "--quiet", "--color", "0", "--warnings", "off", "--nodns", "none",
         "--ip", "127.0.0.1", "--add-ca", course["root"], "--jsonfile", str(report), "-p", "-s", "-S", "-h", "-U",
         f"https://{DOMAIN}:{course['https']}"],
        capture_output=True, text=True, timeout=420)
    findings = json.loads(report.read_text())
    by_severity: dict[str, int] = {}
    for finding in findings:
        by_severity[finding["severity"]] = by_severity.get(finding["severity"], 0) + 1
    notable = [f"{f['severity']} {f['id']}: {f['finding']}" for f in findings
               if f["severity"] in ("LOW", "MEDIUM", "HIGH", "CRITICAL", "WARN")]
    print(f"testssl.sh in {time.monotonic() - started:.0f} s: {json.dumps(by_severity, sort_keys=True)}")
    print("\n".join(notable))
    assert findings, proc.stdout[-3000:] + proc.stderr[-2000:]
    severe = [f for f in findings if f["severity"] in ("HIGH", "CRITICAL") and f["id"] not in OF_THE_TEST_CA]
    assert not severe, severe
    for finding in findings:
        if finding["id"] in OF_THE_TEST_CA and finding["severity"] in ("HIGH", "CRITICAL"):
            print(f"not the hub's: {finding['severity']} {finding['id']} ({OF_THE_TEST_CA[finding['id']]})")
    offered = {f["id"]: f["finding"] for f in findings}
    assert offered["TLS1_1"].startswith("not offered") and offered["TLS1_3"].startswith("offered")


# Findings about what the issuing CA puts in certificates, not about the hub's server: pebble names
# neither a CRL nor an OCSP responder (Let's Encrypt's certificates carry a CRL URL).
OF_THE_TEST_CA = {"cert_revocation": "pebble's certificates name no CRL and no OCSP responder"}


def _ws_url(http_url: str) -> str:
    parts = urlsplit(http_url)
    return urlunsplit(("wss", parts.netloc, parts.path, parts.query, ""))


def test_forced_renewal_is_served_and_an_open_kernel_websocket_survives(course, env):
    password = json.loads(hubfleet(env, "credentials", COURSE, "--json").stdout)["shared-password"]
    with as_a_browser(course):
        student = login_with_password(course["url"], "bob", password, verify=course["root"])
        start_own_server(student, course["url"], "bob")
        server = f"{course['url']}/user/bob"
        headers = {"X-XSRFToken": cookie_for(student, "_xsrf", urlsplit(server).path) or ""}
        kernel = student.post(f"{server}/api/kernels", json={"name": "python3"}, headers=headers, timeout=60)
        kernel.raise_for_status()
        cookies = "; ".join(f"{c.name}={c.value}" for c in student.cookies)
        ws = websocket.create_connection(
            _ws_url(f"{server}/api/kernels/{kernel.json()['id']}/channels"), timeout=60,
            header=[f"{k}: {v}" for k, v in headers.items()] + [f"Cookie: {cookies}"],
            sslopt={"ca_certs": course["root"]})
    try:
        before = _run_on_channel(ws, "x = 41; print(x + 1)", 60)
        assert before.output.strip() == "42", before
        old = served_certificate(course["https"], cafile=course["root"])

        # Due now: certbot's own renewal window made longer than the certificate's life, then the timer's unit.
        conf = f"/etc/letsencrypt/renewal/{DOMAIN}.conf"
        started = time.monotonic()
        renewed = subprocess.run(
            ["docker", "exec", HUB, "sh", "-c",
             f"sed -i 's/^renew_before_expiry = .*/renew_before_expiry = 3650 days/' {conf} && "
             f"systemctl start hubfleet-tls-renew.service; rc=$?; "
             f"sed -i 's/^renew_before_expiry = .*/renew_before_expiry = 30 days/' {conf}; exit $rc"],
            capture_output=True, text=True, timeout=180)
        seconds = time.monotonic() - started
        assert renewed.returncode == 0, renewed.stderr
        deadline = time.monotonic() + 20
        new = served_certificate(course["https"], cafile=course["root"])
        while new.serial_number == old.serial_number and time.monotonic() < deadline:
            time.sleep(0.5)  # the reload starts new workers; they take the new certificate
            new = served_certificate(course["https"], cafile=course["root"])
        print(f"renewal through hubfleet-tls-renew.service, reload included: {seconds:.1f} s")
        assert new.serial_number != old.serial_number, "nginx still serves the old certificate"
        assert new.not_valid_before_utc >= old.not_valid_before_utc

        after = _run_on_channel(ws, "print(x + 2)", 60)  # same websocket, same kernel, opened before the reload
        assert after.status == "ok" and after.output.strip() == "43", after
    finally:
        ws.close()
    journal = subprocess.run(["docker", "exec", HUB, "journalctl", "-u", "nginx", "--no-pager", "-q"],
                             capture_output=True, text=True).stdout
    assert "Reloading" in journal or "Reloaded" in journal
    assert "Stopping" not in journal, "nginx was restarted, not reloaded"


def _rejected(env, course, path: Path, code: int) -> str:
    before = served_certificate(course["https"], cafile=course["root"]).serial_number
    recorded = json.loads(hubfleet(env, "status", COURSE, "--json", "--no-probe").stdout)
    proc = hubfleet(env, "create", str(path), "--no-probe", check=False)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert served_certificate(course["https"], cafile=course["root"]).serial_number == before
    after = json.loads(hubfleet(env, "status", COURSE, "--json", "--no-probe").stdout)
    assert (after["status"], after["domain"], after["url"]) == ("ready", recorded["domain"], recorded["url"]), \
        "the record still says what runs: bad input changes nothing"
    with as_a_browser(course):
        assert requests.get(f"{course['url']}/hub/api/", timeout=10).ok, "hub left as it was"
    return proc.stderr


def test_unreachable_acme_server_is_a_clear_error_and_the_hub_is_left_as_it_was(env, course):
    path = write_descriptor(course["dir"], tls={"acme_server": "https://127.0.0.1:9/directory",
                                                "email": "teacher@example.edu"})
    stderr = _rejected(env, course, path, 5)
    assert "tls.acme_server: the ACME directory https://127.0.0.1:9/directory is not reachable" in stderr
    assert "no certificate was requested" in stderr


def test_domain_that_does_not_resolve_is_named(env, course):
    nowhere = f"{COURSE}.nowhere.invalid"
    path = write_descriptor(course["dir"], domain=nowhere,
                            tls={"acme_server": "letsencrypt-staging", "email": "teacher@example.edu"})
    stderr = _rejected(env, course, path, 5)
    assert f"domain: {nowhere} does not resolve" in stderr


def test_certificate_whose_key_does_not_match_is_refused_before_any_host_is_touched(env, course, tmp_path):
    from tests.unit.test_tls import make_pair

    now = dt.datetime.now(dt.timezone.utc)
    cert, _ = make_pair(tmp_path, [DOMAIN], tag="cert", now=now)
    _, other_key = make_pair(tmp_path, [DOMAIN], tag="other", now=now)
    path = write_descriptor(course["dir"], tls={"certificate": str(cert), "key": str(other_key)})
    updated = json.loads(hubfleet(env, "status", COURSE, "--json", "--no-probe", check=False).stdout)["updated_at"]
    stderr = _rejected(env, course, path, 2)
    assert "tls.key:" in stderr and "does not match the certificate" in stderr
    assert "PRIVATE KEY" not in stderr
    after = json.loads(hubfleet(env, "status", COURSE, "--json", "--no-probe", check=False).stdout)["updated_at"]
    assert after == updated, "the record was not touched either"
