"""The portal in a real headless Chromium (Debian's package, driven by Playwright), end to end.

A teacher signs in, sends a form with a bad field and sees the error beside it, fixes it; an operator
approves; the teacher's page shows the progress and then the hub's URL. The first test injects a fake
create (and browses without JavaScript); the `docker` one runs the real create_course and asks the
hub's API. Screenshots of each page go to artifacts/portal/.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest
import requests
from werkzeug.serving import make_server

from hubfleet import tls
from hubfleet.providers.docker import acme_local
from hubfleet.lifecycle import create_course, destroy_course
from hubfleet.portal import create_app
from hubfleet.portal.config import parse_config
from hubfleet.state import StateStore
from tests.conftest import ROOT
from tests.unit.test_portal import (
    OPERATOR, PASSWORD, TEACHER, FakeHub, future, password_hash, portal_of, wait_for,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / "artifacts" / "portal"
SMALL_IMAGE = {"image": "hubfleet/notebook:latest", "label": "Python (small)", "memory_per_user": "256Mi",
               "cpu_per_user": 0.1}


def ensure_chromium() -> str:
    """Debian's chromium, installed with apt-get when missing (never a browser download of Playwright's)."""
    if not Path(CHROMIUM).exists():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True).returncode:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True, check=True)
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed and `apt-get install -y chromium` did not install it")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(state_dir: Path, create, destroy) -> Iterator[tuple[str, object]]:
    """The portal on 127.0.0.1 in a thread of this process; yields (base URL, app)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = parse_config({"public_url": base, "images": [SMALL_IMAGE]})
    app = create_app(StateStore(state_dir), config, create=create, destroy=destroy)
    db = portal_of(app).db
    db.ensure_user(TEACHER, email=TEACHER, role="teacher", password_hash=password_hash())
    db.ensure_user(OPERATOR, email=OPERATOR, role="operator", password_hash=password_hash())
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base, app
    finally:
        server.shutdown()
        portal_of(app).shutdown()


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page, base: str, login: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#f-login", login)
    page.fill("#f-password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


def request_with_a_mistake_then_fixed(page, base: str, name: str, prefix: str) -> int:
    """Fill the form with one bad field, check the error beside it, fix it, send it; the request's id."""
    from playwright.sync_api import expect

    page.goto(f"{base}/requests/new")
    page.fill("#f-name", name)
    page.fill("#f-title", "Python workshop <for everyone>")
    page.fill("#f-students", "5")
    page.fill("#f-at_once", "all of them")
    page.fill("#f-start", future(0))
    page.fill("#f-end", future(7))
    page.select_option("#f-image", SMALL_IMAGE["image"])
    page.check("input[name=auth_kind][value=shared-password]")
    page.fill("#f-notes", "Two sessions, <b>Tuesday</b> mornings.")
    shot(page, f"{prefix}1-form")
    page.click("button:has-text('Send the request')")
    beside = page.locator(".field:has(#f-at_once) .field-error")
    expect(beside).to_contain_text("is not a whole number of students")
    expect(page.locator("#f-at_once")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".field:has(#f-students) .field-error")).to_have_count(0)
    expect(page.locator("#f-title")).to_have_value("Python workshop <for everyone>")  # kept, not re-typed
    # The summary comes first and takes the focus (a screen reader reads it), each line names the field's label.
    expect(page.locator("#error-summary")).to_be_focused()
    expect(page.locator("#error-summary a[href='#f-at_once']")).to_have_text("Working at the same time")
    shot(page, f"{prefix}2-form-error")
    page.fill("#f-at_once", "5")
    page.click("button:has-text('Send the request')")
    page.wait_for_url(f"{base}/requests/*")
    expect(page.locator("h1")).to_have_text("Python workshop <for everyone>")  # escaped, shown as text
    expect(page.locator("#status")).to_contain_text("Waiting for an operator")
    shot(page, f"{prefix}3-requested")
    return int(page.url.rsplit("/", 1)[1])


def operator_approves(page, base: str, request_id: int, prefix: str) -> None:
    from playwright.sync_api import expect

    sign_in(page, base, OPERATOR)
    page.goto(f"{base}/operator/")
    card = page.locator(f"#request-{request_id}")
    expect(card).to_contain_text("d.small")  # the sizing plan
    expect(card).to_contain_text("5 of 5")
    shot(page, f"{prefix}4-operator")
    card.locator("button:has-text('Approve and create')").click()
    page.wait_for_url(f"{base}/requests/{request_id}")


def test_teacher_request_to_hub_url_in_chromium_with_fake_create_and_no_javascript(browser, tmp_path):
    from playwright.sync_api import expect

    fake = FakeHub()
    fake.gate.clear()  # hold the create half-way to see the progress page
    with serving(tmp_path / "state", fake.create, fake.destroy) as (base, app):
        # The teacher browses with JavaScript off: every page must work, the progress page refreshes itself.
        teacher = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
        operator = browser.new_context()
        try:
            tpage, opage = teacher.new_page(), operator.new_page()
            sign_in(tpage, base, TEACHER)
            shot(tpage, "fake-0-requests")
            request_id = request_with_a_mistake_then_fixed(tpage, base, "web-101", "fake-")
            operator_approves(opage, base, request_id, "fake-")

            tpage.goto(f"{base}/requests/{request_id}")
            expect(tpage.locator("#events")).to_contain_text("hosts: 1 x d.small on docker", timeout=10_000)
            expect(tpage.locator("#events")).to_contain_text("<b>host</b> started")  # text, not markup
            shot(tpage, "fake-5-progress")
            fake.gate.set()
            expect(tpage.locator("#hub-url")).to_have_text("http://127.0.0.1:9/web-101", timeout=20_000)  # by refresh
            expect(tpage.locator("#events")).to_contain_text("ready at http://127.0.0.1:9/web-101")
            expect(tpage.locator("#shared-password")).to_have_text(
                portal_of(app).store.get_secret("web-101", "shared-password"))
            shot(tpage, "fake-6-ready")
            opage.goto(f"{base}/operator/audit")
            expect(opage.locator("table")).to_contain_text("approve")
            shot(opage, "fake-7-audit")
            operator_ends_the_course_on_a_phone(browser, base, request_id, app)
        finally:
            teacher.close()
            operator.close()


