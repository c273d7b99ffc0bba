"""Elastic hosts: a course grows past its plan when a rush fills it, up to load.max_hosts, and shrinks back.

Where it runs: on the controller, as `hubfleet autoscale` (one round; `--watch` repeats it), which an
operator runs on a timer or as a service. Not in a hub service: adding a host needs the provider's
credentials (a cloud account, or this machine's Docker engine), and those never go onto a host that
students' code runs beside. Not only in the portal's worker: courses are made without the portal.

A round reads the hub's seats and line (GET /hub/api/hubfleet/seats with the hubfleet service's
token: the hub owns who runs where) and the provider's hosts, decides with `decide` (pure: a
function of those readings, the policy and the clock), acts, and records the decision in the
course's outputs and event log, where `hubfleet status` shows it.

- Grow: students wait without a seat, or the seats are nearly all wanted, and the course is below
  its bound: hosts of the planned flavor are added through the provider and join the Swarm; the
  hub's configuration stays the plan's, so the hub never restarts for it, and the new node's seats
  count the moment it is ready (the spawner reads them from the Swarm).
- Shrink: an extra host that has run no server for `empty_for` seconds while the rest of the course
  has room goes, the last added first. The files of students who started there are moved to the
  other hosts first (hubfleet/moves.py: copied, compared, the hub told, only then removed); a host
  whose files could not all move stays, with its seats, and nothing on it is removed.
- Warm: before a class (descriptor class_hours, or `hubfleet warm`), the hosts the class needs.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hubfleet import ansible, tls
from hubfleet.descriptor import ClassHours, ClassSession, Course, parse_recorded
from hubfleet.errors import Busy, HubfleetError, ProvisionError
from hubfleet.jupyter import HubClient
from hubfleet.moves import move_homes, playbook_runner, release_stale
from hubfleet.providers import Host
from hubfleet.sizing import Plan
from hubfleet.state import StateStore
from hubfleet.usernames import spawner_escape

Progress = Callable[[str, str], None]
DECISIONS_KEPT = 100
DEFAULT_ADD_SECONDS = 120.0  # a new host's time to ready before one was measured (docs/benchmarks.md)


# --- readings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSeats:
    capacity: int
    running: int
    pinned: tuple[str, ...] = ()
    ready: bool = True
    active: bool = True
    hub: bool = False


@dataclass(frozen=True)
class Seats:
    """The hub's seats and line, as its endpoint reports them."""

    capacity: int
    used: int
    waiting: int
    short: int  # students in line whom no free seat awaits
    nodes: dict[str, NodeSeats]
    starting: int = 0
    moving: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_api(cls, data: dict) -> "Seats":
        nodes = {name: NodeSeats(int(n.get("capacity", 0)), int(n.get("running", 0)), tuple(n.get("pinned") or ()),
                                 bool(n.get("ready")), bool(n.get("active")), bool(n.get("hub")))
                 for name, n in (data.get("nodes") or {}).items()}
        return cls(int(data.get("capacity", 0)), int(data.get("used", 0)), int(data.get("waiting", 0)),
                   int(data.get("short", 0)), nodes, int(data.get("starting", 0)), dict(data.get("moving") or {}))

    @property
    def demand(self) -> int:
        """Students who want a seat now: those who have one and those in line."""
        return self.used + self.waiting


@dataclass(frozen=True)
class Policy:
    base_hosts: int  # the plan's (or the operator's `scale`) hosts: never removed by elasticity
    max_hosts: int  # load.max_hosts
    node_seats: int  # seats one added host carries
    grow_at: float = 0.9  # add a host when this share of the seats is wanted
    shrink_below: float = 0.5  # an empty extra host goes when the rest would be at most this full
    empty_for: float = 600.0  # seconds an extra host must stay without servers before it goes
    warm_hosts: int = 0  # hosts a class about to start needs (class_hours, `hubfleet warm`)
    warm_reason: str = ""


@dataclass(frozen=True)
class Decision:
    action: str  # grow | move (students' files off an empty extra host, then shrink) | shrink | wait | hold
    reason: str
    add: int = 0
    host: str = ""
    why: str = ""  # a stable name of the reason: the log records a hold or a wait once, not every round

    def to_dict(self) -> dict:
        data = {"action": self.action, "reason": self.reason}
        if self.add:
            data["add"] = self.add
        if self.host:
            data["host"] = self.host
        if self.why:
            data["why"] = self.why
        return data


