"""The portal over a course's term: approval before the warm time schedules the hub instead of
making it; the worker's round (`Worker.due`, every 5 minutes under `portal serve`) makes it when
due, tells the teacher of the end once, and archives it after its grace. A fake create/destroy
(tests/unit/test_portal.py's FakeHub) and a recording mailer stand in; the clock is the test's.
"""

from __future__ import annotations

import datetime as dt

import pytest

from hubfleet.portal.worker import NOTICE
from hubfleet.term import moment
from tests.unit.test_portal import TEACHER, Client, FakeHub, future, make_app, portal_of, submitted, wait_for


class Mails:
    def __init__(self):
        self.sent: list[tuple[list[str], str, str]] = []

    def send(self, to, subject, body) -> bool:
        self.sent.append((list(to), subject, body))
        return True

    def subjects(self) -> list[str]:
        return [subject for _, subject, _ in self.sent]


@pytest.fixture
def term_app(tmp_path):
    fake = FakeHub()
    app = make_app(tmp_path / "state", fake)
    mails = Mails()
    portal_of(app).notifier.mailer = mails
    yield app, fake, mails
    portal_of(app).shutdown()


def drain(app) -> None:
    """Wait for the mails queued so far (the notifier sends on a thread of its own)."""
    portal_of(app).notifier._pool.submit(lambda: None).result(10)


def test_an_approval_before_the_warm_time_schedules_the_hub_and_the_rounds_run_its_term(term_app):
    app, fake, mails = term_app
    teacher, operator = Client(app, TEACHER), Client(app, "ops@example.edu")
    request_id = submitted(app, teacher, start=future(20), end=future(40))
    operator.get("/operator/")
    approved = operator.post(f"/operator/requests/{request_id}/approve", follow_redirects=True)
    p = portal_of(app)
    term = p.worker.term(p.db.request(request_id))
    assert f"will be created on {moment(term.warm_at)}" in approved.text
    assert p.db.request(request_id).state == "approved" and fake.created == []
    drain(app)
    assert mails.subjects() == ["[hubfleet] python-101 approved: the hub is scheduled"]
    assert moment(term.warm_at) in mails.sent[0][2] and mails.sent[0][0] == [TEACHER]

    assert p.worker.due(term.warm_at - dt.timedelta(minutes=1)) == []
    assert p.worker.due(term.warm_at + dt.timedelta(minutes=1)) == [
        f"python-101: create (due since {term.warm_at:%Y-%m-%d %H:%M} UTC)"]
    wait_for(lambda: p.db.request(request_id).state == "ready", what="ready")
    assert fake.created == ["python-101"]
    assert p.worker.due(term.start_at) == [], "a made course is not made twice"

    assert p.worker.due(term.notice_at + dt.timedelta(hours=1)) == ["python-101: teacher told of the end"]
    assert p.worker.due(term.notice_at + dt.timedelta(hours=2)) == [], "told once"
    drain(app)
    last_day = (term.end_at - dt.timedelta(days=1)).date()
    ending = [m for m in mails.sent if m[1] == f"[hubfleet] python-101 ends on {last_day}"]
    assert len(ending) == 1 and moment(term.remove_at) in ending[0][2]
    assert [a.action for a in p.db.audit_log(request_id=request_id)].count(NOTICE) == 1

    assert p.worker.due(term.remove_at) == ["python-101: archive and remove (grace ended)"]
    wait_for(lambda: p.db.request(request_id).state == "archived", what="archived")
    assert p.db.request(request_id).archive and p.store.get("python-101").status == "archived"
    drain(app)
    assert "[hubfleet] python-101 is archived" in mails.subjects()
    assert p.worker.due(term.remove_at + dt.timedelta(days=1)) == []


def test_an_approval_inside_the_warm_time_makes_the_hub_at_once(term_app):
    app, fake, mails = term_app
    teacher, operator = Client(app, TEACHER), Client(app, "ops@example.edu")
    request_id = submitted(app, teacher, start=future(1), end=future(10))
    operator.get("/operator/")
    assert "is being created" in operator.post(f"/operator/requests/{request_id}/approve", follow_redirects=True).text
    wait_for(lambda: portal_of(app).db.request(request_id).state == "ready", what="ready")
    drain(app)
    assert "[hubfleet] python-101 approved: the hub is being created" in mails.subjects()


def test_an_approved_course_whose_term_passed_unmade_is_closed_not_made(term_app):
    app, fake, _ = term_app
    teacher, operator = Client(app, TEACHER), Client(app, "ops@example.edu")
    request_id = submitted(app, teacher, start=future(20), end=future(40))
    operator.get("/operator/")
    operator.post(f"/operator/requests/{request_id}/approve")
    p = portal_of(app)
    term = p.worker.term(p.db.request(request_id))
    assert p.worker.due(term.remove_at) == ["python-101: ended before it was made"]
    row = p.db.request(request_id)
    assert row.state == "archived" and "ended before it was made" in row.error and fake.created == []
