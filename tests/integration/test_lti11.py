"""LTI 1.1 against a real hub: launches signed exactly as edX and Moodle sign them.

One course for the module (tests/support/lti_course.py). A launch must land the student in a
running server that runs code; every bad launch is refused with 401 or 403 and a message that
names the problem, and the hub's log holds the refusal but never the secret.
"""

from __future__ import annotations

import json
import subprocess
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from hubfleet.jupyter import execute, start_own_server, stop_own_server
from hubfleet.usernames import hub_username, spawner_escape
from tests.support.courses import error_message, hub_log, hubfleet, service_client
from tests.support.lti11_consumer import launch_fields, sign

pytest_plugins = ["tests.support.lti_course"]
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def launch(course, fields, *, style="moodle", key=None, secret=None, session=None, **signing):
    """POST a signed launch to the hub's launch URL; the response is not followed."""
    url = course.extra["launch_url"]
    form = sign(url, key or course.extra["consumer_key"], secret or course.extra["consumer_secret"], fields,
                style=style, **signing)
    return (session or course.session()).post(url, data=form, allow_redirects=False, timeout=30)


def whoami(course, session) -> str:
    return session.get(f"{course.url}/hub/api/user", timeout=30).json()["name"]


def test_lti_config_gives_the_lms_what_it_needs_and_only_it_prints_the_secret(lti11_course):
    cfg = lti11_course.extra
    name, secret = lti11_course.name, cfg["consumer_secret"]
    assert cfg["launch_url"] == f"{lti11_course.url}/hub/lti/launch"
    assert cfg["edx_lti_passport"] == f"{name}:{name}:{secret}" and len(secret) >= 32
    text = hubfleet(lti11_course.env, "lti-config", name)
    assert f"LTI passport:        {name}:{name}:{secret}" in text.stdout
    assert f"Shared secret:       {secret}" in text.stdout and "never in tickets" in text.stderr
    assert secret not in lti11_course.output, "create must not print the secret"
    for verb in (["status", name, "--no-probe"], ["list"]):
        shown = hubfleet(lti11_course.env, *verb, check=False)
        assert secret not in shown.stdout + shown.stderr


def test_status_gets_in_with_a_launch_signed_by_the_courses_own_key(lti11_course):
    """Healthy as a student meets it: status signs a launch with the course's consumer key and secret (as
    edX does) and removes the account it made."""
    status = json.loads(hubfleet(lti11_course.env, "status", lti11_course.name, "--json", "--no-probe").stdout)
    assert status["healthy"] and status["health"]["student_login"] is True, status["health"]


def test_edx_launch_lands_in_a_running_server_that_runs_code(lti11_course):
    student = lti11_course.session()
    started = time.monotonic()
    first = launch(lti11_course, launch_fields("a3f1c0de9b7e4d2a8c6b5e4f3a2b1c0d"), style="edx", session=student)
    assert first.status_code == 302, error_message(first)
    assert first.headers["Location"].startswith("/hub/spawn/a3f1c0de9b7e4d2a8c6b5e4f3a2b1c0d?")
    landed = student.get(lti11_course.url + first.headers["Location"], timeout=60)
    assert landed.status_code == 200
    start_own_server(student, lti11_course.url, "a3f1c0de9b7e4d2a8c6b5e4f3a2b1c0d")
    result = execute(f"{lti11_course.url}/user/a3f1c0de9b7e4d2a8c6b5e4f3a2b1c0d", "print(6 * 7)", session=student)
    assert (result.status, result.output) == ("ok", "42\n"), result.error
    print(f"edX launch to a kernel that ran code: {time.monotonic() - started:.1f} s")


def test_moodle_launch_with_custom_next_opens_that_notebook_for_a_readable_user(lti11_course):
    student = lti11_course.session()
    fields = launch_fields("jane.doe@example.edu", custom_next="/hub/user-redirect/lab/tree/intro.ipynb")
    first = launch(lti11_course, fields, style="moodle", session=student)
    assert first.status_code == 302, error_message(first)
    location = urlsplit(first.headers["Location"])
    assert location.path == "/hub/spawn/jane.doe@example.edu"
    assert parse_qs(location.query)["next"] == ["/user/jane.doe@example.edu/lab/tree/intro.ipynb"]
    assert whoami(lti11_course, student) == "jane.doe@example.edu"
    start_own_server(student, lti11_course.url, "jane.doe@example.edu")
    opened = student.get(lti11_course.url + parse_qs(location.query)["next"][0], timeout=60)
    assert opened.status_code == 200 and urlsplit(opened.url).path.endswith("/lab/tree/intro.ipynb")
    # Launched again while the server runs: straight to the notebook, no spawn page.
    again = launch(lti11_course, fields, style="edx", session=student)
    assert again.headers["Location"] == "/user/jane.doe@example.edu/lab/tree/intro.ipynb"