def decide(hosts: list[str], seats: Seats, policy: Policy, now: float,
           empty_since: dict[str, float]) -> tuple[Decision, dict[str, float]]:
    """What to do now, and the extra hosts' empty-since times to keep for the next round.

    `hosts`: the course's hosts, hub first, in the order they were added.
    """
    empty = dict(empty_since)
    n = len(hosts)
    floor = max(policy.base_hosts, min(policy.warm_hosts, policy.max_hosts))
    joining = [h for h in hosts if h not in seats.nodes or not seats.nodes[h].ready]
    if joining:
        return Decision("grow", f"{', '.join(joining)} is not a ready node of the course's Swarm: configuring "
                                "the hosts again", add=0), empty
    if n < floor:
        why = policy.warm_reason or f"the plan has {policy.base_hosts} host(s)"
        return Decision("grow", f"{why}: adding {floor - n} host(s)", add=floor - n), {}
    demand, capacity = seats.demand, seats.capacity
    if seats.short > 0 or (capacity and demand >= policy.grow_at * capacity):
        if n >= policy.max_hosts:
            return Decision("hold", f"{demand} student(s) want one of {capacity} seats, and the course is at its "
                                    f"bound of {policy.max_hosts} host(s) (load.max_hosts): the line waits for seats "
                                    "to free", why="at-bound"), empty
        wanted = max(seats.short, math.ceil(demand - policy.grow_at * capacity) + 1, 1)
        add = min(policy.max_hosts - n, max(1, math.ceil(wanted / max(1, policy.node_seats))))
        return Decision("grow", f"{demand} student(s) want one of {capacity} seats ({seats.waiting} in line): "
                                f"adding {add} host(s) of {policy.node_seats} seats", add=add), {}
    extras = hosts[floor:]
    if not extras:
        return Decision("hold", f"{demand} of {capacity} seats wanted; the course has its planned hosts",
                        why="planned"), {}
    candidate = extras[-1]
    node = seats.nodes[candidate]
    empty = {h: t for h, t in empty.items() if h in extras}
    if node.running or seats.waiting:
        empty.pop(candidate, None)
        return Decision("hold", f"{candidate} runs {node.running} server(s)" if node.running
                        else f"{seats.waiting} student(s) in line", host=candidate, why="in-use"), empty
    rest = capacity - node.capacity
    if demand > policy.shrink_below * rest:
        empty.pop(candidate, None)
        return Decision("hold", f"{candidate} is empty, but without it {demand} student(s) would fill "
                                f"{demand}/{rest} seats", host=candidate, why="needed"), empty
    since = empty.setdefault(candidate, now)
    if now - since < policy.empty_for:
        return Decision("wait", f"{candidate} has been empty for {now - since:.0f} s: it goes after "
                                f"{policy.empty_for:.0f} s if it stays so", host=candidate, why="empty"), empty
    if node.pinned:
        return Decision("move", f"{candidate} has been empty for {now - since:.0f} s: moving the files of "
                                f"{len(node.pinned)} student(s) to the other hosts (copied and compared first), "
                                "then removing it", host=candidate, why="move"), empty
    empty.pop(candidate, None)
    return Decision("shrink", f"{candidate} has been empty for {now - since:.0f} s and holds no student's files: "
                              f"removing it ({demand} of {rest} remaining seats wanted)", host=candidate), empty


# --- class hours and warming ---------------------------------------------------------------


def class_now(hours: ClassHours | None, now: dt.datetime) -> tuple[ClassSession, dt.datetime] | None:
    """The class whose warm-up or time it is (with its start), or None."""
    if hours is None:
        return None
    import zoneinfo

    local = now.astimezone(zoneinfo.ZoneInfo(hours.timezone))
    for session in hours.sessions:
        hour, minute = map(int, session.start.split(":"))
        for days_ahead in (-1, 0, 1):  # a class may start tomorrow (warm-up tonight) or have started yesterday
            day = local.date() + dt.timedelta(days=days_ahead)
            if day.strftime("%a").lower()[:3] not in session.days:
                continue
            start = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=local.tzinfo)
            if start - dt.timedelta(minutes=hours.warm_before) <= local <= start + dt.timedelta(minutes=session.minutes):
                return session, start
    return None


def hosts_for(plan: Plan, students: int) -> int:
    """Fewest hosts (never fewer than planned, never more than the bound) that seat `students` at once."""
    n = len(plan.hosts)
    while n < plan.elastic_hosts and plan.capacity_with(n) < students:
        n += 1
    return n


