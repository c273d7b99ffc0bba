"""Notification emails through a real SMTP server on 127.0.0.1 (aiosmtpd), checked by content."""

from __future__ import annotations

import logging

import pytest

from hubfleet.mail import Mailer
from hubfleet.portal.config import parse_config
from tests.support.smtp import body, free_port, running_inbox
from tests.unit.test_portal import OPERATOR, PASSWORD, TEACHER, Client, FakeHub, make_app, portal_of, submitted, wait_for

SMTP_PASSWORD = "smtp-secret-3f9a"


@pytest.fixture
def smtp():
    with running_inbox("portal", SMTP_PASSWORD) as (inbox, port):
        yield inbox, port


def test_teacher_hears_of_approval_readiness_and_archive_and_everyone_of_failure(tmp_path, smtp, caplog):
    inbox, port = smtp
    password_file = tmp_path / "smtp.pw"
    password_file.write_text(SMTP_PASSWORD + "\n")
    config = parse_config({
        "public_url": "https://hubs.example.edu",
        "smtp": {"host": "127.0.0.1", "port": port, "sender": "hubfleet@example.edu", "starttls": False,
                 "user": "portal", "password_file": str(password_file)},
        "images": [{"image": "hubfleet/notebook:latest", "label": "Python", "memory_per_user": "256Mi",
                    "cpu_per_user": 0.1}],
    })
    caplog.set_level(logging.DEBUG)
    fake = FakeHub(fail_at="configure the hub")
    app = make_app(tmp_path / "state", fake, config=config)
    try:
        teacher, operator = Client(app, TEACHER), Client(app, OPERATOR)
        request_id = submitted(app, teacher, title="Data science, week 1")
        link = f"https://hubs.example.edu/requests/{request_id}"
        operator.get("/operator/")
        operator.post(f"/operator/requests/{request_id}/approve")

        approved, failed = inbox.wait(2)[:2]
        assert approved["Subject"] == "[hubfleet] python-101 approved: the hub is being created"
        assert (approved["From"], approved["X-Envelope-To"]) == ("hubfleet@example.edu", TEACHER)
        assert "\"Data science, week 1\" (python-101) was approved by ops@example.edu" in body(approved)
        assert link in body(approved)
        assert failed["Subject"] == "[hubfleet] python-101 failed"
        assert set(failed["X-Envelope-To"].split(", ")) == {TEACHER, OPERATOR}
        assert "Step: configure the hub" in body(failed) and "Install JupyterHub failed" in body(failed)

        operator.get(f"/requests/{request_id}")
        operator.post(f"/operator/requests/{request_id}/retry")
        ready = inbox.wait(3)[2]
        assert ready["Subject"] == "[hubfleet] python-101 is ready"
        assert "http://127.0.0.1:9/python-101" in body(ready) and "shared password" in body(ready)
        assert portal_of(app).store.get_secret("python-101", "shared-password") not in body(ready)

        operator.get(f"/operator/requests/{request_id}/end")
        operator.post(f"/operator/requests/{request_id}/destroy", {"password": PASSWORD})
        archived = inbox.wait(4)[3]
        assert archived["Subject"] == "[hubfleet] python-101 is archived"
        assert "download the archive" in body(archived) and link in body(archived)
        assert inbox.logins == ["portal"] * 4
    finally:
        portal_of(app).shutdown()
    assert SMTP_PASSWORD not in caplog.text and "sent '[hubfleet] python-101 is ready'" in caplog.text


def test_a_dead_mail_server_is_logged_and_the_course_is_still_created(tmp_path, caplog):
    config = parse_config({"smtp": {"host": "127.0.0.1", "port": free_port(), "sender": "hubfleet@example.edu",
                                    "starttls": False, "timeout": 2}})
    caplog.set_level(logging.WARNING, logger="hubfleet.portal")
    app = make_app(tmp_path / "state", FakeHub(), config=config)
    try:
        teacher, operator = Client(app, TEACHER), Client(app, OPERATOR)
        request_id = submitted(app, teacher, image="hubfleet/notebook:latest")
        operator.get("/operator/")
        operator.post(f"/operator/requests/{request_id}/approve")
        wait_for(lambda: portal_of(app).db.request(request_id).state == "ready", what="ready")
        wait_for(lambda: caplog.text.count("could not send") >= 2, what="two logged send failures")
        assert "ConnectionRefusedError" in caplog.text
    finally:
        portal_of(app).shutdown()


def test_a_server_refusing_the_login_is_logged_without_the_password(tmp_path, smtp, caplog):
    inbox, port = smtp
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("not-the-password-77\n")
    settings = parse_config({"smtp": {"host": "127.0.0.1", "port": port, "sender": "h@example.edu",
                                      "starttls": False, "user": "portal", "password_file": str(wrong),
                                      "timeout": 3}}).smtp
    caplog.set_level(logging.WARNING, logger="hubfleet.portal")
    assert Mailer(settings).send(["a@example.edu"], "subject", "body") is False
    assert inbox.messages == [] and "could not send 'subject'" in caplog.text
    assert "not-the-password-77" not in caplog.text
