"""The course's seats and the line for them: a queue instead of JupyterHub's 429.

JupyterHub refuses a start beyond `concurrent_spawn_limit` or `active_server_limit` with 429, and an
LTI launch is a one-time signed POST: the student must go back to the LMS. Here both limits are
zero in JupyterHub and admission happens inside the spawner's start(): a student beyond them waits
in one line per hub (first come, first served) on JupyterHub's own spawn-pending page, which shows
their place and an estimate (the spawner's progress events) and goes into their server by itself
once admitted. A student's server is one spawner, so whatever they click (the launch again, the
spawn page, the API) finds the same pending spawn and the same ticket: nobody jumps the line and
nobody gets two servers.

Seats are the servers the course's hosts carry (the hub host's share and each other ready node's),
read from the Swarm, so a host that joins adds its seats at once. Starts are limited separately
(`start_limit`): starting a server is CPU-bound, and too many at once make every one of them late.

The hubfleet service reads the line (GET /hub/api/hubfleet/seats) to add hosts; the pressure
service posts when idle servers will be stopped for the line (their seats' release times make the
estimate honest); moving a student's files between hosts and placing expected students ahead of a
class (`hubfleet warm`) go through the same endpoint, because the hub owns who runs where.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

RATE_WINDOW = 600.0  # seconds of seat releases the fallback estimate looks at
DEFAULT_START_SECONDS = 20.0  # before any start was measured: a JupyterLab start on a busy host


@dataclass
class Ticket:
    """One student's place: in line until admitted, then holding a seat until their server stops."""

    key: str
    joined: float
    first_position: int = 0
    admitted: float | None = None
    started: float | None = None  # start() finished (the server answers): the start slot is free again
    wake: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


@dataclass(frozen=True)
class Estimate:
    seconds: float | None  # None: nothing known frees a seat for this place
    basis: str  # now | starts | releases | rate | unknown

    def text(self) -> str:
        if self.seconds is None:
            return ("every seat is taken by a student working right now, so there is no honest estimate yet: "
                    "you go in as soon as one frees")
        seconds = max(5, self.seconds)
        when = f"about {round(seconds / 5) * 5:.0f} seconds" if seconds < 90 else f"about {math.ceil(seconds / 60):.0f} minutes"
        because = {
            "now": "",
            "starts": " (servers ahead of you are starting)",
            "releases": " (when idle servers are stopped for the line, or a host being added is ready)",
            "rate": " (at the rate seats freed in the last 10 minutes)",
        }.get(self.basis, "")
        return f"your server should be running in {when}{because}"


def estimate_wait(position: int, *, free_seats: int, free_slots: int, start_limit: int, start_seconds: float,
                  releases: Iterable[float], release_rate: float, now: float) -> Estimate:
    """When the student at `position` (1 = next in line) has a running server, from what is known now.

    A seat: the first `free_seats` in line have one; the others need one released each, in the order
    the releases are expected (`releases`: times idle servers become stoppable for the line, a host's
    arrival); beyond those, the rate seats freed recently, if any freed. A start: at most
    `start_limit` run at once, each taking `start_seconds`.
    """
    start_seconds = max(1.0, start_seconds)
    start_limit = max(1, start_limit)
    slot_wait = math.ceil(max(0, position - max(0, free_slots)) / start_limit) * start_seconds
    needed = position - max(0, free_seats)
    if needed <= 0:
        return Estimate(slot_wait + start_seconds, "starts" if slot_wait else "now")
    known = sorted(max(now, t) for t in releases)
    if len(known) >= needed:
        seat_wait = known[needed - 1] - now
        basis = "releases"
    elif release_rate > 0:
        after = (known[-1] - now) if known else 0.0
        seat_wait = after + (needed - len(known)) / release_rate
        basis = "rate"
    else:
        return Estimate(None, "unknown")
    return Estimate(max(seat_wait, slot_wait) + start_seconds, basis)


def assign_nodes(users: list[str], capacity: dict[str, int], pinned: dict[str, int]) -> dict[str, str]:
    """Homes for students who have none: each to the node with the most room for its share of students.

    `capacity`: servers each ready node carries; `pinned`: students whose files already live there.
    Students are spread in proportion to capacity, so a class arriving together finds its seats on
    every node instead of all on the emptiest.
    """
    counts = {node: pinned.get(node, 0) for node in capacity if capacity[node] > 0}
    if not counts:
        return {}
    homes = {}
    for user in users:
        node = min(sorted(counts), key=lambda n: (counts[n] + 1) / capacity[n])
        homes[user] = node
        counts[node] += 1
    return homes


