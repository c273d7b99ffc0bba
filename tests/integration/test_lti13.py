"""LTI 1.3 against a real hub, driven by a test platform (tests/support/lti13_platform.py).

The platform serves HTTPS on the course network's gateway with a test CA the hub's host trusts,
so the hub fetches its JWKS as it would Moodle's. One course for the module. The full flow must
land the student in a running server that runs code; each forged or replayed launch is refused.
"""

from __future__ import annotations

import secrets
import time
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from hubfleet.jupyter import execute, start_own_server
from tests.support.courses import (
    course_env,
    create_course,
    destroy_course,
    ensure_course_network,
    error_message,
    free_port,
    hub_log,
    hubfleet,
    reaching,
    service_client,
    write_descriptor,
)
from tests.support.lti13_platform import LTI, Launch, LTI13Platform
from tests.support.test_ca import TestCA

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CLIENT_ID = "hubfleet-test-tool"
DEPLOYMENT_ID = "deployment-1"


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    """The course and its platform: (course, platform, CA path)."""
    name = f"t-lti13-{secrets.token_hex(2)}"
    directory = tmp_path_factory.mktemp(name)
    env = course_env(directory / "state")
    gateway = ensure_course_network(name, directory)
    ca = TestCA(directory / "ca")
    platform = LTI13Platform(gateway, free_port(gateway), ca.issue("platform", gateway),
                             client_id=CLIENT_ID, deployment_id=DEPLOYMENT_ID).start()
    authenticator = {"kind": "lti13", "issuer": platform.issuer, "client_id": CLIENT_ID,
                     "deployment_ids": [DEPLOYMENT_ID], "authorize_url": platform.authorize_url,
                     "jwks_url": platform.jwks_url}
    try:
        # The platform's CA is the operator's to name once: roles/trust puts it in the hosts' one store.
        descriptor = write_descriptor(directory, name, authenticator, ca_certificates=[str(ca.path)])
        course = create_course(env, descriptor, name)
        course.extra.update(hubfleet_json(env, "lti-config", name), descriptor=str(descriptor))
        platform.redirect_uris = [course.extra["redirection_uris"]]
        with reaching(course):  # every hub is HTTPS: its *.localhost name and the embedded ACME root
            yield course, platform, str(ca.path)
    finally:
        destroy_course(env, name)
        platform.stop()


def hubfleet_json(env, *args) -> dict:
    import json

    return json.loads(hubfleet(env, *args, "--json").stdout)


