"""An LTI 1.1 launch in a real browser, inside an LMS page's iframe, ends in JupyterLab.

The "LMS" is a page served here on the origin the course allows to frame it (lms_origin); its
iframe loads a form signed like edX's and submits it with JavaScript, as edX does. The course is
the one test_lti11.py uses (tests/support/lti_course.py). A page on another origin must not be
able to frame the hub. Screenshots go to artifacts/lti/.
"""

from __future__ import annotations

import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import ROOT
from tests.support.browser import CHROMIUM_ARGS, ensure_chromium
from tests.support.courses import free_port
from tests.support.lti11_consumer import launch_fields, sign

pytest_plugins = ["tests.support.lti_course"]
pytestmark = [pytest.mark.docker, pytest.mark.slow]

SHOTS = ROOT / "artifacts" / "lti"
STUDENT = "browser-student-1"


def serve(port: int, pages: dict) -> ThreadingHTTPServer:
    """A tiny web server on 127.0.0.1:port; `pages` maps a path to a function returning HTML."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            page = pages.get(self.path)
            body = (page() if page else "not found").encode()
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
    """The course page of the LMS, on the origin the course names; yields its URL."""
    cfg = lti11_course.extra

    def launch_form() -> str:
        fields = sign(cfg["launch_url"], cfg["consumer_key"], cfg["consumer_secret"],
                      launch_fields(STUDENT, custom_next="/hub/user-redirect/lab"), style="edx")
        inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in fields.items())
        return (f'<!doctype html><html><body><form method="post" action="{html.escape(cfg["launch_url"])}">'
                f'{inputs}</form><script>document.forms[0].submit()</script></body></html>')

    course_page = ('<!doctype html><html><head><title>Week 1 - LMS</title></head><body>'
                   '<h1>Understanding Queues: week 1</h1>'
                   '<iframe id="tool" src="/launch" width="1200" height="760"></iframe></body></html>')
    server = serve(cfg["lms_port"], {"/course": lambda: course_page, "/launch": launch_form})
    yield f"{cfg['lms_origin']}/course"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=ensure_chromium(), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def test_launch_inside_the_lms_iframe_opens_jupyterlab(lti11_course, lms, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(lms)
    frame = page.frame_locator("#tool")
    # The hub starts the server on the way; JupyterLab's shell appears once it runs.
    frame.locator("#jp-main-dock-panel").wait_for(timeout=180_000)
    frame.locator(".jp-LauncherCard").first.wait_for(timeout=60_000)
    tool = next(f for f in page.frames if f.name == "tool" or f.url.startswith(lti11_course.url))
    assert tool.url.startswith(f"{lti11_course.url}/user/{STUDENT}/lab"), tool.url
    page.screenshot(path=str(SHOTS / "lti11-launch-in-iframe.png"))
    page.close()


def test_a_page_on_another_origin_cannot_frame_the_hub(lti11_course, browser):
    port = free_port()
    foreign = ('<!doctype html><html><body><iframe id="tool" src="'
               f'{html.escape(lti11_course.url)}/hub/home" width="800" height="400"></iframe></body></html>')
    server = serve(port, {"/": lambda: foreign})
    try:
        page = browser.new_page()
        refused = []
        page.on("console", lambda message: refused.append(message.text) if "frame-ancestors" in message.text else None)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_timeout(2000)
        page.screenshot(path=str(SHOTS / "foreign-origin-refused.png"))
        assert refused, "Chromium must refuse to frame the hub for an origin the course does not name"
        page.close()
    finally:
        server.shutdown()
        server.server_close()