def test_a_launch_never_sends_the_student_off_the_hub(lti11_course):
    for evil in ("https://evil.example/phish", "//evil.example/phish", "/\\evil.example"):
        response = launch(lti11_course, launch_fields("redirect-probe", custom_next=evil))
        location = response.headers["Location"]
        assert response.status_code == 302
        assert location.startswith("/") and not location.startswith("//") and "\\" not in location, location
        assert urlsplit(location).netloc == "", location


def test_bad_launches_are_refused_with_a_reason_and_logged_without_secrets(lti11_course):
    course, secret = lti11_course, lti11_course.extra["consumer_secret"]
    refusals = {}
    refusals["wrong secret"] = launch(course, launch_fields("mallory"), secret="not-the-secret-0123456789")
    refusals["unknown key"] = launch(course, launch_fields("mallory"), key="someone-elses-key")
    captured = sign(course.extra["launch_url"], course.extra["consumer_key"], secret, launch_fields("replayer"))
    assert course.session().post(course.extra["launch_url"], data=captured, allow_redirects=False).status_code == 302
    refusals["replayed launch"] = course.session().post(course.extra["launch_url"], data=captured,
                                                        allow_redirects=False)
    time.sleep(1.1)  # the same nonce, signed again with a later timestamp, is still refused
    refusals["reused nonce"] = launch(course, launch_fields("replayer"), nonce=captured["oauth_nonce"])
    refusals["timestamp too old"] = launch(course, launch_fields("mallory"), timestamp=int(time.time()) - 3600)
    refusals["missing user id"] = launch(course, launch_fields(None))
    tampered = sign(course.extra["launch_url"], course.extra["consumer_key"], secret, launch_fields("mallory"))
    tampered["user_id"] = "the-teacher"
    refusals["tampered body"] = course.session().post(course.extra["launch_url"], data=tampered,
                                                      allow_redirects=False)
    refusals["unsigned"] = course.session().post(course.extra["launch_url"], data=launch_fields("mallory"),
                                                 allow_redirects=False)

    expected = {
        "wrong secret": (401, "oauth_signature does not match"),
        "unknown key": (401, "unknown oauth_consumer_key"),
        "replayed launch": (401, "oauth_nonce was already used"),
        "reused nonce": (401, "oauth_nonce was already used"),
        "timestamp too old": (401, "oauth_timestamp is 3600 s old"),
        "missing user id": (403, "the launch has no user_id"),
        "tampered body": (401, "oauth_signature does not match"),
        "unsigned": (401, "oauth_consumer_key is missing"),
    }
    for case, (status, reason) in expected.items():
        response = refusals[case]
        assert response.status_code == status, f"{case}: {response.status_code} {error_message(response)}"
        assert reason in error_message(response), f"{case}: {error_message(response)}"
        assert "Set-Cookie" not in response.headers or "jupyterhub-hub-login" not in response.headers["Set-Cookie"]

    log = hub_log(course)
    for case, (status, reason) in expected.items():
        assert f"{status} POST /hub/lti/launch" in log and reason in log, case
    assert secret not in log, "the consumer secret must never reach the log"
    assert "mallory" not in [user["name"] for user in service_client(course).users()], "no account for a refusal"
    assert tampered["oauth_signature"] not in log, "nor a launch's signature"


