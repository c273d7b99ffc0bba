"""Mail to a course's contacts over its term (hubfleet/notices.py), and reconcile sending it.

The SMTP server is a stand-in that keeps what it was given (or refuses); hubfleet.mail.Mailer's own
SMTP conversation is tried against a real server on 127.0.0.1 in tests/integration/test_portal_mail.py
and over a real term in tests/integration/test_workshop_e2e.py.
"""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from hubfleet import notices
from hubfleet import reconcile as rec
from hubfleet.site import TermSite, parse_site_wide
from hubfleet.state import StateStore
from hubfleet.term import term_of
from tests.unit.test_reconcile import Fleet, course, course_data, fleet  # noqa: F401 (the fixture)

CONTACTS = ["ada@example.edu", "grace@example.edu"]


class Outbox:
    def __init__(self, refuse: bool = False):
        self.sent: list[tuple[list[str], str, str]] = []
        self.refuse = refuse

    def send(self, to, subject, body) -> bool:
        if self.refuse:
            return False
        self.sent.append((list(to), subject, body))
        return True


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


@pytest.fixture
def store(tmp_path) -> StateStore:
    return StateStore(tmp_path / "state")


def live(store: StateStore, name: str = "stats", **kw):
    made = course(name, **kw)
    store.upsert(name, provider="docker", descriptor=made.model_dump(mode="json"))
    store.update(name, status="ready", outputs={"url": f"https://{name}.hub.example.edu"})
    return made


def test_ready_then_ending_then_archived_each_once(store):
    made = live(store).model_copy(update={"contacts": CONTACTS})
    term, outbox = term_of(made, TermSite()), Outbox()
    assert notices.send_due(store, "stats", made, term, at("2027-01-08T01:00"), outbox) == ["ready"]
    to, subject, body = outbox.sent[0]
    assert to == CONTACTS and subject == "[hubfleet] stats is ready"
    assert "https://stats.hub.example.edu" in body and "shared password" in body
    assert notices.send_due(store, "stats", made, term, at("2027-01-09"), outbox) == [], "nothing twice"
    ending = notices.send_due(store, "stats", made, term, term.notice_at + dt.timedelta(hours=1), outbox)
    assert ending == ["ending"] and outbox.sent[-1][1] == "[hubfleet] stats ends on 2027-01-31"
    assert "until 2027-02-15" in outbox.sent[-1][2]
    store.update("stats", status="archived", outputs={**store.get("stats").outputs,
                                                        "archive": {"path": "/srv/a/stats-20270215T000000Z.tar"}})
    assert notices.send_due(store, "stats", made, term, term.remove_at, outbox) == ["archived"]
    assert "stats-20270215T000000Z.tar" in outbox.sent[-1][2] and "/srv/a" not in outbox.sent[-1][2]
    assert notices.send_due(store, "stats", made, term, term.remove_at, outbox) == []
    assert len(outbox.sent) == 3
    assert sum("mailed the course's 2 contact(s)" in m for *_, m in store.events("stats")) == 3


def test_no_contacts_no_mail_and_a_refused_mail_is_due_again(store):
    made = live(store)
    term = term_of(made, TermSite())
    assert notices.due(store.get("stats"), made, term, at("2027-01-09")) == []
    with_contacts = made.model_copy(update={"contacts": CONTACTS})
    assert notices.send_due(store, "stats", with_contacts, term, at("2027-01-09"), Outbox(refuse=True)) == []
    assert "notices" not in store.get("stats").outputs
    assert [n.kind for n in notices.due(store.get("stats"), with_contacts, term, at("2027-01-09"))] == ["ready"]


def test_the_next_session_is_told_afresh(store):
    made = live(store).model_copy(update={"contacts": CONTACTS})
    notices.send_due(store, "stats", made, term_of(made, TermSite()), at("2027-01-09"), Outbox())
    following = made.model_copy(update={"dates": made.dates.model_copy(update={
        "start": dt.date(2027, 9, 6), "end": dt.date(2027, 12, 17)})})
    assert [n.kind for n in notices.due(store.get("stats"), following, term_of(following, TermSite()),
                                        at("2027-09-05"))] == ["ready"]


