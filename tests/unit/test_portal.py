"""The portal through Flask's test client: SQLite, no Docker, a fake `create` injected into the app factory.

Helpers at the top are shared with the integration tests (PostgreSQL, SMTP, browser).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import stat
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from hubfleet.errors import ProvisionError
from hubfleet.portal import create_app
from hubfleet.portal.auth import hash_password
from hubfleet.portal.config import PortalConfig, parse_config
from hubfleet.portal.models import PortalStore
from hubfleet.state import StateStore

TEACHER, OTHER, OPERATOR = "ada@example.edu", "bob@example.edu", "ops@example.edu"
PASSWORD = "correct-horse-battery"
HOSTILE = "<script>alert('x')</script>'; DROP TABLE portal_requests; --"


def future(days: int) -> str:
    return (dt.date.today() + dt.timedelta(days=days)).isoformat()


def valid_form(**changes: str) -> dict[str, str]:
    form = {"name": "python-101", "title": "Python for everyone", "students": "5", "at_once": "2",
            "start": future(1), "end": future(30), "image": "hubfleet/notebook:latest",
            "auth_kind": "shared-password", "notes": ""}
    form.update(changes)
    return form


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


class FakeHub:
    """A stand-in for create_course/destroy_course: writes the same state and events, optionally waits on a gate."""

    def __init__(self, *, fail_at: str | None = None):
        self.gate = threading.Event()
        self.gate.set()
        self.fail_at = fail_at
        self.created: list[str] = []

    def create(self, store: StateStore, course, progress=None):
        store.upsert(course.name, provider=course.provider, descriptor=course.model_dump(mode="json"))
        store.update(course.name, status="provisioning")
        store.ensure_secret(course.name, "shared-password", nbytes=12)
        store.add_event(course.name, "step", f"hosts: 1 x d.small on {course.provider}")
        store.add_event(course.name, "info", "<b>host</b> started")  # events are text, never HTML
        store.add_event(course.name, "task", "Install the institution's certificate")  # Ansible's detail: not shown
        if not self.gate.wait(timeout=30):
            raise TimeoutError("the test never opened the gate")
        store.add_event(course.name, "step", "configure the hub")
        if self.fail_at == "configure the hub":
            self.fail_at = None  # a retry succeeds
            store.update(course.name, status="failed", error="boom")
            store.add_event(course.name, "failed", "task Install JupyterHub failed on hub: exit 1")
            raise ProvisionError("task Install JupyterHub failed on hub: exit 1", hint="run create again")
        url = f"http://127.0.0.1:9/{course.name}"
        store.update(course.name, status="ready", outputs={"url": url})
        store.add_event(course.name, "ok", f"ready at {url}")
        self.created.append(course.name)
        return SimpleNamespace(instance=store.get(course.name))

    def destroy(self, store: StateStore, name: str, *, archive: bool = True, progress=None):
        store.add_event(name, "step", "archiving the students' work on every host")
        outputs = {}
        if archive:
            path = store.archive_dir() / f"{name}-20270101T000000Z.tar.gz"
            path.write_bytes(b"\x1f\x8b fake archive of " + name.encode())
            outputs["archive"] = {"path": str(path)}
        store.update(name, status="archived", hosts=[], outputs=outputs)
        store.add_event(name, "ok", "destroyed")


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)  # argon2 is slow on purpose: hash once per test run


def make_app(state_dir: Path, fake: FakeHub | None = None, config: PortalConfig | None = None,
             database_url: str | None = None, **kwargs):
    """An app with a teacher (ada), another teacher (bob) and an operator, all with PASSWORD."""
    fake = fake or FakeHub()
    store = StateStore(state_dir, database_url)
    app = create_app(store, config or PortalConfig(images=[{
        "image": "hubfleet/notebook:latest", "label": "Python", "memory_per_user": "256Mi", "cpu_per_user": 0.1}]),
        create=fake.create, destroy=fake.destroy, **kwargs)
    db = portal_of(app).db
    hashed = password_hash()
    db.ensure_user(TEACHER, email=TEACHER, role="teacher", password_hash=hashed)
    db.ensure_user(OTHER, email=OTHER, role="teacher", password_hash=hashed)
    db.ensure_user(OPERATOR, email=OPERATOR, role="operator", password_hash=hashed)
    return app


def portal_of(app):
    return app.extensions["hubfleet_portal"]


class Client:
    """A signed-in test client that carries the CSRF token of the last page it read."""

    def __init__(self, app, login: str | None = None, address: str = "127.0.0.1"):
        self.http = app.test_client()
        self.http.environ_base["REMOTE_ADDR"] = address
        self.token = ""
        if login:
            response = self.sign_in(login, PASSWORD)
            assert response.status_code == 302, response.text

    def get(self, path: str, **kwargs):
        response = self.http.get(path, **kwargs)
        if response.mimetype == "text/html" and "csrf_token" in response.text:
            self.token = csrf_from(response.text)
        return response

    def post(self, path: str, data: dict | None = None, *, csrf: str | None = None, **kwargs):
        data = dict(data or {})
        data.setdefault("csrf_token", self.token if csrf is None else csrf)
        if data["csrf_token"] == "":
            del data["csrf_token"]
        return self.http.post(path, data=data, **kwargs)

    def sign_in(self, login: str, password: str):
        self.get("/login")
        return self.post("/login", {"login": login, "password": password})

    def submit(self, form: dict):
        self.get("/requests/new")
        return self.post("/requests/new", form)


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def field_block(html: str, name: str) -> str:
    """The form field's own block: label, input, hint and the errors shown beside it."""
    match = re.search(rf'<div class="field[^"]*">\s*<label for="f-{name}">.*?</div>', html, re.S)
    assert match, f"no field {name} on the page"
    return match.group(0)


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def fake() -> FakeHub:
    return FakeHub()