def test_colliding_lms_names_land_on_distinct_users_with_distinct_servers(lti11_course):
    """Folding case, accents or scripts would merge these people; each keeps an account and a server of their own."""
    course = lti11_course
    sessions, names = {}, {}
    for identity in ("李 Wei", "王 Wei", "José García", "Josè Garcìa"):
        sessions[identity] = course.session()
        response = launch(course, launch_fields(identity), session=sessions[identity])
        assert response.status_code == 302, error_message(response)
        names[identity] = whoami(course, sessions[identity])
        assert names[identity] == hub_username(identity)
    assert len(set(names.values())) == 4
    one, other = "李 Wei", "王 Wei"
    for identity in (one, other):
        start_own_server(sessions[identity], course.url, names[identity])
        ran = execute(f"{course.url}/user/{names[identity]}", "import os; print(os.environ['JUPYTERHUB_USER'])",
                      session=sessions[identity])
        assert ran.output.strip() == names[identity], ran.error
    peek = sessions[one].get(f"{course.url}/user/{names[other]}/api/contents", allow_redirects=False, timeout=30)
    assert peek.status_code in (302, 403), f"{one} must not reach {other}'s server: {peek.status_code}"
    services = subprocess.run(["docker", "exec", course.host, "docker", "service", "ls", "--format", "{{.Name}}"],
                              capture_output=True, text=True, timeout=60).stdout.split()
    assert {f"jupyter-{spawner_escape(names[one])}", f"jupyter-{spawner_escape(names[other])}"} <= set(services), \
        "a Swarm service (and a volume) each"
    for identity in (one, other):
        stop_own_server(sessions[identity], course.url, names[identity])


def test_a_launch_as_admin_gets_no_admin_rights(lti11_course):
    for identity in ("ADMIN", "Admin_", "admin", "ａｄｍｉｎ"):
        student = lti11_course.session()
        response = launch(lti11_course, launch_fields(identity), session=student)
        assert response.status_code == 302, error_message(response)
        name = whoami(lti11_course, student)
        assert name == hub_username(identity) and name.startswith("admin--"), name
        listing = student.get(f"{lti11_course.url}/hub/api/users", timeout=30)
        assert listing.status_code == 403, f"{identity} must not see the admin's view"
    admins = [u["name"] for u in service_client(lti11_course).users() if u.get("admin")]
    assert admins == ["admin"], admins


def test_a_replay_right_after_a_hub_restart_is_refused(lti11_course):
    course = lti11_course
    captured = sign(course.extra["launch_url"], course.extra["consumer_key"], course.extra["consumer_secret"],
                    launch_fields("restart-replayer"))
    assert course.session().post(course.extra["launch_url"], data=captured, allow_redirects=False).status_code == 302
    subprocess.run(["docker", "exec", course.host, "systemctl", "restart", "jupyterhub"], check=True, timeout=120)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if course.session().get(f"{course.url}/hub/api/", timeout=5).status_code == 200:
                break
        except Exception:  # noqa: BLE001 - the proxy answers 502/503 or not at all while the hub starts
            pass
        time.sleep(0.5)
    replay = course.session().post(course.extra["launch_url"], data=captured, allow_redirects=False, timeout=30)
    assert replay.status_code == 401 and "oauth_nonce was already used" in error_message(replay)


def test_lti_posts_need_no_xsrf_token_while_the_hub_still_checks_it_elsewhere(lti11_course):
    """Upstream's 403 "_xsrf argument missing" on JupyterHub >= 4: an LMS cannot send a hub's token."""
    fresh = lti11_course.session()  # no cookie, no _xsrf field: exactly what an LMS's auto-submitted form has
    response = launch(lti11_course, launch_fields("lms-form-probe"), session=fresh)
    assert response.status_code == 302, error_message(response)
    control = fresh.post(f"{lti11_course.url}/hub/api/users/lms-form-probe/server", allow_redirects=False,
                         timeout=30)
    assert control.status_code == 403 and "xsrf" in control.text.lower(), control.text[:300]
    log = hub_log(lti11_course)
    assert "'_xsrf' argument missing from POST" in log  # the control request
    assert not [line for line in log.splitlines() if "/hub/lti/launch" in line and "_xsrf" in line]


def test_the_lms_may_frame_the_hub_and_the_servers_and_cookies_fit_the_scheme(lti11_course):
    origin = lti11_course.extra["lms_origin"]
    wanted = f"frame-ancestors 'self' {origin}"
    student = lti11_course.session()
    first = launch(lti11_course, launch_fields("frame-probe"), session=student)
    start_own_server(student, lti11_course.url, "frame-probe")
    for page in ("/hub/home", "/user/frame-probe/lab"):
        response = student.get(lti11_course.url + page, timeout=60)
        policies = {p.strip() for p in response.headers["Content-Security-Policy"].split(",")}
        assert policies == {wanted}, f"{page}: nginx, hub and server must agree: {policies}"
    cookies = first.raw.headers.getlist("Set-Cookie")
    assert cookies and all(("SameSite=None" in c and "Secure" in c) == lti11_course.url.startswith("https")
                           for c in cookies), cookies