def test_contacts_must_be_addresses():
    from hubfleet.descriptor import parse_course
    from hubfleet.errors import InvalidInput

    for wrong, says in ((["teacher"], "'teacher' is not an email address"), (CONTACTS + CONTACTS[:1], "twice")):
        with pytest.raises(InvalidInput, match=says) as caught:
            parse_course({**course_data(), "contacts": wrong}, today=dt.date.min)
        assert "contacts" in str(caught.value)


def test_the_site_file_names_the_mail_server():
    wide = parse_site_wide({"mail": {"host": "smtp.example.edu", "sender": "hubs@example.edu"}})
    assert wide.mail.host == "smtp.example.edu" and wide.mail.port == 587 and wide.mail.starttls
    with pytest.raises(Exception, match="password_file"):
        parse_site_wide({"mail": {"host": "smtp.example.edu", "sender": "h@example.edu", "user": "u"}})


def test_reconcile_mails_the_contacts_as_the_term_goes_and_never_twice(fleet, tmp_path, monkeypatch):  # noqa: F811
    outbox = Outbox()
    monkeypatch.setattr(rec, "Mailer", lambda settings: outbox)
    (fleet.store.dir / "site.yaml").write_text(yaml.safe_dump(
        {"term": {"backup_every": "off"}, "mail": {"host": "127.0.0.1", "port": 2525, "sender": "h@example.edu",
                                                   "starttls": False}}))
    courses = tmp_path / "courses"
    courses.mkdir()
    (courses / "stats.yaml").write_text(yaml.safe_dump({**course_data(), "contacts": CONTACTS}))
    made = fleet.create

    def create(store, course, **kw):  # the stand-in create, with the hub's address a real one records
        made(store, course, **kw)
        store.update(course.name, outputs={**store.get(course.name).outputs, "url": "https://stats.example.edu"})

    monkeypatch.setattr(rec, "create_course", create)
    first = rec.reconcile(fleet.store, at("2027-01-08"), courses_dir=courses)[0]
    assert first.action == "create" and "mailed the contacts: ready" in first.reason
    assert [s for _, s, _ in outbox.sent] == ["[hubfleet] stats is ready"]
    rec.reconcile(fleet.store, at("2027-01-09"), courses_dir=courses)
    assert len(outbox.sent) == 1
    rec.reconcile(fleet.store, at("2027-01-25"), courses_dir=courses)  # the banner, and the ending mail
    rec.reconcile(fleet.store, at("2027-03-01"), courses_dir=courses)  # archived
    assert [s for _, s, _ in outbox.sent] == ["[hubfleet] stats is ready", "[hubfleet] stats ends on 2027-01-31",
                                              "[hubfleet] stats is archived"]
    assert rec.reconcile(fleet.store, at("2027-03-02"), courses_dir=courses, dry_run=True)
    assert len(outbox.sent) == 3, "a dry run mails nobody"


def test_new_contacts_are_recorded_without_touching_the_hub(fleet, tmp_path):  # noqa: F811
    courses = tmp_path / "courses"
    courses.mkdir()
    path = courses / "stats.yaml"
    path.write_text(yaml.safe_dump(course_data()))
    rec.reconcile(fleet.store, at("2027-01-08"), courses_dir=courses)
    fleet.calls.clear()
    path.write_text(yaml.safe_dump({**course_data(), "contacts": CONTACTS}))
    [recorded] = rec.reconcile(fleet.store, at("2027-01-09"), courses_dir=courses)
    assert (recorded.action, recorded.outcome) == ("record", "done") and fleet.calls == [], "no create"
    assert fleet.store.get("stats").descriptor["contacts"] == CONTACTS
    assert rec.reconcile(fleet.store, at("2027-01-09T01:00"), courses_dir=courses)[0].action == "keep"
