"""An LTI 1.1 launch in a real browser, inside an LMS page's iframe, ends in JupyterLab running code.

The "LMS" is a page served here on the origin the course allows to frame it (lms_origin); its
iframe loads a form signed like edX's and submits it with JavaScript, as edX does. The course is
the one test_lti11.py uses (tests/support/lti_course.py), over HTTPS, so the hub is a third party
in that iframe and lives on SameSite=None; Secure cookies. Chromium here blocks third-party
cookies in a fresh context (as incognito windows and Safari do): a profile that allows them, as
Chrome's default profile does, runs the launch; the blocked case must tell the student what to do.
A page on another origin must not be able to frame the hub. Screenshots go to artifacts/lti/.
"""

from __future__ import annotations

import html
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import ROOT
from tests.support.browser import CHROMIUM_ARGS, ensure_chromium
from tests.support.courses import free_port, hub_log
from tests.support.lti11_consumer import launch_fields, sign

pytest_plugins = ["tests.support.lti_course"]
pytestmark = [pytest.mark.docker, pytest.mark.slow]

SHOTS = ROOT / "artifacts" / "lti"


def serve(port: int, pages: dict) -> ThreadingHTTPServer:
    """A tiny web server on 127.0.0.1:port; `pages` maps a path to a function returning HTML."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            page = pages.get(self.path.split("?")[0])
            body = (page(self.path) if page else "not found").encode()
            self.send_response(200 if page else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def lms(lti11_course):
    """The LMS's course page for a student, on the origin the course names: /course?student=NAME."""
    cfg = lti11_course.extra

    def launch_form(path: str) -> str:
        student = path.split("student=", 1)[1]
        fields = sign(cfg["launch_url"], cfg["consumer_key"], cfg["consumer_secret"],
                      launch_fields(student, custom_next="/hub/user-redirect/lab"), style="edx")
        inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in fields.items())
        return (f'<!doctype html><html><body><form method="post" action="{html.escape(cfg["launch_url"])}">'
                f'{inputs}</form><script>document.forms[0].submit()</script></body></html>')

    def course_page(path: str) -> str:
        student = html.escape(path.split("student=", 1)[1])
        return ('<!doctype html><html><head><title>Week 1 - LMS</title></head><body>'
                '<h1>Understanding Queues: week 1</h1>'
                f'<iframe id="tool" src="/launch?student={student}" width="1200" height="760"></iframe></body></html>')

    server = serve(cfg["lms_port"], {"/course": course_page, "/launch": launch_form})
    yield f"{cfg['lms_origin']}/course"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    ensure_chromium()
    with sync_playwright() as driver:
        yield driver


def chromium(playwright, profile):
    """A Chromium profile that allows third-party cookies, as Chrome's default profile does.

    The hub's certificate comes from the embedded ACME server (test_tls.py checks it, not this module).
    """
    (profile / "Default").mkdir(parents=True)
    (profile / "Default" / "Preferences").write_text(json.dumps({"profile": {"cookie_controls_mode": 0}}))
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=ensure_chromium(), args=CHROMIUM_ARGS, headless=True,
        ignore_https_errors=True, viewport={"width": 1280, "height": 900})


def record_journey(page) -> list[str]:
    """Every navigation, failed request, error response and refusal the page meets, in order."""
    journey: list[str] = []
    page.on("framenavigated", lambda frame: journey.append(f"navigated  {frame.url}"))
    page.on("requestfailed", lambda request: journey.append(f"failed     {request.method} {request.url}: "
                                                            f"{request.failure}"))
    page.on("response", lambda response: journey.append(f"{response.status}        {response.request.method} "
                                                        f"{response.url}") if response.status >= 300 else None)
    page.on("console", lambda message: journey.append(f"console    {message.text}"))
    return journey


def test_launch_inside_the_lms_iframe_opens_jupyterlab_that_runs_code(lti11_course, lms, playwright, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    context = chromium(playwright, tmp_path / "profile")
    try:
        page = context.new_page()
        journey = record_journey(page)
        frame = page.frame_locator("#tool")
        # The hub starts the server on the way; JupyterLab's launcher appears once it runs.
        try:
            page.goto(f"{lms}?student=iframe-student")
            deadline, reloaded = time.monotonic() + 180, False
            while True:
                try:
                    frame.locator(".jp-LauncherCard").first.wait_for(timeout=5_000)
                    break
                except PlaywrightTimeout:
                    # Chromium aborts requests in flight when this machine's interfaces change (any
                    # container started or stopped beside the tests): a student would reload, once.
                    if not reloaded and any("ERR_NETWORK_CHANGED" in step for step in journey):
                        reloaded = True
                        journey.append("reloaded after ERR_NETWORK_CHANGED")
                        page.goto(f"{lms}?student=iframe-student")
                    elif time.monotonic() > deadline:
                        raise
        except Exception:
            frames = [f.url for f in page.frames]
            page.screenshot(path=str(SHOTS / "lti11-launch-in-iframe-failed.png"), timeout=10_000)
            hub = [line for line in hub_log(lti11_course).splitlines() if "iframe-student" in line]
            raise AssertionError("no JupyterLab in the iframe; frames: {}\nthe browser's journey:\n{}\n"
                                 "the hub's log for the student:\n{}".format(
                                     frames, "\n".join(journey), "\n".join(hub[-30:]))) from None
        tool = next(f for f in page.frames if f.url.startswith(lti11_course.url))
        assert tool.url.startswith(f"{lti11_course.url}/user/iframe-student/lab"), tool.url
        # A notebook in the iframe: its kernel starts (a POST with the server's _xsrf cookie) and runs code.
        frame.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
        frame.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=120_000)  # run only once it is up
        cell = frame.locator(".jp-Notebook .jp-Cell .cm-content").first
        cell.click()
        page.keyboard.type("print(6 * 7)")
        page.keyboard.press("Shift+Enter")
        frame.locator(".jp-OutputArea-output", has_text="42").first.wait_for(timeout=120_000)
        page.screenshot(path=str(SHOTS / "lti11-launch-in-iframe.png"))
    finally:
        context.close()


def test_a_browser_that_blocks_third_party_cookies_tells_the_student_what_to_do(lti11_course, lms, playwright):
    # Playwright's default context is like an incognito window: third-party cookies blocked.
    browser = playwright.chromium.launch(executable_path=ensure_chromium(), args=CHROMIUM_ARGS, headless=True)
    context = browser.new_context(ignore_https_errors=True)
    try:
        page = context.new_page()
        page.goto(f"{lms}?student=blocked-student")
        message = page.frame_locator("#tool").locator(".error")
        message.wait_for(timeout=60_000)
        assert "open the activity in a new window" in message.inner_text()
        page.screenshot(path=str(SHOTS / "lti11-third-party-cookies-blocked.png"))
    finally:
        browser.close()


def test_a_page_on_another_origin_cannot_frame_the_hub(lti11_course, playwright, tmp_path):
    port = free_port()
    foreign = ('<!doctype html><html><body><iframe id="tool" src="'
               f'{html.escape(lti11_course.url)}/hub/home" width="800" height="400"></iframe></body></html>')
    server = serve(port, {"/": lambda path: foreign})
    context = chromium(playwright, tmp_path / "profile")
    try:
        page = context.new_page()
        refused = []
        page.on("console", lambda message: refused.append(message.text) if "frame-ancestors" in message.text else None)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_timeout(2000)
        page.screenshot(path=str(SHOTS / "foreign-origin-refused.png"))
        assert refused, "Chromium must refuse to frame the hub for an origin the course does not name"
    finally:
        context.close()
        server.shutdown()
        server.server_close()