@pytest.fixture
def app(tmp_path, fake):
    app = make_app(tmp_path / "state", fake)
    yield app
    fake.gate.set()
    portal_of(app).shutdown()


@pytest.fixture
def teacher(app) -> Client:
    return Client(app, TEACHER)


@pytest.fixture
def operator(app) -> Client:
    return Client(app, OPERATOR)


def submitted(app, teacher: Client, **changes) -> int:
    response = teacher.submit(valid_form(**changes))
    assert response.status_code == 302, response.text
    return int(response.headers["Location"].rsplit("/", 1)[1])


# --- the request form --------------------------------------------------------------------------


def test_form_error_is_shown_beside_its_field_and_nothing_is_stored(app, teacher):
    response = teacher.submit(valid_form(students="many"))
    assert response.status_code == 400
    block = field_block(response.text, "students")
    assert "&#39;many&#39; is not a number" in block and 'aria-invalid="true"' in block
    assert "is not a number" not in field_block(response.text, "title")
    assert 'value="many"' in block  # what was typed is kept, to be fixed
    assert portal_of(app).db.requests() == []


def test_fixed_form_is_stored_with_its_plan(app, teacher):
    request_id = submitted(app, teacher)
    row = portal_of(app).db.request(request_id)
    assert (row.state, row.name, row.descriptor["domain"]) == ("requested", "python-101", "python-101.hub.localhost")
    assert row.descriptor["load"] == {"students": 5, "concurrent": 0.4, "memory_per_user": "256Mi",
                                      "cpu_per_user": 0.1, "disk_per_user": "1Gi", "max_hosts": None}
    assert row.plan["concurrent_users"] == 2 and row.plan["hosts"]
    assert portal_of(app).db.audit_log()[0].action == "request"


def test_a_name_in_use_is_refused_beside_the_name(app, teacher):
    submitted(app, teacher)
    response = teacher.submit(valid_form(title="again"))
    assert response.status_code == 400
    assert "already used by another course" in field_block(response.text, "name")


# --- CSRF, roles, isolation ----------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "wrong-token"])
def test_csrf_missing_or_wrong_is_refused_with_403(app, teacher, operator, token):
    assert teacher.get("/requests/new").status_code == 200
    response = teacher.post("/requests/new", valid_form(), csrf=token)
    assert response.status_code == 403 and "Reload the page" in response.text
    assert portal_of(app).db.requests() == []
    request_id = submitted(app, teacher)
    assert operator.post(f"/operator/requests/{request_id}/approve", csrf=token).status_code == 403
    assert portal_of(app).db.request(request_id).state == "requested"
    fresh = Client(app)
    fresh.get("/login")
    assert fresh.post("/login", {"login": TEACHER, "password": PASSWORD}, csrf=token).status_code == 403


def test_a_teacher_posting_an_approval_gets_403_and_nothing_changes(app, teacher, fake):
    request_id = submitted(app, teacher)
    teacher.get(f"/requests/{request_id}")
    for action in ("approve", "reject", "retry", "destroy"):
        response = teacher.post(f"/operator/requests/{request_id}/{action}", {"reason": "mine"})
        assert response.status_code == 403, action
    assert teacher.get("/operator/").status_code == 403
    assert portal_of(app).db.request(request_id).state == "requested"
    assert fake.created == [] and [a.action for a in portal_of(app).db.audit_log()] == ["request", "sign-in"]


def test_a_teacher_reading_another_teachers_request_gets_404(app, teacher):
    request_id = submitted(app, teacher)
    bob = Client(app, OTHER)
    for path in (f"/requests/{request_id}", f"/requests/{request_id}/events", f"/requests/{request_id}/archive"):
        response = bob.get(path)
        assert response.status_code == 404, path
    assert "python-101" not in bob.get("/requests").text
    assert teacher.get(f"/requests/{request_id}").status_code == 200


def test_signed_out_visitors_are_sent_to_sign_in(app):
    response = app.test_client().get("/requests/1")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")


# --- hostile input ---------------------------------------------------------------------------


