"""Notification emails. Sent from a background thread; a server that fails is logged, never raised."""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import Future, ThreadPoolExecutor

from hubfleet.authenticators import KINDS
from hubfleet.portal.models import CourseRequest, PortalStore
from hubfleet.term import Term, moment

log = logging.getLogger("hubfleet.portal")


class Notifier:
    """Tells teachers (and operators, on failure) what happened to a request."""

    def __init__(self, mailer: Mailer, store: PortalStore, public_url: str):
        self.mailer, self.store, self.public_url = mailer, store, public_url
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portal-mail")

    def link(self, request: CourseRequest) -> str:
        return f"{self.public_url}/requests/{request.id}"

    def _teacher(self, request: CourseRequest) -> list[str]:
        user = self.store.user(request.teacher_id)
        return [user.email] if user else []

    def _send(self, to: list[str], subject: str, body: str) -> Future:
        def job() -> bool:
            try:
                return self.mailer.send(to, subject, body)
            except Exception:  # a bug here must not kill the thread that sends every other mail
                log.exception("sending %r failed", subject)
                return False

        return self._pool.submit(job)

    def approved(self, request: CourseRequest, operator: str, *, made_at: dt.datetime | None = None) -> Future:
        when = (f"hubfleet will create it on {moment(made_at)}, before the course's first day; you will get an "
                "email when it is ready." if made_at else "hubfleet is creating it now; this takes a few minutes.")
        subject = "the hub is scheduled" if made_at else "the hub is being created"
        return self._send(self._teacher(request), f"[hubfleet] {request.name} approved: {subject}",
                          f"Hello,\n\nYour request for the course hub \"{request.title}\" ({request.name}) was "
                          f"approved by {operator}. {when}\n\n"
                          f"Follow the progress: {self.link(request)}\n")

    def rejected(self, request: CourseRequest, operator: str, reason: str) -> Future:
        return self._send(self._teacher(request), f"[hubfleet] {request.name} was not approved",
                          f"Hello,\n\nYour request for the course hub \"{request.title}\" ({request.name}) was "
                          f"not approved by {operator}.\n\nReason: {reason}\n\n{self.link(request)}\n")

    def ready(self, request: CourseRequest) -> Future:
        kind = KINDS.get(request.descriptor.get("authenticator", {}).get("kind", ""))
        return self._send(self._teacher(request), f"[hubfleet] {request.name} is ready",
                          f"Hello,\n\nThe hub for \"{request.title}\" is ready:\n\n  {request.url}\n\n"
                          f"{kind.teacher_hint() if kind else ''}\n\nDetails: {self.link(request)}\n")

    def failed(self, request: CourseRequest, step: str | None, error: str) -> Future:
        to = self._teacher(request) + [u.email for u in self.store.operators()]
        return self._send(sorted(set(to)), f"[hubfleet] {request.name} failed",
                          f"Creating or removing the hub for \"{request.title}\" ({request.name}) failed.\n\n"
                          f"Step: {step or 'before the first step'}\nError: {error}\n\n"
                          f"The operators have been told; they can retry from {self.link(request)}\n")

    def change_decided(self, request: CourseRequest, change, operator: str, *, approved: bool,
                       reason: str = "") -> Future:
        what = "\n".join(f"  - {c['path']}: {c['effect']}" for c in change.changes)
        if approved:
            body = (f"Hello,\n\n{operator} approved your change to \"{request.title}\" ({request.name}); hubfleet "
                    f"is applying it now, and mails you when the hub is ready again. What it does:\n\n{what}\n\n"
                    f"Follow it: {self.link(request)}\n")
        else:
            body = (f"Hello,\n\n{operator} did not approve your change to \"{request.title}\" ({request.name}).\n\n"
                    f"Reason: {reason}\n\nThe course runs as before: {self.link(request)}\n")
        return self._send(self._teacher(request), f"[hubfleet] {request.name}: change "
                          + ("approved" if approved else "not approved"), body)

    def ending(self, request: CourseRequest, term: Term) -> Future:
        """notice_before the end (hubfleet/term.py): the dates, what students see, what happens after."""
        last_day = term.end_at.date() - dt.timedelta(days=1)
        return self._send(self._teacher(request), f"[hubfleet] {request.name} ends on {last_day}",
                          f"Hello,\n\nThe hub for \"{request.title}\" ({request.name}) ends with its last day, "
                          f"{last_day}. Students can still log in and download their work until "
                          f"{moment(term.remove_at)}; every page of the hub now tells them so. Then the hub is "
                          f"archived and removed, and you can download the archive from {self.link(request)}\n")

    def archived(self, request: CourseRequest, with_archive: bool) -> Future:
        saved = ("The students' work is saved: sign in and download the archive from "
                 f"{self.link(request)}\n" if with_archive else "It was removed without an archive.\n")
        return self._send(self._teacher(request), f"[hubfleet] {request.name} is archived",
                          f"Hello,\n\nThe hub for \"{request.title}\" ({request.name}) has been removed.\n\n{saved}")

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)