def operator_ends_the_course_on_a_phone(browser, base: str, request_id: int, app) -> None:
    """At a phone's width: the form's image menu fits the screen; ending the course shows what is lost,
    refuses a wrong password with the focus on the summary, keeps the removal without saving apart."""
    from playwright.sync_api import expect

    phone = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = phone.new_page()
        sign_in(page, base, OPERATOR)
        page.goto(f"{base}/requests/new")
        menu = page.locator("#f-image").bounding_box()
        assert menu["x"] >= 0 and menu["x"] + menu["width"] <= 390, f"the image menu leaves the screen: {menu}"
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the form scrolls sideways on a phone"
        page.goto(f"{base}/requests/{request_id}")
        page.click("#end-course")
        expect(page.locator("h2").first).to_have_text("What happens")
        expect(page.locator("details.danger")).not_to_have_attribute("open", "")
        page.fill("#f-password", "not-the-password")
        page.click("button:has-text('Archive the students')")
        expect(page.locator("#error-summary")).to_be_focused()
        expect(page.locator("#error-summary")).to_contain_text("not right")
        assert portal_of(app).db.request(request_id).state == "ready"
        shot(page, "fake-8-end-refused")
        page.fill("#f-password", PASSWORD)
        page.click("button:has-text('Archive the students')")
        wait_for(lambda: portal_of(app).db.request(request_id).state == "archived", timeout=20, what="archived")
        # The fake destroy can finish before the form's own answer has loaded: a reload then finds the page
        # mid-navigation; a fresh visit, once the answer is in, does not.
        page.wait_for_load_state("load")
        page.goto(f"{base}/requests/{request_id}")
        expect(page.get_by_role("heading", name="Archived")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot(page, "fake-9-archived")
    finally:
        phone.close()


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_teacher_request_to_a_real_hub_in_chromium(browser, tmp_path_factory):
    """The real create_course on the Docker provider: the hub the page links to answers its API over HTTPS,
    with a certificate from the embedded ACME server (the portal's settings name no TLS: the default)."""
    from playwright.sync_api import expect

    name = f"pt-{secrets.token_hex(3)}"
    state_dir = tmp_path_factory.mktemp("portal-real")
    store = StateStore(state_dir)
    try:
        with serving(state_dir, create_course, destroy_course) as (base, app):
            teacher, operator = browser.new_context(), browser.new_context()
            try:
                tpage, opage = teacher.new_page(), operator.new_page()
                sign_in(tpage, base, TEACHER)
                request_id = request_with_a_mistake_then_fixed(tpage, base, name, "real-")
                operator_approves(opage, base, request_id, "real-")
                tpage.goto(f"{base}/requests/{request_id}")
                expect(tpage.locator("#events li").first).to_be_visible(timeout=120_000)  # streamed by progress.js
                shot(tpage, "real-5-progress")
                url = tpage.locator("#hub-url")
                expect(url).to_be_visible(timeout=40 * 60_000)
                shot(tpage, "real-6-ready")
                hub = url.inner_text()
                assert portal_of(app).db.request(request_id).state == "ready"
                # HTTPS by default through the portal too: a certificate from the embedded ACME server.
                domain = f"{name}.hub.localhost"
                assert hub.startswith(f"https://{domain}:"), hub
                root = str(acme_local.acme_dir(state_dir) / "root.pem")
                with tls.resolving_to_loopback(domain):
                    # verify= per request: REQUESTS_CA_BUNDLE would override a session's own CA.
                    version = requests.get(f"{hub}/hub/api/", timeout=30, verify=root).json()["version"]
                    assert version.count(".") >= 2, version
                    issuer = served_issuer(domain, int(urlsplit(hub).port), root)
                    assert "Pebble" in issuer, issuer
                hub_host = next(h for h in store.get(name).hosts if h["role"] == "hub")
                plain = requests.get(f"http://127.0.0.1:{hub_host['http_port']}/hub/login", timeout=30,
                                     headers={"Host": domain}, allow_redirects=False)
                assert plain.status_code == 301 and plain.headers["Location"].startswith(f"https://{domain}:")
            finally:
                teacher.close()
                operator.close()
    finally:
        instance = store.find(name)
        if instance is not None and instance.status != "archived":
            destroy_course(store, name, archive=False)
        acme_local.stop_local_acme(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def served_issuer(domain: str, port: int, root: str) -> str:
    """The issuer of the certificate 127.0.0.1:port serves for `domain`, verified against `root` (chain and name)."""
    import ssl

    from cryptography import x509

    context = ssl.create_default_context(cafile=root)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=domain) as conn:
            return x509.load_der_x509_certificate(conn.getpeercert(binary_form=True)).issuer.rfc4514_string()