def test_script_and_sql_in_every_text_field_are_stored_as_text_and_rendered_escaped(app, teacher, operator):
    request_id = submitted(app, teacher, title=HOSTILE, notes=HOSTILE)
    row = portal_of(app).db.request(request_id)
    assert (row.title, row.notes) == (HOSTILE, HOSTILE)
    escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&#39;; DROP TABLE portal_requests; --"
    for client, path in ((teacher, f"/requests/{request_id}"), (teacher, "/requests"),
                         (operator, "/operator/"), (operator, f"/requests/{request_id}")):
        html = client.get(path).text
        assert "<script>alert" not in html and escaped in html, path

    from hubfleet.portal.forms import TEXT_FIELDS
    stored = 1
    for i, field in enumerate(TEXT_FIELDS):
        form = {**form_for_field(field), "name": f"hostile-{i}", field: HOSTILE}
        response = teacher.submit(form)
        if response.status_code == 302:  # the descriptor model accepts this text: kept exactly, shown escaped
            stored += 1
            row = portal_of(app).db.requests()[0]
            assert row.form[field] == HOSTILE, field
            html = teacher.get(response.headers["Location"]).text
        else:  # refused beside the field, and what was typed is shown back escaped
            assert response.status_code == 400, field
            html = response.text
            if field not in CHOICE_FIELDS:
                assert escaped.split("&#39;;")[0] in html, field
        assert "<script>alert" not in html, field
    assert len(portal_of(app).db.requests()) == stored  # the table is still there, holding only valid requests


CHOICE_FIELDS = ("image", "auth_kind", "lti11_username_key", "lti13_username_key")  # picked, not typed


def form_for_field(field: str) -> dict[str, str]:
    """A valid form whose log-in method uses `field`."""
    if field.startswith("lti11_"):
        return valid_form(auth_kind="lti11")
    if field.startswith("lti13_"):
        return valid_form(auth_kind="lti13", lti13_issuer="https://moodle.example.edu", lti13_client_id="abc",
                          lti13_authorize_url="https://moodle.example.edu/mod/lti/auth.php",
                          lti13_jwks_url="https://moodle.example.edu/mod/lti/certs.php")
    if field.startswith("ldap_"):
        return valid_form(auth_kind="ldap", ldap_server_uri="ldaps://ldap.example.edu",
                          ldap_bind_dn_template="uid={username},ou=people,dc=example,dc=edu")
    return valid_form()


def test_a_hostile_rejection_reason_is_escaped_for_the_teacher(app, teacher, operator):
    request_id = submitted(app, teacher)
    operator.get("/operator/")
    assert operator.post(f"/operator/requests/{request_id}/reject", {"reason": HOSTILE}).status_code == 302
    html = teacher.get(f"/requests/{request_id}").text
    assert "<script>alert" not in html and "&lt;script&gt;" in html


# --- sign-in ------------------------------------------------------------------------------------


def test_twenty_wrong_passwords_are_throttled_with_429(app):
    client = Client(app)
    codes = [client.sign_in(TEACHER, f"wrong-{i}").status_code for i in range(20)]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
    response = client.sign_in(TEACHER, PASSWORD)  # even the right password waits
    assert response.status_code == 429 and "Too many failed sign-ins for this account" in response.text
    assert response.headers["Retry-After"] == "900"
    assert Client(app, OTHER).get("/requests").status_code == 200  # other accounts are not locked out...


def test_wrong_passwords_across_accounts_are_throttled_per_address(tmp_path):
    config = parse_config({"login_limits": {"per_ip": 6}})
    app = make_app(tmp_path / "state", config=config)
    try:
        attacker = Client(app, address="192.0.2.7")
        codes = [attacker.sign_in(f"user{i}@example.edu", "guess-guess-guess").status_code for i in range(7)]
        assert codes == [401] * 6 + [429]
        response = attacker.sign_in(TEACHER, PASSWORD)
        assert response.status_code == 429 and "from your network address" in response.text
        assert Client(app, TEACHER, address="192.0.2.8").get("/requests").status_code == 200
    finally:
        portal_of(app).shutdown()


def test_sign_in_starts_a_new_session_and_sign_out_ends_it(app):
    client = Client(app)
    client.get("/login")
    before = client.token
    assert client.sign_in(TEACHER, PASSWORD).status_code == 302
    client.get("/requests")
    assert client.token != before  # the token seen before sign-in is worthless after it
    client.post("/logout")
    assert client.get("/requests").status_code == 302


@pytest.mark.parametrize("target, lands_on", [("/requests/new", "/requests/new"), ("//evil.example/x", "/"),
                                              ("/\\evil.example", "/"), ("https://evil.example/", "/")])
def test_sign_in_only_returns_to_pages_of_the_portal(app, target, lands_on):
    client = Client(app)
    client.get("/login")
    response = client.http.post(f"/login?next={target}", data={"csrf_token": client.token, "login": TEACHER,
                                                                "password": PASSWORD})
    assert response.headers["Location"] == lands_on