class _Form(HTMLParser):
    def __init__(self):
        super().__init__()
        self.action, self.fields = "", {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.action = attrs.get("action", "")
        elif tag == "input" and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value", "")


def authenticate_at_platform(lms, student: requests.Session, *, user: str, target: str | None = None,
                             launch: Launch | None = None) -> tuple[str, dict]:
    """Steps 1-2: the platform starts the login at the hub, the hub sends the browser to the platform.

    Returns the form the platform's page would auto-submit to the hub: (action, fields).
    """
    course, platform, ca = lms
    init = platform.login_initiation(login_hint=user, target_link_uri=target or course.extra["tool_url"])
    started = student.post(course.extra["initiate_login_url"], data=init, allow_redirects=False, timeout=30)
    assert started.status_code == 302, error_message(started)
    assert started.headers["Location"].startswith(platform.authorize_url + "?")
    platform.next_launch = launch or Launch()
    page = student.get(started.headers["Location"], verify=ca, timeout=30)
    assert page.status_code == 200, page.text
    form = _Form()
    form.feed(page.text)
    return form.action, form.fields


def full_launch(lms, student, *, user: str, target: str | None = None, launch: Launch | None = None):
    action, fields = authenticate_at_platform(lms, student, user=user, target=target, launch=launch)
    return student.post(action, data=fields, allow_redirects=False, timeout=60)


def test_moodle_settings_and_the_tool_keyset(lms):
    course = lms[0]
    assert course.extra["initiate_login_url"] == f"{course.url}/hub/lti13/oauth_login"
    assert course.extra["redirection_uris"] == f"{course.url}/hub/lti13/oauth_callback"
    text = hubfleet(course.env, "lti-config", course.name).stdout
    assert f"Public keyset:       {course.url}/hub/lti13/jwks" in text and f"Client ID:             {CLIENT_ID}" in text
    keyset = requests.get(course.extra["public_keyset_url"], timeout=30).json()
    assert [k["kty"] for k in keyset["keys"]] == ["RSA"] and "d" not in keyset["keys"][0]


def test_launch_lands_in_a_running_server_that_runs_code(lms):
    course, platform, _ = lms
    student = requests.Session()
    started = time.monotonic()
    response = full_launch(lms, student, user="moodle-user-17")
    assert response.status_code == 302, error_message(response)
    location = urlsplit(response.headers["Location"])
    assert location.path == "/hub/spawn/moodle-user-17"
    assert parse_qs(location.query)["next"] == ["/user/moodle-user-17/lab"]
    assert student.get(f"{course.url}/hub/api/user", timeout=30).json()["name"] == "moodle-user-17"
    start_own_server(student, course.url, "moodle-user-17")
    result = execute(f"{course.url}/user/moodle-user-17", "print(sum(range(10)))", session=student)
    assert (result.status, result.output) == ("ok", "45\n"), result.error
    assert platform.jwks_requests >= 1, "the hub must have fetched the platform's keyset"
    print(f"LTI 1.3 launch to a kernel that ran code: {time.monotonic() - started:.1f} s")


def test_a_resource_link_opens_its_notebook(lms):
    course = lms[0]
    response = full_launch(lms, requests.Session(), user="moodle-user-17",
                           target=course.extra["tool_url_to_open_a_notebook"])
    assert response.status_code == 302, error_message(response)
    assert response.headers["Location"] == "/user/moodle-user-17/lab/tree/intro.ipynb"  # running: no spawn


def test_forged_and_replayed_launches_are_refused(lms):
    course, platform, ca = lms
    now = int(time.time())
    forged = {
        "wrong issuer": (Launch(claims={"iss": "https://moodle.evil.example"}), 401, "another issuer"),
        "wrong audience": (Launch(claims={"aud": "someone-elses-tool"}), 401, "another client id"),
        "expired token": (Launch(claims={"iat": now - 900, "exp": now - 600}), 401, "id_token has expired"),
        "bad signature": (Launch(sign_with="rogue"), 401, "signature does not verify"),
        "unknown key id": (Launch(sign_with="rogue", kid="rotated-away"), 401, "keyset does not have"),
        "no expiry": (Launch(claims={"exp": None}), 401, "no exp claim"),
        "unknown deployment": (Launch(claims={LTI + "deployment_id": "deployment-9"}), 403, "unknown deployment_id"),
    }
    for case, (launch, status, reason) in forged.items():
        response = full_launch(lms, requests.Session(), user="mallory", launch=launch)
        assert response.status_code == status, f"{case}: {response.status_code} {error_message(response)}"
        assert reason in error_message(response), f"{case}: {error_message(response)}"

    # Nonce reuse: the same id_token, state and cookies posted again (a captured launch replayed).
    student = requests.Session()
    action, fields = authenticate_at_platform(lms, student, user="replayer")
    captured = student.cookies.copy()
    assert student.post(action, data=fields, allow_redirects=False, timeout=60).status_code == 302
    replay = requests.post(action, data=fields, cookies=captured, allow_redirects=False, timeout=60)
    assert replay.status_code == 401 and "nonce was already used" in error_message(replay), error_message(replay)

    # Login initiation from a platform the descriptor does not name.
    foreign = {**platform.login_initiation(login_hint="mallory", target_link_uri=course.extra["tool_url"]),
               "iss": "https://moodle.evil.example"}
    response = requests.post(course.extra["initiate_login_url"], data=foreign, allow_redirects=False, timeout=30)
    assert response.status_code == 403 and "unknown platform" in error_message(response)

    log = hub_log(course)
    assert "401 POST /hub/lti13/oauth_callback" in log and "nonce was already used" in log
    assert not [t for t in platform.issued if t in log], "id_tokens (personal data) must not be logged"
    assert "mallory" not in [user["name"] for user in service_client(course).users()], "no account for a refusal"


def test_rerun_converges_with_no_change(lms):
    """The lti and trust roles (and the rest of an LTI 1.3 course) converge again with nothing to change."""
    course, _, _ = lms
    result = hubfleet_json(course.env, "create", course.extra["descriptor"], "--no-probe")
    assert result["changed"] == 0 and result["status"] == "ready", result
