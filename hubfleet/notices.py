"""Mail to a course's contacts over its term, sent by `hubfleet reconcile` (the portal mails its own teachers).

Three notices a session, each sent once: the hub is ready (its address and how students log in), its end
is near (from term.notice_before: the last day, until when students can still take their work), and it
is archived (where the archive is, who to ask for it). They go to the descriptor's `contacts` through the
site file's `mail` server; without either nothing is sent. What was sent is recorded in the course's
outputs["notices"] for its session (its dates), so a second run sends nothing twice and the next
session starts afresh; a message the server refused is tried again at the next run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from hubfleet.authenticators import kind_of
from hubfleet.descriptor import Course
from hubfleet.mail import Mailer
from hubfleet.state import Instance, StateStore
from hubfleet.term import Term, moment

KINDS = ("ready", "ending", "archived")


@dataclass(frozen=True)
class Notice:
    kind: str
    subject: str
    body: str


def session_of(course: Course) -> str:
    return f"{course.dates.start}/{course.dates.end}"


def sent(instance: Instance, course: Course) -> dict:
    """What this session's contacts were told already ({kind: when})."""
    recorded = instance.outputs.get("notices") or {}
    return dict(recorded.get("sent") or {}) if recorded.get("session") == session_of(course) else {}


def due(instance: Instance, course: Course, term: Term, now: dt.datetime) -> list[Notice]:
    """The notices this course's contacts should have by now and have not had."""
    if not course.contacts:
        return []
    told = sent(instance, course)
    notices = []
    title = f"\"{course.title}\" ({course.name})"
    url = instance.outputs.get("url")
    live = instance.status in ("ready", "degraded")
    if live and url and "ready" not in told:
        how = kind_of(course).teacher_hint()
        notices.append(Notice("ready", f"[hubfleet] {course.name} is ready",
                              f"Hello,\n\nThe hub for {title} is ready:\n\n  {url}\n\n{how}\n\n"
                              f"It runs until {moment(term.remove_at)}, {course.dates.end} being the last day.\n"))
    last_day = term.end_at.date() - dt.timedelta(days=1)
    if live and now >= term.notice_at and now < term.remove_at and "ending" not in told:
        notices.append(Notice("ending", f"[hubfleet] {course.name} ends on {last_day}",
                              f"Hello,\n\nThe hub for {title} ends with its last day, {last_day}. Students can "
                              f"still log in and download their work until {moment(term.remove_at)}; every page "
                              "of the hub now tells them so. Then it is archived and removed.\n"))
    if instance.status == "archived" and "archived" not in told:
        archive = (instance.outputs.get("archive") or {}).get("path")
        saved = (f"The students' work is saved in the archive {archive.rsplit('/', 1)[-1]}: ask your hub's "
                 "operators for it (one folder per student, each checked against their files)."
                 if archive else "It was removed without an archive.")
        notices.append(Notice("archived", f"[hubfleet] {course.name} is archived",
                              f"Hello,\n\nThe hub for {title} has been removed.\n\n{saved}\n"))
    return notices


def send_due(store: StateStore, name: str, course: Course, term: Term, now: dt.datetime,
             mailer: Mailer) -> list[str]:
    """Send what is due and record it; the kinds sent (one refused stays due for the next run)."""
    instance = store.get(name)
    done = []
    for notice in due(instance, course, term, now):
        if mailer.send(list(course.contacts), notice.subject, notice.body):
            done.append(notice.kind)
            told = {**sent(store.get(name), course), notice.kind: now.isoformat(timespec="seconds")}
            store.update(name, outputs={**store.get(name).outputs,
                                        "notices": {"session": session_of(course), "sent": told}})
            store.add_event(name, "info", f"mailed the course's {len(course.contacts)} contact(s): {notice.kind}")
        else:
            store.add_event(name, "info", f"the {notice.kind} mail could not go out; the next run tries again")
    return done