def warm_target(course: Course, plan: Plan, elastic: dict, now: dt.datetime) -> tuple[int, str]:
    """Hosts a class needs now (0: none), and why."""
    best, why = 0, ""
    found = class_now(course.class_hours, now)
    if found:
        session, start = found
        students = session.students or course.load.students
        best, why = hosts_for(plan, students), (f"the class at {start:%a %H:%M} expects {students} student(s) "
                                                f"(class_hours)")
    warm = elastic.get("warm") or {}
    until = warm.get("until")
    if until and dt.datetime.fromisoformat(until) > now and int(warm.get("hosts", 0)) > best:
        best, why = int(warm["hosts"]), f"`hubfleet warm` asked for {warm.get('students')} student(s) until {until}"
    return best, why


# --- acting --------------------------------------------------------------------------------


@dataclass
class Round:
    """One round of `hubfleet autoscale` for a course: what was read, decided and done."""

    course: str
    decision: Decision
    hosts_before: int
    hosts_after: int
    seconds: float
    seats: Seats | None = None

    def to_dict(self) -> dict:
        return {"course": self.course, **self.decision.to_dict(), "hosts_before": self.hosts_before,
                "hosts_after": self.hosts_after, "seconds": round(self.seconds, 1),
                "seats": None if self.seats is None else {"capacity": self.seats.capacity, "used": self.seats.used,
                                                          "waiting": self.seats.waiting}}


class LiveCourse:
    """What a round needs to know about a live course (read once per round)."""

    def __init__(self, store: StateStore, name: str, progress: Progress):
        from hubfleet.lifecycle import plan_for, provider_for

        self.store, self.name = store, name
        self.instance = store.get(name)
        self.course = parse_recorded(self.instance.descriptor, source="recorded descriptor")
        outputs = self.instance.outputs
        flavors = Path(outputs["flavors"]) if outputs.get("flavors") else None
        self.plan, _ = plan_for(store, self.course, flavors=flavors, hosts=outputs.get("hosts_wanted"))
        self.provider = provider_for(store, name, self.instance.provider, progress)
        self.hosts: list[Host] = self.provider.hosts()

    @property
    def elastic(self) -> dict:
        return dict(self.store.get(self.name).outputs.get("elastic") or {})

    def save(self, **changes) -> None:
        outputs = dict(self.store.get(self.name).outputs)
        outputs["elastic"] = {**(outputs.get("elastic") or {}), **changes}
        self.store.update(self.name, outputs=outputs)

    def hub(self) -> tuple[HubClient, object]:
        """The hub's API as the hubfleet service, and the context in which this process reaches it."""
        token = self.store.get_secret(self.name, "hub-api-token")
        url = self.store.get(self.name).outputs.get("url")
        if not token or not url:
            raise HubfleetError(f"course {self.name} has no hub to ask", hint="run `hubfleet create` first")
        client = HubClient(url, token, verify=tls.trust(self.store.dir, self.course), timeout=30)
        return client, tls.reaching(self.store.dir, self.course, self.hosts)

    def seats(self) -> Seats:
        client, reach = self.hub()
        with reach:
            return Seats.from_api(client.api("GET", "/hubfleet/seats").json())

    def tell_hub(self, body: dict) -> dict:
        client, reach = self.hub()
        with reach:
            response = client.session.post(f"{client.base}/hub/api/hubfleet/seats", json=body, timeout=client.timeout)
        if response.status_code >= 400:
            raise _Refused(response.status_code, response.text[:300])
        return response.json()


class _Refused(HubfleetError):
    def __init__(self, status: int, text: str):
        super().__init__(f"the hub refused ({status}): {text}")
        self.status = status


