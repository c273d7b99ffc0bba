"""Long steps off the request thread: approved requests become hubs, finished ones are archived.

A thread pool owned by the app runs `create_course` / `destroy_course`; their progress lands in
the state store's event log, which the request's page reads. `due` is the term's side (hubfleet/
term.py): an approved course is made once its warm time has come, its teacher is told of the end,
and it is archived after its grace; `hubfleet portal serve` calls it every few minutes.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from hubfleet.descriptor import parse_recorded
from hubfleet.errors import HubfleetError
from hubfleet.lifecycle import archive_path
from hubfleet.portal.mail import Notifier
from hubfleet.portal.models import (
    APPROVED, ARCHIVED, ARCHIVING, FAILED, PROVISIONING, READY, CourseRequest, PortalStore,
)
from hubfleet.site import load_site_wide
from hubfleet.state import StateStore
from hubfleet.term import Term, term_of

log = logging.getLogger("hubfleet.portal")

NOTICE = "term-notice"  # the audit entry that says the teacher was told of the end (told once)
CreateFn = Callable[..., Any]  # create_course(store, course, progress=...)
DestroyFn = Callable[..., Any]  # destroy_course(store, name, archive=...)


def last_event_id(store: StateStore, name: str) -> int:
    events = store.events(name) if store.find(name) else []
    return events[-1][0] if events else 0


def failed_step(store: StateStore, name: str, after_id: int) -> str | None:
    """The last step the run started: where it broke."""
    steps = [message for _, _, kind, message in store.events(name, after_id) if kind == "step"] \
        if store.find(name) else []
    return steps[-1] if steps else None


def describe_error(exc: BaseException) -> str:
    """What the page shows: a domain error's own words; anything else only by kind (details go to the log)."""
    if isinstance(exc, HubfleetError):
        return str(exc)
    return f"internal error ({type(exc).__name__}); the portal's log has the details"


class Worker:
    def __init__(self, store: StateStore, portal: PortalStore, notifier: Notifier, *, create: CreateFn,
                 destroy: DestroyFn, workers: int = 2):
        self.store, self.portal, self.notifier = store, portal, notifier
        self.create, self.destroy = create, destroy
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="portal-worker")
        self._stop = threading.Event()

    def start_create(self, request_id: int) -> Future:
        return self._pool.submit(self._guard, self._create, request_id)

    def start_destroy(self, request_id: int, *, archive: bool) -> Future:
        return self._pool.submit(self._guard, self._destroy, request_id, archive)

    def _guard(self, job: Callable, *args) -> None:
        try:
            job(*args)
        except Exception:  # the pool swallows errors silently: make them visible
            log.exception("portal worker job %s%r crashed", job.__name__, args)

    def _fail(self, request: CourseRequest, after_id: int, exc: BaseException) -> None:
        if not isinstance(exc, HubfleetError):
            log.error("request %s (%s) failed", request.id, request.name, exc_info=exc)
        step, error = failed_step(self.store, request.name, after_id), describe_error(exc)
        row = self.portal.update_request(request.id, state=FAILED, error=error, failed_step=step)
        self.notifier.failed(row or request, step, error)

    def _create(self, request_id: int) -> None:
        request = self.portal.request(request_id)
        if request is None:
            return
        after_id = last_event_id(self.store, request.name)
        request = self.portal.update_request(request_id, expect=(APPROVED,), state=PROVISIONING, error=None,
                                             failed_step=None)
        if request is None:
            return  # someone else changed it meanwhile
        try:
            # Dates were checked when the request was made; a late approval must not fail on them.
            course = parse_recorded(request.descriptor, source=f"request {request_id}")
            self.create(self.store, course, progress=None)
        except Exception as exc:
            self._fail(request, after_id, exc)
            return
        instance = self.store.find(request.name)
        url = instance.outputs.get("url") if instance else None
        request = self.portal.update_request(request_id, state=READY, url=url, error=None, failed_step=None)
        self.notifier.ready(request)

    def _destroy(self, request_id: int, archive: bool) -> None:
        request = self.portal.request(request_id)
        if request is None:
            return
        after_id = last_event_id(self.store, request.name)
        instance = self.store.find(request.name)
        try:
            if instance is not None and instance.status != "archived":
                self.destroy(self.store, request.name, archive=archive)
        except Exception as exc:
            self._fail(request, after_id, exc)
            return
        instance = self.store.find(request.name)
        path = archive_path(instance) if instance and instance.status == "archived" else None
        request = self.portal.update_request(request_id, state=ARCHIVED, url=None, error=None, failed_step=None,
                                             archive=str(path) if path else None,
                                             events_until=last_event_id(self.store, request.name))
        self.notifier.archived(request, path is not None)

    def recover(self) -> None:
        """After a restart: work cut off mid-way is failed, to be retried; approved work that is due starts."""
        for request in self.portal.requests(states=(PROVISIONING, ARCHIVING)):
            self.portal.update_request(request.id, state=FAILED, failed_step=None,
                                       error="interrupted: the portal stopped while this ran — retry it")
        self.due()

    def term(self, request: CourseRequest) -> Term:
        course = parse_recorded(request.descriptor, source=f"request {request.id}")
        return term_of(course, load_site_wide(self.store.dir).term)

    def due(self, now: dt.datetime | None = None) -> list[str]:
        """The term's work at `now`: approved courses whose warm time came are made; a ready course's
        teacher is told notice_before its end (once), and it is archived and removed after its grace.
        Returns what was started or sent, one line each, for the log."""
        now = now or dt.datetime.now(dt.timezone.utc)
        done = []
        for request in self.portal.requests(states=(APPROVED, READY)):
            try:
                term = self.term(request)
            except HubfleetError as exc:
                log.error("request %s (%s): its descriptor cannot be read: %s", request.id, request.name, exc)
                continue
            phase = term.phase(now)
            if request.state == APPROVED and phase in ("live", "grace"):
                self.start_create(request.id)
                done.append(f"{request.name}: create (due since {term.warm_at:%Y-%m-%d %H:%M} UTC)")
            elif request.state == APPROVED and phase == "over":
                self.portal.update_request(request.id, expect=(APPROVED,), state=ARCHIVED,
                                           error="the course ended before it was made")
                done.append(f"{request.name}: ended before it was made")
            elif request.state == READY and phase == "over":
                if self.portal.update_request(request.id, expect=(READY,), state=ARCHIVING) is not None:
                    self.portal.audit("hubfleet", "destroy", request_id=request.id,
                                      detail=f"course {request.name} with archive: its grace ended")
                    self.start_destroy(request.id, archive=True)
                    done.append(f"{request.name}: archive and remove (grace ended)")
            elif request.state == READY and now >= term.notice_at and not self.told(request):
                self.portal.audit("hubfleet", NOTICE, request_id=request.id, detail=f"course {request.name}")
                self.notifier.ending(request, term)
                done.append(f"{request.name}: teacher told of the end")
        for line in done:
            log.info("term: %s", line)
        return done

    def told(self, request: CourseRequest) -> bool:
        return any(entry.action == NOTICE for entry in self.portal.audit_log(request_id=request.id))

    def every(self, seconds: float) -> threading.Thread:
        """Run `due` every `seconds`, in a thread of its own, until shutdown."""
        def loop() -> None:
            while not self._stop.wait(seconds):
                try:
                    self.due()
                except Exception:  # the next round tries again; the log says why this one failed
                    log.exception("the term's round failed")

        thread = threading.Thread(target=loop, name="portal-term", daemon=True)
        thread.start()
        return thread

    def shutdown(self, wait: bool = True) -> None:
        self._stop.set()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