def test_session_cookie_is_httponly_lax_and_secure_behind_https(tmp_path):
    config = PortalConfig(public_url="https://hubs.example.edu")
    app = make_app(tmp_path / "state", config=config)
    try:
        cookie = app.test_client().get("/login").headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    finally:
        portal_of(app).shutdown()


def test_secret_key_is_made_once_and_private(tmp_path):
    first = make_app(tmp_path / "state")
    second = make_app(tmp_path / "state")
    path = tmp_path / "state" / "portal" / "secret-key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"] == path.read_bytes()
    for app in (first, second):
        portal_of(app).shutdown()


def test_directory_users_sign_in_with_ldap_and_become_teachers(tmp_path):
    config = parse_config({"ldap": {"server_uri": "ldaps://ldap.example.edu",
                                    "bind_dn_template": ["uid={username},ou=people,dc=example,dc=edu"]},
                           "ldap_mail_domain": "example.edu"})
    binds = []

    def fake_bind(settings, username, password, ca_file):
        binds.append((settings.server_uri, username))
        return password == "directory-password"

    app = make_app(tmp_path / "state", config=config, ldap_bind=fake_bind)
    try:
        client = Client(app)
        assert client.sign_in("Grace", "nope").status_code == 401
        assert client.sign_in("grace", "directory-password").status_code == 302
        user = portal_of(app).db.user_by_login("grace")
        assert (user.role, user.source, user.email) == ("teacher", "ldap", "grace@example.edu")
        assert binds == [("ldaps://ldap.example.edu", "grace")] * 2
        assert Client(app).sign_in("uid=x,dc=evil", "directory-password").status_code == 401  # never reaches a DN
    finally:
        portal_of(app).shutdown()


# --- approval, progress, failure, archive --------------------------------------------------------


def test_approval_starts_the_worker_with_injected_fake_create_and_the_page_streams_events(app, teacher, operator, fake):
    fake.gate.clear()  # hold the fake create half-way
    request_id = submitted(app, teacher)
    html = operator.get("/operator/").text
    assert "python-101" in html and "d.small" in html  # the sizing plan is beside the request
    started = time.monotonic()
    response = operator.post(f"/operator/requests/{request_id}/approve")
    assert response.status_code == 302 and time.monotonic() - started < 2  # never in the request thread
    db = portal_of(app).db
    wait_for(lambda: db.request(request_id).state == "provisioning", what="provisioning")
    wait_for(lambda: "started" in teacher.get(f"/requests/{request_id}").text, what="first events")
    page = teacher.get(f"/requests/{request_id}").text
    assert 'http-equiv="refresh"' in page and "progress.js" in page
    assert "hosts: 1 x d.small on docker" in page and "&lt;b&gt;host&lt;/b&gt; started" in page
    first = teacher.get(f"/requests/{request_id}/events").json
    assert first["state"] == "provisioning" and len(first["events"]) == 2
    assert "institution" not in page, "Ansible's tasks (skipped ones too) are not the teacher's steps"
    fake.gate.set()
    wait_for(lambda: db.request(request_id).state == "ready", what="ready")
    later = teacher.get(f"/requests/{request_id}/events?after={first['events'][-1]['id']}").json
    assert [e["message"] for e in later["events"]] == ["configure the hub", "ready at http://127.0.0.1:9/python-101"]
    page = teacher.get(f"/requests/{request_id}").text
    assert 'id="hub-url" href="http://127.0.0.1:9/python-101"' in page and "http-equiv" not in page
    password = portal_of(app).store.get_secret("python-101", "shared-password")
    assert password and password in page
    approval = db.audit_log(request_id=request_id)[0]
    assert (approval.actor, approval.action) == (OPERATOR, "approve")


def test_failed_create_shows_the_step_and_a_retry_finishes_it(tmp_path):
    fake = FakeHub(fail_at="configure the hub")
    app = make_app(tmp_path / "state", fake)
    try:
        teacher, operator = Client(app, TEACHER), Client(app, OPERATOR)
        request_id = submitted(app, teacher)
        operator.get("/operator/")
        operator.post(f"/operator/requests/{request_id}/approve")
        db = portal_of(app).db
        wait_for(lambda: db.request(request_id).state == "failed", what="failed")
        page = teacher.get(f"/requests/{request_id}").text
        assert 'id="failed-step">configure the hub<' in page and "Install JupyterHub failed" in page
        assert "Retry" not in page  # teachers are told the operators can retry
        assert "Retry" in operator.get(f"/requests/{request_id}").text
        assert operator.post(f"/operator/requests/{request_id}/retry").status_code == 302
        wait_for(lambda: db.request(request_id).state == "ready", what="ready after retry")
        assert [a.action for a in db.audit_log(request_id=request_id)][:2] == ["retry", "approve"]
    finally:
        portal_of(app).shutdown()