def autoscale(store: StateStore, name: str, *, progress: Progress | None = None, now: float | None = None,
              empty_for: float | None = None, verbosity: int = 0) -> Round:
    """One round for one course: read, decide, act, record. A course busy with another command is left alone."""
    progress = progress or (lambda kind, message: None)
    started = time.monotonic()
    now = time.time() if now is None else now
    live = LiveCourse(store, name, lambda message: progress("info", message))
    before = len(live.hosts)
    if live.instance.status not in ("ready", "degraded"):
        decision = Decision("hold", f"the course is {live.instance.status}: nothing to scale")
        return Round(name, decision, before, before, time.monotonic() - started)
    elastic = live.elastic
    warm_hosts, warm_reason = warm_target(live.course, live.plan, elastic, dt.datetime.fromtimestamp(now, dt.timezone.utc))
    policy = Policy(base_hosts=len(live.plan.hosts), max_hosts=live.plan.elastic_hosts,
                    node_seats=live.plan.node_capacity, warm_hosts=warm_hosts, warm_reason=warm_reason,
                    empty_for=float(elastic.get("empty_for", 600) if empty_for is None else empty_for))
    seats = live.seats()
    decision, empty_since = decide([h.name for h in live.hosts], seats, policy, now,
                                   {k: float(v) for k, v in (elastic.get("empty_since") or {}).items()})
    live.save(empty_since=empty_since)
    _record(live, decision, seats, now)
    try:
        if decision.action == "grow":
            _grow(live, decision, progress, verbosity, now)
        elif decision.action in ("move", "shrink"):
            with live.store.lock(live.name, "autoscale"):  # grow's create takes the lock itself
                if decision.action == "move":
                    _move_then_shrink(live, decision, seats, progress, verbosity)
                else:
                    _shrink(live, decision, progress)
    except Busy as exc:
        _note(live, "info", f"autoscale: {decision.action} deferred, {exc.message}")
    after = len(live.provider.hosts())
    if after != before:
        live.save(extra=max(0, after - len(live.plan.hosts)))
        _history(live, now, after)
    return Round(name, decision, before, after, time.monotonic() - started, seats)


def _note(live: LiveCourse, kind: str, message: str) -> None:
    live.store.add_event(live.name, kind, message)


def _record(live: LiveCourse, decision: Decision, seats: Seats, now: float) -> None:
    """Every decision that changes something, and every new reason to wait or hold, into the log."""
    decisions = list(live.elastic.get("decisions") or [])
    last = decisions[-1] if decisions else {}
    if decision.action in ("hold", "wait") and (last.get("action"), last.get("why"), last.get("host", "")) == \
            (decision.action, decision.why, decision.host):
        return
    entry = {"at": dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(timespec="seconds"),
             "hosts": len(live.hosts), "seats": seats.capacity, "used": seats.used, "waiting": seats.waiting,
             **decision.to_dict()}
    live.save(decisions=(decisions + [entry])[-DECISIONS_KEPT:])
    _note(live, "step" if decision.action in ("grow", "move", "shrink") else "info",
          f"autoscale: {decision.action}: {decision.reason}")


def _history(live: LiveCourse, now: float, hosts: int) -> None:
    history = list(live.elastic.get("hosts_over_time") or [])
    history.append([dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(timespec="seconds"), hosts])
    live.save(hosts_over_time=history[-DECISIONS_KEPT:])


