"""The portal's tables and a whole request on both databases it supports: SQLite and a real PostgreSQL.

PostgreSQL is Debian's package (installed here if missing), run by the `postgres` user from a temp
dir on a loopback port, and stopped at the end.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy

from hubfleet.portal.models import PortalStore
from hubfleet.state import StateStore
from tests.unit.test_portal import OPERATOR, PASSWORD, TEACHER, Client, FakeHub, make_app, portal_of, submitted, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_postgresql() -> Path:
    """The directory of PostgreSQL's server programs, installing Debian's package when they are missing."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], env=env, capture_output=True).returncode:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], env=env, capture_output=True, check=True)
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        pytest.fail("PostgreSQL is not installed and `apt-get install postgresql` did not install it")
    return Path(found[-1]).parent


def as_postgres(command: list[str]) -> list[str]:
    """Run as the postgres user when we are root (the server refuses to run as root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    bindir = ensure_postgresql()
    top = Path(tempfile.mkdtemp(prefix="hubfleet-pg-"))
    top.chmod(0o755)  # the postgres user must reach its data dir
    data, sockets = top / "data", top / "sockets"
    password = secrets.token_urlsafe(16)
    pwfile = top / "pwfile"
    pwfile.write_text(password + "\n")
    for path in (data, sockets):
        path.mkdir(mode=0o700)
    if os.geteuid() == 0:
        shutil.chown(top, "postgres")
        for path in (data, sockets, pwfile):
            shutil.chown(path, "postgres")
    port = free_port()
    subprocess.run(as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
                                f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off -c full_page_writes=off"
    subprocess.run(as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(top / "log"), "-o", options,
                                "-w", "-t", "60", "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres:{password}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str | None:
    """None for SQLite in the state dir; a fresh PostgreSQL database for each test otherwise."""
    if request.param == "sqlite":
        return None
    server = request.getfixturevalue("postgres_url")
    name = f"t_{secrets.token_hex(4)}"
    engine = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def db(tmp_path, database_url) -> PortalStore:
    return PortalStore(StateStore(tmp_path / "state", database_url).engine)


def test_the_tables_live_on_the_state_stores_engine(tmp_path, database_url):
    store = StateStore(tmp_path / "state", database_url)
    PortalStore(store.engine)
    tables = set(sqlalchemy.inspect(store.engine).get_table_names())
    assert {"instances", "events", "portal_users", "portal_requests", "portal_audit", "portal_login_failures",
            "portal_sessions", "portal_images"} <= tables
    assert store.engine.dialect.name == ("sqlite" if database_url is None else "postgresql")


def test_users_requests_and_audit_round_trip(db):
    teacher = db.ensure_user("Ada@Example.edu", email="ada@example.edu", role="teacher", password_hash="h")
    assert db.user_by_login("ADA@example.edu ").id == teacher.id
    row = db.add_request(teacher, name="c1", title="Ünïcode — <b>", form={"at_once": "2"},
                         descriptor={"name": "c1", "dates": {"start": "2027-01-01"}}, plan={"hosts": []}, notes="n")
    got = db.request(row.id)
    assert (got.title, got.form, got.descriptor["dates"]) == ("Ünïcode — <b>", {"at_once": "2"}, {"start": "2027-01-01"})
    assert got.created_at.tzinfo is not None
    assert db.name_taken_by("c1").id == row.id and db.name_taken_by("c1", except_id=row.id) is None
    db.audit("ops@example.edu", "reject", request_id=row.id, detail="too big")
    entry = db.audit_log(request_id=row.id)[0]
    assert (entry.actor, entry.action, entry.detail) == ("ops@example.edu", "reject", "too big")
    assert entry.at.tzinfo is not None


def test_only_one_of_two_simultaneous_approvals_wins(db):
    teacher = db.ensure_user("ada@example.edu", email="ada@example.edu", role="teacher")
    row = db.add_request(teacher, name="c1", title="t", form={}, descriptor={}, plan={}, notes="")
    barrier, wins = threading.Barrier(8), []

    def approve(who: int) -> None:
        barrier.wait()
        if db.update_request(row.id, expect=("requested",), state="approved", decided_by=f"op{who}"):
            wins.append(who)

    threads = [threading.Thread(target=approve, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1 and db.request(row.id).decided_by == f"op{wins[0]}"


def test_sign_in_failures_are_counted_in_the_database(db):
    from hubfleet.portal.auth import Throttle
    from hubfleet.portal.config import LoginLimits

    throttle = Throttle(db, LoginLimits(per_account=3, per_ip=100))
    for _ in range(3):
        assert throttle.blocked("ada", "127.0.0.1") is None
        throttle.failed("ada", "127.0.0.1")
    assert "this account" in throttle.blocked("ada", "127.0.0.1")
    assert throttle.blocked("bob", "127.0.0.1") is None
    assert throttle.blocked("ada", "192.0.2.1") is None, "from elsewhere the account is not paused"


def test_a_request_from_form_to_ready_hub(tmp_path, database_url):
    """The whole portal on this database, with an injected fake create (no Docker here)."""
    fake = FakeHub()
    app = make_app(tmp_path / "state", fake, database_url=database_url)
    try:
        teacher, operator = Client(app, TEACHER), Client(app, OPERATOR)
        request_id = submitted(app, teacher)
        operator.get("/operator/")
        assert operator.post(f"/operator/requests/{request_id}/approve").status_code == 302
        db = portal_of(app).db
        wait_for(lambda: db.request(request_id).state == "ready", what="ready")
        page = teacher.get(f"/requests/{request_id}").text
        assert "hosts: 1 x d.small on docker" in page and "ready at http://127.0.0.1:9/python-101" in page
        assert [a.action for a in db.audit_log()][:2] == ["approve", "request"]
        assert Client(app).sign_in(TEACHER, "wrong" + PASSWORD).status_code == 401
        # Sessions live in this database: sign-out ends the session for every copy of its cookie.
        copied = app.test_client()
        copied.set_cookie("hubfleet_portal", teacher.http.get_cookie("hubfleet_portal").value)
        assert copied.get("/requests").status_code == 200
        teacher.get("/requests")
        teacher.post("/logout")
        assert copied.get("/requests").status_code == 302
    finally:
        portal_of(app).shutdown()