def test_rejection_needs_a_reason_and_is_audited(app, teacher, operator):
    request_id = submitted(app, teacher)
    operator.get("/operator/")
    response = operator.post(f"/operator/requests/{request_id}/reject", {"reason": "  "})
    assert response.status_code == 400 and "give a reason" in response.text
    assert portal_of(app).db.request(request_id).state == "requested"
    operator.get("/operator/")
    operator.post(f"/operator/requests/{request_id}/reject", {"reason": "Use the shared course hub instead."})
    row = portal_of(app).db.request(request_id)
    assert (row.state, row.reason, row.decided_by) == ("rejected", "Use the shared course hub instead.", OPERATOR)
    entry = portal_of(app).db.audit_log(request_id=request_id)[0]
    assert (entry.actor, entry.action, entry.detail) == (OPERATOR, "reject", "Use the shared course hub instead.")
    assert entry.at.tzinfo is not None and abs((dt.datetime.now(dt.timezone.utc) - entry.at).total_seconds()) < 60
    assert "Use the shared course hub instead." in teacher.get(f"/requests/{request_id}").text
    assert operator.post(f"/operator/requests/{request_id}/approve").status_code == 302  # too late: no change
    assert portal_of(app).db.request(request_id).state == "rejected"


def test_destroy_archives_and_only_the_owner_and_operators_download(app, teacher, operator):
    request_id = submitted(app, teacher)
    operator.get("/operator/")
    operator.post(f"/operator/requests/{request_id}/approve")
    db = portal_of(app).db
    wait_for(lambda: db.request(request_id).state == "ready", what="ready")
    operator.get(f"/operator/requests/{request_id}/end")
    assert operator.post(f"/operator/requests/{request_id}/destroy", {"password": PASSWORD}).status_code == 302
    wait_for(lambda: db.request(request_id).state == "archived", what="archived")
    page = teacher.get(f"/requests/{request_id}").text
    assert "Download the students" in page
    download = teacher.get(f"/requests/{request_id}/archive")
    assert download.status_code == 200 and download.data.endswith(b"fake archive of python-101")
    assert operator.get(f"/requests/{request_id}/archive").status_code == 200
    assert Client(app, OTHER).get(f"/requests/{request_id}/archive").status_code == 404
    assert [a.action for a in db.audit_log(request_id=request_id)][:3] == ["download", "download", "destroy"]


def test_a_restarted_portal_fails_cut_off_work_so_it_can_be_retried(tmp_path, fake):
    app = make_app(tmp_path / "state", fake)
    teacher = Client(app, TEACHER)
    request_id = submitted(app, teacher)
    db = portal_of(app).db
    db.update_request(request_id, state="provisioning")
    portal_of(app).shutdown()
    again = make_app(tmp_path / "state", fake)
    try:
        row = portal_of(again).db.request(request_id)
        assert row.state == "failed" and "interrupted" in row.error
    finally:
        portal_of(again).shutdown()


# --- operators' image list --------------------------------------------------------------------