def _grow(live: LiveCourse, decision: Decision, progress: Progress, verbosity: int, now: float) -> None:
    from hubfleet.lifecycle import create_course

    timings = list(live.elastic.get("grow_seconds") or [])
    expected = sorted(timings)[len(timings) // 2] if timings else DEFAULT_ADD_SECONDS
    extra = max(0, len(live.hosts) + decision.add - len(live.plan.hosts))
    if decision.add:
        try:  # the line's estimate counts the seats on their way
            live.tell_hub({"coming": {"seats": decision.add * live.plan.node_capacity, "at": now + expected}})
        except HubfleetError:
            pass
    started = time.monotonic()
    try:
        create_course(live.store, live.course, progress=progress, probe=False, verbosity=verbosity, extra_hosts=extra)
    finally:
        try:
            live.tell_hub({"coming": None})
        except HubfleetError:
            pass
    seconds = time.monotonic() - started
    if decision.add:
        live.save(grow_seconds=(timings + [round(seconds, 1)])[-10:])
    _note(live, "ok", f"autoscale: the course has {len(live.provider.hosts())} host(s) ({seconds:.0f} s)")


def _shrink(live: LiveCourse, decision: Decision, progress: Progress) -> None:
    """Remove the empty last host (the caller holds the course's lock)."""
    from hubfleet.lifecycle import recorder, _remove_empty_hosts

    if not live.hosts or live.hosts[-1].name != decision.host:
        raise ProvisionError(f"{decision.host} is not the last host of {live.name}: not removing it")
    _remove_empty_hosts(live.store, live.store.get(live.name), len(live.hosts) - 1,
                        recorder(live.store, live.name, progress))
    _note(live, "ok", f"autoscale: removed {decision.host}; the course has {len(live.provider.hosts())} host(s)")


def _move_then_shrink(live: LiveCourse, decision: Decision, seats: Seats, progress: Progress, verbosity: int) -> None:
    """Move the empty extra host's students' files home to the other hosts, then remove it if none stayed
    (the caller holds the course's lock)."""
    from hubfleet.lifecycle import VOLUME_PREFIX, course_inventory

    release_stale(live.tell_hub, seats.moving, progress)
    workdir = live.store.instance_dir(live.name)
    run = playbook_runner(workdir=workdir, inventory=course_inventory(live.store, live.name, live.hosts,
                                                                    live.provider),
                          source=decision.host, verbosity=verbosity, progress=progress)
    result = move_homes(source=decision.host, students=list(seats.nodes[decision.host].pinned),
                        nodes=seats.nodes, tell_hub=live.tell_hub, run=run, volume_prefix=VOLUME_PREFIX,
                        progress=progress)
    # Counts, not names: the course's log (and `status`) never names students.
    for host in sorted(set(result.moved.values())):
        moved = sum(1 for target in result.moved.values() if target == host)
        _note(live, "info", f"autoscale: the files of {moved} student(s) moved from {decision.host} to {host} "
                            "(compared)")
    if result.stayed:
        _note(live, "info", f"autoscale: {decision.host} stays: the files of {len(result.stayed)} student(s) could not "
                            "move this round (a server in use, or the hub refused); the next round tries again")
        return
    _shrink(live, decision, progress)


# --- warming before a class ----------------------------------------------------------------


@dataclass
class Warmed:
    course: str
    hosts: int
    students: int
    volumes: int
    until: str
    decision: Decision

    def to_dict(self) -> dict:
        return {"course": self.course, "hosts": self.hosts, "students": self.students, "volumes": self.volumes,
                "until": self.until, "autoscale": self.decision.to_dict()}


def expected_usernames(course: Course, identities: list[str]) -> list[str]:
    """Hub usernames of the identities a class expects, as the course's login kind names them (reserved ones left out)."""
    from hubfleet.authenticators import kind_of
    from hubfleet.usernames import ReservedName

    kind = kind_of(course)
    names = []
    for identity in identities:
        try:
            names.append(kind.hub_username(identity))
        except ReservedName:
            continue
    return list(dict.fromkeys(names))


def warm_course(store: StateStore, name: str, *, students: int | None = None, minutes: int = 120,
                identities: list[str] | None = None, progress: Progress | None = None,
                verbosity: int = 0, now: float | None = None) -> Warmed:
    """Before a class: the hosts for `students` at once (kept `minutes`), the image on every host, and
    a home and a volume for every expected student (the hub's users and `identities`)."""
    from hubfleet.lifecycle import VOLUME_PREFIX, course_inventory
    from hubfleet.usernames import ADMIN_USER, PROBE_USER

    progress = progress or (lambda kind, message: None)
    now = time.time() if now is None else now
    live = LiveCourse(store, name, lambda message: progress("info", message))
    if live.instance.status not in ("ready", "degraded"):
        raise HubfleetError(f"course {name!r} is {live.instance.status}", hint="warm a course that is ready")
    expected = students or live.course.load.students
    hosts = hosts_for(live.plan, expected)
    until = dt.datetime.fromtimestamp(now + minutes * 60, dt.timezone.utc).isoformat(timespec="seconds")
    live.save(warm={"hosts": hosts, "students": expected, "until": until})
    _note(live, "step", f"warm: {expected} student(s) expected until {until}: {hosts} host(s)")
    decision = autoscale(store, name, progress=progress, now=now, verbosity=verbosity).decision
    live = LiveCourse(store, name, lambda message: progress("info", message))

    client, reach = live.hub()
    with reach:
        known = [u["name"] for u in client.users() if u["name"] not in (ADMIN_USER, PROBE_USER)]
    wanted = list(dict.fromkeys(known + expected_usernames(live.course, identities or [])))
    homes = live.tell_hub({"place": wanted}).get("homes", {}) if wanted else {}
    volumes: dict[str, list[str]] = {}
    for user, node in homes.items():
        volumes.setdefault(node, []).append(VOLUME_PREFIX + spawner_escape(user))
    progress("step", f"the course image on every host, volumes for {len(homes)} student(s)")
    inventory = course_inventory(store, name, live.hosts, live.provider)
    ansible.run_playbook("warm.yml", workdir=store.instance_dir(name), inventory=inventory, progress=progress,
                         verbosity=verbosity, variables={"warm_volumes": volumes})
    _note(live, "ok", f"warm: {len(live.hosts)} host(s), the image on each, {len(homes)} student volume(s) ready")
    return Warmed(name, len(live.hosts), expected, len(homes), until, decision)