class Line:
    """The seats of one hub and the students waiting for them. One per hub process (LINE below)."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.waiting: list[Ticket] = []
        self.holding: dict[str, Ticket] = {}  # admitted: starting, or running until their server stops
        self.moving: dict[str, str] = {}  # student -> node their files are being moved to
        self.start_durations: deque[float] = deque(maxlen=20)
        self.releases_seen: deque[float] = deque(maxlen=500)  # when seats freed (for the rate)
        self.expected_releases: list[float] = []  # posted by the pressure service
        self.coming: tuple[int, float] | None = None  # (seats, when) of a host being added
        self.capacity = 0
        self.down: frozenset[str] = frozenset()  # nodes the Swarm reports down: their servers take no seat
        self.start_limit = 1

    # --- the line ------------------------------------------------------------------------

    def join(self, key: str) -> Ticket:
        """The student's ticket: the same one however often they ask (no second place, no second server)."""
        for ticket in self.waiting:
            if ticket.key == key:
                return ticket
        if key in self.holding:
            return self.holding[key]
        ticket = Ticket(key, self.clock())
        self.waiting.append(ticket)
        ticket.first_position = len(self.waiting)
        return ticket

    def leave(self, key: str) -> None:
        """A student's server stopped, failed or was cancelled: their place or seat is free."""
        self.waiting = [t for t in self.waiting if t.key != key]
        if self.holding.pop(key, None) is not None:
            self.releases_seen.append(self.clock())
        self.wake_all()

    def position(self, key: str) -> int | None:
        for index, ticket in enumerate(self.waiting):
            if ticket.key == key:
                return index + 1
        return None

    @property
    def starting(self) -> int:
        return sum(1 for t in self.holding.values() if t.started is None)

    def used(self, running: set[str]) -> int:
        """Seats taken: servers running, and those admitted that are not running yet."""
        return len(running | set(self.holding))

    def admit(self, running: set[str]) -> list[Ticket]:
        """Admit from the head of the line while a seat and a start slot are free; first come, first served.

        A student whose files are being moved keeps their place but waits for the move to end.
        """
        admitted = []
        used = self.used(running)
        for ticket in list(self.waiting):
            if used >= self.capacity or self.starting >= self.start_limit:
                break
            if ticket.key in self.moving:
                continue
            self.waiting.remove(ticket)
            ticket.admitted = self.clock()
            self.holding[ticket.key] = ticket
            admitted.append(ticket)
            used += 1
            ticket.wake.set()
        return admitted

    def bypass(self, key: str) -> Ticket:
        """A seat without waiting (the health probe, teachers): counted, never queued."""
        self.waiting = [t for t in self.waiting if t.key != key]
        ticket = self.holding.get(key) or Ticket(key, self.clock())
        ticket.admitted = ticket.admitted or self.clock()
        self.holding[key] = ticket
        return ticket

    def started(self, key: str, ok: bool) -> None:
        """The start finished: the slot is free; on failure the seat too."""
        ticket = self.holding.get(key)
        if ticket is None:
            return
        if ok:
            ticket.started = self.clock()
            if ticket.admitted is not None:
                self.start_durations.append(ticket.started - ticket.admitted)
        else:
            self.holding.pop(key, None)
        self.wake_all()

    def wake_all(self) -> None:
        for ticket in self.waiting:
            ticket.wake.set()

    # --- what a waiting student is told ----------------------------------------------------

    @property
    def start_seconds(self) -> float:
        if not self.start_durations:
            return DEFAULT_START_SECONDS
        ordered = sorted(self.start_durations)
        return ordered[len(ordered) // 2]

    def release_rate(self) -> float:
        """Seats freed per second over the last RATE_WINDOW (0 when fewer than two freed)."""
        now = self.clock()
        recent = [t for t in self.releases_seen if now - t <= RATE_WINDOW]
        if len(recent) < 2:
            return 0.0
        return len(recent) / RATE_WINDOW

    def estimate(self, key: str, running: set[str]) -> Estimate | None:
        position = self.position(key)
        if position is None:
            return None
        now = self.clock()
        releases = [t for t in self.expected_releases if t >= now - 60]
        if self.coming and self.coming[1] >= now - 300:
            releases += [self.coming[1]] * self.coming[0]
        return estimate_wait(position, free_seats=self.capacity - self.used(running),
                             free_slots=self.start_limit - self.starting, start_limit=self.start_limit,
                             start_seconds=self.start_seconds, releases=releases,
                             release_rate=self.release_rate(), now=now)

    def snapshot(self, running: set[str]) -> dict:
        used = self.used(running)
        free = max(0, self.capacity - used)
        return {
            "capacity": self.capacity,
            "used": used,
            "running": len(running),
            "starting": self.starting,
            "start_limit": self.start_limit,
            "waiting": len(self.waiting),
            "free": free,
            # students in line whom no free seat awaits: what the pressure service and the hosts are for
            "short": max(0, len(self.waiting) - free),
            "line": [{"user": t.key, "position": i + 1, "waiting_s": round(self.clock() - t.joined, 1),
                      "moving": t.key in self.moving}
                     for i, t in enumerate(self.waiting)],
            "moving": dict(self.moving),
            "coming": {"seats": self.coming[0], "at": self.coming[1]} if self.coming else None,
            "start_seconds": round(self.start_seconds, 1),
            "expected_releases": len(self.expected_releases),
            "released_last_10min": sum(1 for t in self.releases_seen if self.clock() - t <= RATE_WINDOW),
        }


LINE = Line()


# --- the hub's endpoint ---------------------------------------------------------------------

try:  # the hub imports this module; unit tests of the line above need no JupyterHub
    from jupyterhub import orm
    from jupyterhub.apihandlers.base import APIHandler
    from jupyterhub.scopes import needs_scope
    from tornado import web
except ImportError:  # pragma: no cover
    APIHandler = object  # type: ignore[assignment,misc]

    def needs_scope(*scopes):  # type: ignore[no-redef]
        return lambda method: method


def running_users(users, down: frozenset[str] | set[str] = frozenset()) -> set[str]:
    """Students whose default server runs (ready), from the hub's own records.

    A server on a node the Swarm reports down (`down`: node labels) takes no seat: the node's seats
    are not counted either, and that server is gone with its node until the student starts again.
    """
    return {user.name for user in users.values() for name, spawner in user.spawners.items()
            if name == "" and spawner.ready and getattr(spawner, "node", "") not in down}


def placed_load(users, holding: set[str], down: frozenset[str] | set[str] = frozenset()) -> Counter:
    """node -> servers running or admitted there, from the hub's own records (each spawner's node)."""
    active = running_users(users, down) | set(holding)
    load: Counter = Counter()
    for user in users.values():
        spawner = user.spawners.get("") if user.name in active else None
        node = getattr(spawner, "node", "") if spawner is not None else ""
        if node:
            load[node] += 1
    return load


def down_nodes(nodes: dict[str, dict]) -> frozenset[str]:
    """The labels of the nodes the Swarm does not report ready (as read_seat_nodes reads them)."""
    return frozenset(label for label, node in nodes.items() if not node["ready"])


def pinned_users(db) -> dict[str, list[str]]:
    """node -> students whose files live there (the spawner state every start and stop saves)."""
    pins: dict[str, list[str]] = {}
    for spawner in db.query(orm.Spawner).filter(orm.Spawner.name == ""):
        node = (spawner.state or {}).get("node")
        if node and spawner.user is not None:
            pins.setdefault(node, []).append(spawner.user.name)
    return pins


class SeatsAPIHandler(APIHandler):
    """GET: the seats, the line and the nodes. POST: what the pressure service and hubfleet tell the hub."""

    @needs_scope("admin:servers")
    async def get(self):
        spawner_class = self.settings["spawner_class"]
        nodes = await spawner_class.seat_nodes_for(self)
        # The Swarm as it is now, not as the last spawn saw it (before any spawn, no spawner has read it).
        LINE.capacity = sum(n["capacity"] for n in nodes.values() if n["ready"] and n["active"]) or LINE.capacity
        LINE.down = down_nodes(nodes)
        running = running_users(self.users, LINE.down)
        pins = pinned_users(self.db)
        body = LINE.snapshot(running)
        for label, node in nodes.items():
            node["pinned"] = sorted(pins.get(label, []))
        body["nodes"] = nodes
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(body))

    @needs_scope("admin:servers")
    async def post(self):
        body = self.get_json_body()
        if not isinstance(body, dict) or len(body) != 1:
            raise web.HTTPError(400, "give one action: releases, coming, move, moved, unmove or place")
        action, value = next(iter(body.items()))
        handler = getattr(self, f"_{action}", None) if action in ACTIONS else None
        if handler is None:
            raise web.HTTPError(400, f"unknown action {action!r}: give one of {', '.join(ACTIONS)}")
        result = await handler(value)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(result or {}))

    async def _releases(self, value):
        """When idle servers become stoppable for the line (epoch seconds): the estimate's known seats."""
        if not isinstance(value, list) or not all(isinstance(t, (int, float)) for t in value) or len(value) > 10000:
            raise web.HTTPError(400, "releases: a list of times (epoch seconds)")
        LINE.expected_releases = sorted(float(t) for t in value)
        return {"releases": len(value)}

    async def _coming(self, value):
        """A host is being added: its seats and when it should be ready (epoch seconds), or null when done."""
        if value is None:
            LINE.coming = None
            return {}
        if not isinstance(value, dict) or not isinstance(value.get("seats"), int) or not isinstance(
                value.get("at"), (int, float)):
            raise web.HTTPError(400, "coming: {seats: N, at: epoch seconds} or null")
        LINE.coming = (max(0, value["seats"]), float(value["at"]))
        return {}

    def _student(self, value, what: str):
        name = value.get("user") if isinstance(value, dict) else None
        user = self.find_user(name) if isinstance(name, str) else None
        if user is None:
            raise web.HTTPError(404, f"{what}: no such user")
        return user

    async def _move(self, value):
        """Begin moving a student's files: only while their server is stopped and they are not in line."""
        user = self._student(value, "move")
        target = value.get("to")
        if not isinstance(target, str) or not target:
            raise web.HTTPError(400, "move: give the node to move to")
        spawner = user.spawner
        if spawner.active or LINE.position(user.name) is not None or user.name in LINE.holding:
            raise web.HTTPError(409, f"{user.name}'s server is in use: their files stay where they are")
        LINE.moving[user.name] = target
        return {"user": user.name, "from": spawner.node, "to": target}

    async def _moved(self, value):
        """The files are on the new node (copied and compared): the student's home is that node from now on."""
        user = self._student(value, "moved")
        target = LINE.moving.get(user.name)
        if target is None or target != value.get("to"):
            raise web.HTTPError(409, f"no move of {user.name} to that node is in progress (the hub restarted?): "
                                     "the copy must be discarded")
        spawner = user.spawner
        spawner.node = target
        spawner.orm_spawner.state = spawner.get_state()
        self.db.commit()
        LINE.moving.pop(user.name, None)
        LINE.wake_all()
        self.log.info("%s's files now live on %s", user.name, target)
        return {"user": user.name, "node": target}

    async def _unmove(self, value):
        """A move failed: the student's files stay on their node."""
        user = self._student(value, "unmove")
        LINE.moving.pop(user.name, None)
        LINE.wake_all()
        return {"user": user.name}

    async def _place(self, value):
        """Give expected students (hub usernames) a home node now, spread over the nodes' capacity."""
        if not isinstance(value, list) or not all(isinstance(n, str) and n for n in value) or len(value) > 100000:
            raise web.HTTPError(400, "place: a list of usernames")
        spawner_class = self.settings["spawner_class"]
        nodes = await spawner_class.seat_nodes_for(self)
        capacity = {label: node["capacity"] for label, node in nodes.items() if node["ready"] and node["active"]}
        pins = pinned_users(self.db)
        homes, unplaced = {}, []
        for name in value:
            user = self.find_user(name) or self.user_from_username(name)
            node = user.spawner.node
            if node:
                homes[name] = node
            else:
                unplaced.append(user)
        chosen = assign_nodes([u.name for u in unplaced], capacity, {n: len(v) for n, v in pins.items()})
        for user in unplaced:
            if user.name in chosen:
                spawner = user.spawner
                spawner.node = chosen[user.name]
                spawner.orm_spawner.state = spawner.get_state()
                homes[user.name] = spawner.node
        self.db.commit()
        return {"homes": homes}


ACTIONS = ("releases", "coming", "move", "moved", "unmove", "place")
HANDLERS = [(r"/api/hubfleet/seats", SeatsAPIHandler)]