def test_operators_curate_the_image_list_with_checked_values(app, teacher, operator):
    operator.get("/operator/images")
    response = operator.post("/operator/images", {"image": "Not An Image", "label": "R", "memory_per_user": "2",
                                                  "cpu_per_user": "1"})
    assert response.status_code == 400
    assert "not an image reference" in field_block(response.text, "image")
    assert "has no unit" in field_block(response.text, "memory_per_user")
    operator.get("/operator/images")
    operator.post("/operator/images", {"image": "quay.io/jupyter/r-notebook:2024-05-27", "label": "R",
                                       "memory_per_user": "1Gi", "cpu_per_user": "1"})
    assert "quay.io/jupyter/r-notebook:2024-05-27" in teacher.get("/requests/new").text
    assert teacher.post("/operator/images", {"remove": "hubfleet/notebook:latest"}).status_code == 403
    assert [a.action for a in portal_of(app).db.audit_log()][0] == "image-add"


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_adds_an_operator_without_echoing_the_password(tmp_path):
    from hubfleet.cli import cli

    secret = "a-very-secret-passphrase"
    result = CliRunner().invoke(cli, ["--state-dir", str(tmp_path / "s"), "portal", "add-operator", "Ops@Example.edu"],
                                input=f"{secret}\n{secret}\n", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert secret not in result.output and "operator ops@example.edu added" in result.output
    user = PortalStore(StateStore(tmp_path / "s").engine).user_by_login("ops@example.edu")
    assert user.role == "operator" and user.password_hash.startswith("$argon2id$")

    short = tmp_path / "pw"
    short.write_text("short\n")
    result = CliRunner().invoke(cli, ["--state-dir", str(tmp_path / "s"), "portal", "add-teacher", "t@example.edu",
                                      "--password-file", str(short)])
    assert result.exit_code == 2 and "use at least 12" in result.output


def test_cli_refuses_bad_settings_naming_the_field(tmp_path):
    from hubfleet.cli import cli

    settings = tmp_path / "portal.yaml"
    settings.write_text("provider: azure\nsmtp: {host: mail.example.edu}\n")
    result = CliRunner().invoke(cli, ["--state-dir", str(tmp_path / "s"), "portal", "check-config",
                                      "--config", str(settings)])
    assert result.exit_code == 2
    assert "provider: 'azure' is not a provider" in result.output and "smtp.sender: missing" in result.output


# --- sessions, lockout, odd numbers -------------------------------------------------------------


def test_a_copied_cookie_is_worthless_after_sign_out(app):
    teacher = Client(app, TEACHER)
    assert teacher.get("/requests").status_code == 200
    copied = teacher.http.get_cookie("hubfleet_portal").value  # what a shoulder-surfer or a proxy log keeps
    thief = app.test_client()
    thief.set_cookie("hubfleet_portal", copied)
    assert thief.get("/requests").status_code == 200  # the copy works while the session lives...
    teacher.get("/requests")
    teacher.post("/logout")
    assert teacher.get("/requests").status_code == 302
    response = thief.get("/requests")  # ...and not after sign-out: the server forgot the session
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert thief.get("/requests/new").status_code == 302


def test_a_new_password_signs_the_account_out_everywhere(app, tmp_path):
    from hubfleet.cli import cli

    teacher = Client(app, TEACHER)
    assert teacher.get("/requests").status_code == 200
    password = tmp_path / "pw"
    password.write_text("a-brand-new-passphrase\n")
    state = portal_of(app).store.dir
    result = CliRunner().invoke(cli, ["--state-dir", str(state), "portal", "add-teacher", TEACHER,
                                      "--password-file", str(password)])
    assert result.exit_code == 0, result.output
    assert teacher.get("/requests").status_code == 302


def test_wrong_passwords_from_elsewhere_never_lock_the_teacher_out(app):
    attacker = Client(app, address="203.0.113.9")
    codes = [attacker.sign_in(TEACHER, f"guess-{i}").status_code for i in range(7)]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
    assert attacker.sign_in(TEACHER, PASSWORD).status_code == 429  # paused for this account, from there
    assert "from your network address" in attacker.sign_in(TEACHER, PASSWORD).text
    teacher = Client(app, address="198.51.100.20")  # the teacher, from the school's network
    assert teacher.sign_in(TEACHER, PASSWORD).status_code == 302
    assert teacher.get("/requests").status_code == 200


def test_an_ipv6_attacker_cannot_escape_the_pause_by_changing_address_within_their_network(tmp_path):
    config = parse_config({"login_limits": {"per_account": 3}})
    app = make_app(tmp_path / "state", config=config)
    try:
        codes = [Client(app, address=f"2001:db8:1:2::{i:x}").sign_in(TEACHER, "guess-guess").status_code
                 for i in range(1, 6)]
        assert codes == [401, 401, 401, 429, 429]
        assert Client(app, TEACHER, address="2001:db8:9:9::1").get("/requests").status_code == 200
    finally:
        portal_of(app).shutdown()


@pytest.mark.parametrize("path", ["/requests/9223372036854775808", "/requests/99999999999999999999999999",
                                  "/requests/2147483648/events", "/requests/0", "/requests/%C2%B2",
                                  "/requests/%D9%A3", "/requests/-1", "/requests/1e3/archive"])
def test_a_request_number_out_of_range_or_not_ascii_is_404_not_500(app, teacher, operator, path):
    response = teacher.get(path)
    assert response.status_code == 404, response.status_code
    operator.get("/operator/")
    assert operator.post("/operator" + path.split("/events")[0].split("/archive")[0] + "/approve").status_code == 404


def test_a_huge_request_number_names_the_range(app, teacher):
    response = teacher.get("/requests/9223372036854775808")
    assert "request numbers go from 1 to 2147483647" in response.text


@pytest.mark.parametrize("after", ["²", "٣", "9" * 5000, "-1", "1.5", ""])
def test_odd_event_cursors_are_read_as_the_start(app, teacher, after):
    request_id = submitted(app, teacher)
    response = teacher.get(f"/requests/{request_id}/events", query_string={"after": after})
    assert response.status_code == 200 and response.json["state"] == "requested"


@pytest.mark.parametrize("students, words", [("²", "is not a number"), ("٣٠", "is not a number"),
                                             ("9" * 5000, "is not a number"), ("9" * 30, "out of range"),
                                             ("999999999", "out of range")])
def test_odd_numbers_in_the_form_are_refused_beside_their_field(app, teacher, students, words):
    response = teacher.submit(valid_form(students=students))
    assert response.status_code == 400
    assert words in field_block(response.text, "students")
    assert field_block(response.text, "students").count('class="field-error"') == 1, "one message per problem"
    response = teacher.submit(valid_form(at_once=students))
    assert response.status_code == 400
    assert "is not a whole number of students" in field_block(response.text, "at_once") or \
        "keep it under" in field_block(response.text, "at_once") or "more than the 5" in field_block(response.text, "at_once")


def test_control_characters_are_refused_beside_their_field_and_never_stored(app, teacher):
    response = teacher.submit(valid_form(title="Python\x00 101", notes="line one\nline two\x1b[31m"))
    assert response.status_code == 400
    assert "U+0000" in field_block(response.text, "title") and "U+001B" in field_block(response.text, "notes")
    assert portal_of(app).db.requests() == []
    ok = teacher.submit(valid_form(notes="line one\r\nline two\tindented"))  # a text area keeps its lines
    assert ok.status_code == 302


def test_a_nul_in_the_sign_in_name_is_a_wrong_sign_in(app):
    client = Client(app)
    assert client.sign_in("ada@example.edu\x00", PASSWORD).status_code == 401


def test_a_failed_submit_puts_a_summary_first_that_takes_the_focus_and_links_each_field_by_its_label(app, teacher):
    response = teacher.submit(valid_form(title="t" * 5000, students="0"))
    assert response.status_code == 400
    summary = response.text.split('id="error-summary"', 1)[1].split("</div>", 1)[0]
    assert "autofocus" in summary and 'tabindex="-1"' in summary
    assert '<a href="#f-title">Title students see</a>: is too long' in summary
    assert '<a href="#f-students">Expected students</a>:' in summary
    assert summary.count("<li>") == 2, "one line per problem"
    assert 'id="f-title"' in response.text and 'id="f-students"' in response.text


def ready_course(app, teacher, operator) -> int:
    request_id = submitted(app, teacher)
    operator.get("/operator/")
    operator.post(f"/operator/requests/{request_id}/approve")
    wait_for(lambda: portal_of(app).db.request(request_id).state == "ready", what="ready")
    return request_id


def test_ending_a_course_says_what_is_lost_and_asks_the_operators_password_first(app, teacher, operator, fake):
    request_id = ready_course(app, teacher, operator)
    page = operator.get(f"/requests/{request_id}").text
    assert 'id="end-course"' in page and "without_archive" not in page, "no one-click removal beside the state"
    end = operator.get(f"/operator/requests/{request_id}/end").text
    assert "can no longer log in" in end and TEACHER in end and "cannot be undone" in end
    danger = end.split('<details class="danger"', 1)[1]
    assert "deleted for good" in danger and 'name="confirm_name"' in danger
    assert "without_archive" not in end.split('<details class="danger"', 1)[0], "the choice sits apart"
    db = portal_of(app).db
    for form in ({}, {"password": "not-my-password"}):
        refused = operator.post(f"/operator/requests/{request_id}/destroy", form)
        assert refused.status_code == 400 and "Nothing was changed" in refused.text
        assert db.request(request_id).state == "ready"
    assert teacher.post(f"/operator/requests/{request_id}/destroy", {"password": PASSWORD}).status_code == 403
    assert operator.post(f"/operator/requests/{request_id}/destroy", {"password": PASSWORD}).status_code == 302
    wait_for(lambda: db.request(request_id).state == "archived", what="archived")
    assert db.request(request_id).archive


def test_removing_without_saving_needs_the_course_name_typed_again(app, teacher, operator, fake):
    request_id = ready_course(app, teacher, operator)
    operator.get(f"/operator/requests/{request_id}/end")
    db = portal_of(app).db
    wrong = operator.post(f"/operator/requests/{request_id}/destroy",
                          {"without_archive": "on", "password": PASSWORD, "confirm_name": "python"})
    assert wrong.status_code == 400 and "type the course&#39;s short name, python-101" in wrong.text
    assert "<details class=\"danger\" open" in wrong.text and db.request(request_id).state == "ready"
    done = operator.post(f"/operator/requests/{request_id}/destroy",
                         {"without_archive": "on", "password": PASSWORD, "confirm_name": "python-101"})
    assert done.status_code == 302
    wait_for(lambda: db.request(request_id).state == "archived", what="archived")
    assert db.request(request_id).archive is None
    assert db.audit_log(request_id=request_id)[0].detail == "course python-101 WITHOUT archive"


def test_the_teachers_page_says_how_admins_log_in_and_the_operators_page_speaks_to_the_operator(app, teacher, operator):
    request_id = submitted(app, teacher, admin_users="ada, grace")
    waiting = operator.get(f"/requests/{request_id}").text
    assert "Waiting for your decision" in waiting and TEACHER in waiting
    assert "Waiting for an operator" in teacher.get(f"/requests/{request_id}").text
    operator.post(f"/operator/requests/{request_id}/approve")
    store = portal_of(app).store
    wait_for(lambda: portal_of(app).db.request(request_id).state == "ready", what="ready")
    admin_password = store.ensure_secret("python-101", "admin-password", nbytes=32)  # as the real create makes it
    page = teacher.get(f"/requests/{request_id}").text
    assert "Your hub:" in page and 'id="admin-hint"' in page and "Hub admins (ada, grace) log in" in page
    assert f'<code id="admin-password">{admin_password}</code>' in page
    assert "The teacher&#39;s hub:" in operator.get(f"/requests/{request_id}").text


def test_without_admins_the_page_says_so_and_shows_no_admin_password(app, teacher, operator):
    request_id = submitted(app, teacher)
    operator.get("/operator/")
    operator.post(f"/operator/requests/{request_id}/approve")
    wait_for(lambda: portal_of(app).db.request(request_id).state == "ready", what="ready")
    admin_password = portal_of(app).store.ensure_secret("python-101", "admin-password", nbytes=32)
    page = teacher.get(f"/requests/{request_id}").text
    assert "no admins of the course" in page and admin_password not in page


def test_a_scheduled_course_says_when_it_will_be_made(app, teacher, operator):
    request_id = submitted(app, teacher, start=future(20), end=future(30))
    operator.get("/operator/")
    operator.post(f"/operator/requests/{request_id}/approve")
    warm = (dt.date.today() + dt.timedelta(days=18)).isoformat()
    assert f"Approved: created on {warm} 00:00 UTC" in teacher.get(f"/requests/{request_id}").text


def test_dates_are_asked_as_they_are_shown(app, teacher, operator):
    """One format: the form asks YYYY-MM-DD in a text field (a browser's date field shows the reader's
    locale instead), the pages show the same."""
    form = teacher.get("/requests/new").text
    start = re.search(r'<input id="f-start"[^>]*>', form).group(0)
    assert 'type="text"' in start and 'placeholder="YYYY-MM-DD"' in start
    request_id = submitted(app, teacher, start=future(1), end=future(30))
    assert f"{future(1)} – {future(30)}" in teacher.get(f"/requests/{request_id}").text
    assert f"{future(1)} – {future(30)}" in operator.get("/operator/").text


def test_a_teacher_asks_for_a_change_the_operator_sees_what_it_does_and_approving_applies_it(app, teacher, operator, fake):
    request_id = ready_course(app, teacher, operator)
    db = portal_of(app).db
    page = teacher.get(f"/requests/{request_id}").text
    assert 'id="ask-change"' in page
    form = teacher.get(f"/requests/{request_id}/change")
    assert form.status_code == 200 and "Change Python for everyone" in form.text and 'readonly="readonly"' in form.text
    same = teacher.post(f"/requests/{request_id}/change", valid_form())
    assert same.status_code == 400 and "nothing would change" in same.text and db.changes(request_id=request_id) == []
    asked = teacher.post(f"/requests/{request_id}/change", valid_form(students="30", at_once="2", name="renamed"))
    assert asked.status_code == 302
    change = db.changes(request_id=request_id)[0]
    assert change.state == "asked" and change.descriptor["name"] == "python-101", "a course keeps its name"
    assert {c["path"] for c in change.changes} >= {"load.students"}
    shown = operator.get(f"/requests/{request_id}").text
    assert "waiting for your decision" in shown and "load.students" in shown and "Approve and apply" in shown
    assert f"change #{change.id}" in operator.get("/operator/").text
    assert "Approve and apply" not in teacher.get(f"/requests/{request_id}").text
    assert teacher.post(f"/operator/changes/{change.id}/approve").status_code == 403
    again = teacher.post(f"/requests/{request_id}/change", valid_form(students="40", at_once="2"))
    assert again.status_code == 302 and len(db.changes(request_id=request_id)) == 1, "one change waits at a time"

    fake.created.clear()
    operator.get(f"/requests/{request_id}")
    assert operator.post(f"/operator/changes/{change.id}/approve").status_code == 302
    wait_for(lambda: db.request(request_id).state == "ready" and fake.created, what="applied")
    assert fake.created == ["python-101"]
    assert portal_of(app).store.get("python-101").descriptor["load"]["students"] == 30
    assert db.request(request_id).descriptor["load"]["students"] == 30
    assert db.change(change.id).state == "approved" and db.change(change.id).decided_by == OPERATOR
    assert operator.post(f"/operator/changes/{change.id}/approve").status_code == 302
    assert fake.created == ["python-101"], "a decided change is not applied twice"


def test_a_rejected_change_leaves_the_course_as_it_runs(app, teacher, operator, fake):
    request_id = ready_course(app, teacher, operator)
    db = portal_of(app).db
    teacher.get(f"/requests/{request_id}/change")
    teacher.post(f"/requests/{request_id}/change", valid_form(students="30", at_once="2"))
    change = db.changes(request_id=request_id)[0]
    operator.get(f"/requests/{request_id}")
    assert operator.post(f"/operator/changes/{change.id}/reject", {"reason": ""}).status_code == 302
    assert db.change(change.id).state == "asked", "a rejection needs a reason"
    operator.post(f"/operator/changes/{change.id}/reject", {"reason": "30 students need a bigger flavor; ask us"})
    assert db.change(change.id).state == "rejected" and db.request(request_id).state == "ready"
    assert db.request(request_id).descriptor["load"]["students"] == 5
    assert "30 students need a bigger flavor" in teacher.get(f"/requests/{request_id}").text
