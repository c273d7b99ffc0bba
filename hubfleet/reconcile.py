"""Bring every course to what its dates say, at a moment (`hubfleet reconcile`, run by a timer).

For each course hubfleet knows (the descriptors of a directory, and the courses in the state store),
hubfleet/term.py says its phase at `now`; one decision follows:

    waiting  nothing yet (a course made early is left alone)
    live     made if missing, finished if a create stopped half-way, changes of its descriptor applied (a
             change of its contacts only recorded),
             repaired (converged) when unhealthy, the end-of-term banner set when due, backed up when a
             backup is due and nobody is on the hub; hosts that vanished are made again and the students
             whose volume went with them get their files back from the last backup (hubfleet/backups.py)
    grace    as live, with the banner telling students to download their work
    over     archived, the archive verified, then removed (a destroy that stopped goes on)

A course's `contacts` are mailed when its hub is ready, when its end is near and when it is archived
(hubfleet/notices.py), through the site file's `mail` server.

Every decision is computed before anything is done (`--dry-run` prints them and stops); each action
is logged in the course's events; a course that fails never stops the others; a course already as it
should be is left alone, so a second run does nothing twice, and a run killed half-way is finished by
the next (create and destroy both resume).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from hubfleet import backups, notices
from hubfleet.descriptor import Course, load_course, parse_recorded
from hubfleet.errors import Busy, HubfleetError
from hubfleet.lifecycle import (
    course_status,
    create_course,
    destroy_course,
    provider_for,
    stop_servers_started_before,
)
from hubfleet.mail import Mailer
from hubfleet.site import TermSite, load_site_wide
from hubfleet.state import Instance, StateStore
from hubfleet.term import Phase, Term, moment, term_of

Action = Literal["wait", "keep", "create", "finish", "apply", "record", "banner", "switch", "repair", "backup",
                 "destroy", "skip"]
ACTING: frozenset[str] = frozenset({"create", "finish", "apply", "record", "banner", "switch", "repair", "backup",
                                    "destroy"})
RECORD_ONLY = frozenset({"contacts"})  # descriptor fields nothing on the hosts reads: recorded without a create
MAX_DESCRIPTORS = 2_000  # a courses directory is a few hundred files; more is a wrong path
UNFINISHED = ("planned", "provisioning", "configuring", "failed")


@dataclass
class Decision:
    course: str
    phase: Phase | None
    action: Action
    reason: str
    source: str = ""
    outcome: str = ""  # done, failed: ..., busy, or "" when not acted on (dry run, nothing to do)
    term: dict = field(default_factory=dict)

    @property
    def acts(self) -> bool:
        return self.action in ACTING

    @property
    def failed(self) -> bool:
        return self.outcome.startswith("failed")

    def to_dict(self) -> dict:
        return {"course": self.course, "phase": self.phase, "action": self.action, "reason": self.reason,
                "source": self.source, "outcome": self.outcome, "term": self.term}


@dataclass(frozen=True)
class Known:
    """A course as reconcile found it: the descriptor to hold it to, where that came from, its record."""

    name: str
    course: Course | None
    source: str
    instance: Instance | None
    problem: str = ""  # a descriptor that could not be read: reported, never acted on


def gather(store: StateStore, courses_dir: Path | None) -> list[Known]:
    """The descriptors of `courses_dir` (the operator's newest word), then every course the store records."""
    found: dict[str, Known] = {}
    if courses_dir is not None:
        paths = sorted(p for p in courses_dir.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if len(paths) > MAX_DESCRIPTORS:
            raise HubfleetError(f"{courses_dir} holds {len(paths)} descriptors (at most {MAX_DESCRIPTORS})",
                                hint="give --courses the directory of the course descriptors only")
        for path in paths:
            try:
                course = load_course(path, today=dt.date.min)  # the dates decide below, not today's date
            except HubfleetError as exc:
                found[f"\0{path}"] = Known(path.name, None, str(path), None, problem=str(exc))
                continue
            if course.name in found:
                earlier = found[course.name].source
                found[f"\0{path}"] = Known(course.name, None, str(path), None,
                                           problem=f"{path} names course {course.name!r}, as {earlier} does — "
                                                   "give each course one descriptor")
                continue
            found[course.name] = Known(course.name, course, str(path), store.find(course.name))
    for instance in store.all():
        if instance.name in found:
            continue
        try:
            course = parse_recorded(instance.descriptor)
        except HubfleetError as exc:
            found[instance.name] = Known(instance.name, None, "state store", instance, problem=str(exc))
            continue
        found[instance.name] = Known(instance.name, course, "state store", instance)
    return list(found.values())


def decide(known: Known, term: Term, now: dt.datetime, *, healthy: Callable[[str], list[str]],
           backup_every: dt.timedelta | None = None, users_on: Callable[[str], list[str]] = lambda name: []) -> Decision:
    """What this course needs at `now`; `healthy(name)` lists a live course's problems and `users_on(name)` the
    students on its hub (each asked only when needed)."""
    phase = term.phase(now)
    inst = known.instance
    made = inst is not None and inst.status != "archived"

    def decision(action: Action, reason: str) -> Decision:
        return Decision(known.name, phase, action, reason, known.source, term=term.to_dict())

    if phase == "waiting":
        return decision("keep" if made else "wait", f"made early ({inst.status}); left as it is" if made
                        else f"made from {moment(term.warm_at)}, {term.start_at.date()} being the first day")
    if phase == "over":
        if not made:
            return decision("keep", "ended and removed" if inst else f"ended at {moment(term.remove_at)}; never made")
        return decision("destroy", f"grace ended at {moment(term.remove_at)}: archive, verify, remove")
    # live or grace
    if inst is None:
        return decision("create", f"due since {moment(term.warm_at)}")
    if inst.status == "archived":
        before = (inst.descriptor.get("dates") or {})
        now_dates = known.course.model_dump(mode="json")["dates"] if known.course else before
        if (before.get("start"), before.get("end")) != (now_dates.get("start"), now_dates.get("end")):
            return decision("create", f"a new session (dates {now_dates.get('start')} – {now_dates.get('end')}; "
                                      f"the last one's archive is kept): due since {moment(term.warm_at)}")
        return decision("skip", f"destroyed before its end ({inst.updated_at:%Y-%m-%d}); not made again — give "
                                "the next session its own dates")
    if inst.status == "destroying":
        return decision("skip", "a destroy is under way: `hubfleet destroy` finishes it, reconcile does not undo it")
    if inst.status in UNFINISHED:
        return decision("finish", f"its last create stopped ({inst.status}): converge")
    recorded = parse_recorded(inst.descriptor)
    if known.course is not None and known.course.model_dump(mode="json") != recorded.model_dump(mode="json"):
        if _on_the_hub(known.course) == _on_the_hub(recorded):
            return decision("record", f"{known.source} changes only {', '.join(sorted(RECORD_ONLY))}: recorded, "
                                      "nothing on the hub changes")
        return decision("apply", f"{known.source} differs from what the course runs: apply it (students keep "
                                 "their work; `hubfleet plan --diff` shows what changes)")
    banner = term.banner(now)
    if banner != (inst.outputs.get("announcement") or ""):
        return decision("banner", f"banner: {banner!r}" if banner else "banner removed")
    switch = switch_moment(recorded)
    if switch is not None and now >= switch and inst.outputs.get("image_switched") != switch.isoformat():
        return decision("switch", f"image_switch_at {moment(switch)}: the servers started before the course's "
                                  f"last change ({inst.outputs.get('configured_at', '?')}) stop; students start "
                                  "again into the current image, their files kept")
    problems = healthy(known.name)
    if problems:
        return decision("repair", "unhealthy: " + "; ".join(problems))
    kept = "healthy" + (", students told to download their work" if banner else "")
    due = backup_due(inst.outputs.get("backup"), now, backup_every, since=term.warm_at)
    if due is not None:
        on = users_on(known.name)
        if not on:
            return decision("backup", f"{due}: nobody is on the hub now")
        kept += f"; the backup waits until nobody is on ({len(on)} server(s) run)"
    return decision("keep", kept)


def backup_due(recorded: dict | None, now: dt.datetime, every: dt.timedelta | None, *,
               since: dt.datetime) -> str | None:
    """Why a backup is due at `now` (the last one `every` ago; the first `every` after the course is made,
    at `since`: a course just made holds nothing to save), or None when none is."""
    if every is None:
        return None
    at = (recorded or {}).get("at")
    if not at:
        return f"first backup (due from {moment(since + every)})" if now >= since + every else None
    last = dt.datetime.fromisoformat(at)
    return f"last backup {moment(last)}" if now - last >= every else None


def hosts_vanished(store: StateStore, name: str) -> list[str]:
    """The course's recorded hosts its provider no longer has (their disks, and the volumes on them, gone)."""
    instance = store.get(name)
    if not instance.hosts:
        return []
    have = {h.name for h in provider_for(store, name, instance.provider, lambda k, m: None).hosts()}
    return sorted(h["name"] for h in instance.hosts if h["name"] not in have)


def _on_the_hub(course: Course) -> dict:
    return {k: v for k, v in course.model_dump(mode="json").items() if k not in RECORD_ONLY}


def switch_moment(course: Course) -> dt.datetime | None:
    at = course.image_switch_at
    if at is None:
        return None
    return at.replace(tzinfo=dt.timezone.utc) if at.tzinfo is None else at.astimezone(dt.timezone.utc)


def health_problems(store: StateStore, name: str) -> list[str]:
    """What stops students from using the course now (hosts, nodes, hub API); [] when it works."""
    report = course_status(store, name, probe=False)
    problems = list(report.problems)
    if report.health is None:
        problems.append("the hub does not answer")
    elif not report.health.ok:
        problems += report.health.problems
    return problems


def reconcile(store: StateStore, now: dt.datetime, *, courses_dir: Path | None = None, dry_run: bool = False,
              only: str | None = None, report: Callable[[Decision], None] = lambda d: None,
              progress=None, verbosity: int = 0) -> list[Decision]:
    """Decide for every course, then (unless `dry_run`) act course by course; one failing stops no other."""
    site_wide = load_site_wide(store.dir)
    site: TermSite = site_wide.term
    decisions = []
    for known in gather(store, courses_dir):
        if only and known.name != only:
            continue
        if known.course is None:
            decision = Decision(known.name, None, "skip", known.problem, known.source, outcome="failed: not read")
        else:
            term = term_of(known.course, site)
            try:
                decision = decide(known, term, now, healthy=lambda name: health_problems(store, name),
                                  backup_every=site.backup_interval,
                                  users_on=lambda name: backups.users_on(store, name))
            except HubfleetError as exc:
                decision = Decision(known.name, term.phase(now), "skip", f"could not be looked at: {exc}",
                                    known.source, outcome="failed: " + exc.message, term=term.to_dict())
            if decision.acts and not dry_run:
                act(store, known, term, now, decision, progress=progress, verbosity=verbosity)
            if not dry_run and site_wide.mail is not None and known.course.contacts \
                    and store.find(known.name) is not None:
                mail(store, known, term, now, decision, Mailer(site_wide.mail))
        decisions.append(decision)
        report(decision)
    return decisions


def mail(store: StateStore, known: Known, term: Term, now: dt.datetime, decision: Decision, mailer: Mailer) -> None:
    """Mail the course's contacts what is due (hubfleet/notices.py); a mail problem never fails the course."""
    try:
        sent = notices.send_due(store, known.name, known.course, term, now, mailer)
    except Exception as exc:  # noqa: BLE001 — the course is as reconcile left it; the next run mails again
        store.add_event(known.name, "info", f"mailing the contacts failed ({type(exc).__name__}); the next run "
                                            "tries again")
        return
    if sent:
        decision.reason += f"; mailed the contacts: {', '.join(sent)}"


def act(store: StateStore, known: Known, term: Term, now: dt.datetime, decision: Decision, *, progress=None,
        verbosity: int = 0) -> None:
    """Carry one decision out and record its outcome; errors land in the decision, never escape."""
    if store.find(known.name) is not None:
        store.add_event(known.name, "reconcile", f"{decision.action}: {decision.reason}")
    try:
        if decision.action == "destroy":
            destroy_course(store, known.name, archive=True, progress=progress, verbosity=verbosity)
        elif decision.action == "switch":
            configured_at = store.get(known.name).outputs.get("configured_at")
            if not configured_at:
                raise HubfleetError(f"course {known.name!r} records no configuration time to compare servers with",
                                    hint=f"run `hubfleet create` for {known.name} once, then reconcile again")
            configured = dt.datetime.fromisoformat(configured_at)
            stopped = stop_servers_started_before(store, known.name, configured)
            store.update(known.name, outputs={**store.get(known.name).outputs,
                                              "image_switched": switch_moment(known.course).isoformat()})
            decision.reason += f" ({len(stopped)} server(s) stopped)"
        elif decision.action == "record":
            store.update(known.name, descriptor=known.course.model_dump(mode="json"))
        elif decision.action == "backup":
            made = backups.backup_course(store, known.name, at=now, progress=progress, verbosity=verbosity)
            decision.reason += f" ({made.summary.volumes} student(s), {made.summary.path.name})"
        else:
            vanished = hosts_vanished(store, known.name) if decision.action == "repair" else []
            create_course(store, known.course, progress=progress, verbosity=verbosity,
                          announcement=term.banner(now))
            if vanished:
                restored = backups.restore_vanished(store, known.name, progress=progress, verbosity=verbosity)
                decision.reason += (f" (host(s) {', '.join(vanished)} made again; the files of {len(restored)} "
                                    "student(s) whose volume was gone restored from the last backup)")
        decision.outcome = "done"
    except backups.NotQuiet as exc:
        decision.outcome = f"waits: {exc.message}; the next run tries again"
    except Busy as exc:
        decision.outcome = f"busy: {exc.message}; the next run tries again"
    except HubfleetError as exc:
        decision.outcome = f"failed: {exc.message}"
    except Exception as exc:  # noqa: BLE001 — one course's surprise must not stop the others
        decision.outcome = f"failed: {type(exc).__name__}: {exc}"
    if store.find(known.name) is not None:
        store.add_event(known.name, "reconcile", f"{decision.action}: {decision.outcome}")
