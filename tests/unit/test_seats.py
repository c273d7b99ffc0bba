"""The line for seats (roles/hub/files/hubfleet_seats.py), the spawner's wait in it, and the pressure service's choice.

The hub-side modules are imported as the hub imports them (beside jupyterhub_config.py); the
spawner runs its real start() with the Swarm's answers and the server's start stood in for.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

FILES = Path(__file__).resolve().parents[2] / "roles" / "hub" / "files"
sys.path.insert(0, str(FILES))

import hubfleet_pressure as pressure  # noqa: E402
import hubfleet_seats as seats  # noqa: E402
from hubfleet_seats import Line, assign_nodes, estimate_wait  # noqa: E402


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def line(capacity: int, start_limit: int, clock: Clock | None = None) -> Line:
    made = Line(clock or Clock())
    made.capacity, made.start_limit = capacity, start_limit
    return made


# --- the line -----------------------------------------------------------------------------


def test_first_come_first_served_within_seats_and_start_slots():
    seats_line = line(capacity=3, start_limit=2)
    for name in "abcde":
        seats_line.join(name)
    admitted = seats_line.admit(running=set())
    assert [t.key for t in admitted] == ["a", "b"], "two start slots"
    seats_line.started("a", ok=True)
    assert [t.key for t in seats_line.admit(running={"a"})] == ["c"], "a slot freed, one seat left"
    seats_line.started("b", ok=True)
    assert seats_line.admit(running={"a", "b"}) == [], "every seat taken: d and e wait"
    assert [seats_line.position(n) for n in "de"] == [1, 2]
    seats_line.leave("b")  # b's server stopped
    assert [t.key for t in seats_line.admit(running={"a"})] == ["d"]
    assert seats_line.position("e") == 1


def test_asking_again_keeps_the_same_place_and_one_seat():
    seats_line = line(capacity=1, start_limit=1)
    first = seats_line.join("a")
    for name in "bc":
        seats_line.join(name)
    for _ in range(5):  # launching again, reloading the spawn page, the API: all the same spawner
        assert seats_line.join("c") is seats_line.join("c")
        assert seats_line.position("c") == 3
    seats_line.admit(running=set())
    assert first.admitted is not None and seats_line.join("a") is first, "an admitted student is not queued again"
    assert seats_line.used(running={"a"}) == 1 and len(seats_line.waiting) == 2


def test_leaving_the_line_gives_the_place_to_the_next_and_a_failed_start_frees_the_seat():
    seats_line = line(capacity=1, start_limit=1)
    for name in "abc":
        seats_line.join(name)
    seats_line.leave("b")  # cancelled from the waiting page
    assert [t.key for t in seats_line.waiting] == ["a", "c"]
    seats_line.admit(running=set())
    seats_line.started("a", ok=False)
    assert seats_line.used(running=set()) == 0
    assert [t.key for t in seats_line.admit(running=set())] == ["c"]


def test_a_student_whose_files_move_keeps_the_place_but_waits_for_the_move():
    seats_line = line(capacity=5, start_limit=5)
    for name in "abc":
        seats_line.join(name)
    seats_line.moving["a"] = "course-hub"
    assert [t.key for t in seats_line.admit(running=set())] == ["b", "c"]
    assert seats_line.position("a") == 1
    del seats_line.moving["a"]
    assert [t.key for t in seats_line.admit(running=set())] == ["a"]


def test_bypass_takes_a_seat_without_queueing():
    seats_line = line(capacity=1, start_limit=1)
    seats_line.join("student")
    seats_line.bypass("hubfleet--probe")
    assert seats_line.used(running=set()) == 1
    assert seats_line.admit(running=set()) == [], "the probe holds the only seat"
    seats_line.started("hubfleet--probe", ok=True)
    seats_line.leave("hubfleet--probe")
    assert [t.key for t in seats_line.admit(running=set())] == ["student"]


def test_snapshot_says_how_many_wait_without_a_seat():
    seats_line = line(capacity=2, start_limit=1)
    for name in "abcd":
        seats_line.join(name)
    seats_line.admit(running=set())
    snap = seats_line.snapshot(running={"x"})
    assert snap["used"] == 2 and snap["free"] == 0 and snap["waiting"] == 3 and snap["short"] == 3
    assert [e["user"] for e in snap["line"]] == ["b", "c", "d"]


# --- the estimate --------------------------------------------------------------------------


def test_estimate_with_a_free_seat_is_the_starts_ahead():
    est = estimate_wait(1, free_seats=2, free_slots=1, start_limit=1, start_seconds=10, releases=[],
                        release_rate=0, now=0)
    assert est.seconds == 10 and est.basis == "now"
    est = estimate_wait(3, free_seats=5, free_slots=1, start_limit=1, start_seconds=10, releases=[],
                        release_rate=0, now=0)
    assert est.seconds == 30 and est.basis == "starts", "two starts ahead, one at a time, then mine"


def test_estimate_counts_known_releases_in_order():
    est = estimate_wait(2, free_seats=0, free_slots=5, start_limit=5, start_seconds=10,
                        releases=[300, 120, 900], release_rate=0, now=100)
    assert est.basis == "releases" and est.seconds == pytest.approx(300 - 100 + 10), "the second seat to free"
    past = estimate_wait(1, free_seats=0, free_slots=5, start_limit=5, start_seconds=10, releases=[50],
                         release_rate=0, now=100)
    assert past.seconds == pytest.approx(10), "a release already due counts as now"


def test_estimate_falls_back_to_the_rate_then_admits_it_does_not_know():
    rate = estimate_wait(3, free_seats=0, free_slots=5, start_limit=5, start_seconds=10, releases=[160],
                         release_rate=1 / 30, now=100)
    assert rate.basis == "rate" and rate.seconds == pytest.approx(60 + 2 * 30 + 10)
    unknown = estimate_wait(1, free_seats=0, free_slots=5, start_limit=5, start_seconds=10, releases=[],
                            release_rate=0, now=100)
    assert unknown.seconds is None and "no honest estimate" in unknown.text()
    assert "about 3 minutes" in rate.text() and "rate" in rate.text(), "minutes rounded up: never promise sooner"


def test_the_line_estimate_counts_a_host_being_added():
    clock = Clock(1000)
    seats_line = line(capacity=1, start_limit=1, clock=clock)
    seats_line.bypass("x")  # the only seat taken, by a server that took 20 s to start
    clock.now += 20
    seats_line.started("x", ok=True)
    for name in "ab":
        seats_line.join(name)
    assert seats_line.estimate("b", running={"x"}).seconds is None
    seats_line.coming = (3, 1080)
    estimate = seats_line.estimate("b", running={"x"})
    assert estimate.basis == "releases" and estimate.seconds == pytest.approx(60 + 20), "the host, then a start"


def test_the_rate_is_what_freed_in_the_last_ten_minutes():
    clock = Clock(0)
    seats_line = line(capacity=0, start_limit=1, clock=clock)
    for at in (10, 20, 700, 800, 900):
        clock.now = at
        seats_line.bypass(f"s{at}")
        seats_line.leave(f"s{at}")
    clock.now = 1000
    assert seats_line.release_rate() == pytest.approx(3 / 600)


# --- homes for expected students ---------------------------------------------------------


def test_expected_students_are_spread_by_capacity():
    homes = assign_nodes([f"s{i}" for i in range(9)], {"hub": 3, "worker-1": 6}, {"hub": 0})
    counts = {node: list(homes.values()).count(node) for node in ("hub", "worker-1")}
    assert counts == {"hub": 3, "worker-1": 6}
    assert assign_nodes(["a"], {"hub": 2, "worker-1": 2}, {"hub": 2, "worker-1": 0}) == {"a": "worker-1"}
    assert assign_nodes(["a"], {}, {}) == {}


# --- the spawner's wait ---------------------------------------------------------------------


@pytest.fixture
def spawner_class(monkeypatch):
    import hubfleet_spawner

    fresh = Line()
    monkeypatch.setattr(hubfleet_spawner, "LINE", fresh)
    monkeypatch.setattr(hubfleet_spawner.PinnedSwarmSpawner, "_seats_read_at", 0.0)
    starts: list[str] = []

    async def start_server(self):
        starts.append(self.user.name)
        await asyncio.sleep(0.05)
        return "10.0.0.9", 40000 + len(starts)

    async def nodes(self):
        return {"t-hub": {"capacity": 2, "running": 0, "hub": True, "ready": True, "active": True}}

    monkeypatch.setattr(hubfleet_spawner.PinnedSwarmSpawner, "_start_until_it_answers", start_server)
    monkeypatch.setattr(hubfleet_spawner.PinnedSwarmSpawner, "seat_nodes", nodes)
    monkeypatch.setattr(hubfleet_spawner, "SEATS_FRESH_SECONDS", 0.0)
    return hubfleet_spawner.PinnedSwarmSpawner, fresh, starts


def make_spawner(cls, name: str, users: dict, groups=()):
    user = SimpleNamespace(name=name, groups=[SimpleNamespace(name=g) for g in groups], settings={"users": users},
                           url=f"/user/{name}/")
    spawner = cls(user=user, config=None, start_limit=1, queue_timeout=30, server_start_timeout=5,
                  line_bypass_users=["hubfleet--probe"], line_bypass_groups=["teachers"])
    users[name] = SimpleNamespace(name=name, spawners={"": spawner})
    return spawner


def test_spawners_beyond_the_seats_wait_and_go_in_as_seats_free(spawner_class):
    cls, the_line, starts = spawner_class
    users: dict = {}
    spawners = [make_spawner(cls, f"s{i}", users) for i in range(4)]
    ready: set[str] = set()
    for spawner in spawners:
        type(spawner).ready = property(lambda self: self.user.name in ready)

    async def scenario():
        tasks = [asyncio.create_task(s.start()) for s in spawners]
        await asyncio.sleep(0.5)
        assert starts == ["s0", "s1"], "two seats: two started, one at a time"
        for name in starts:
            ready.add(name)
        assert [t.key for t in the_line.waiting] == ["s2", "s3"]
        events = []
        async for event in spawners[3].progress():
            events.append(event)
            break
        assert "number 2 in line" in events[0]["message"]
        ready.discard("s0")
        spawners[0].clear_state()  # s0's server stopped: its seat goes to s2, the first waiting
        await asyncio.wait_for(tasks[2], 5)
        assert starts[-1] == "s2" and the_line.position("s3") == 1
        ready.add("s2")
        ready.discard("s1")
        spawners[1].clear_state()
        await asyncio.wait_for(tasks[3], 5)
        assert starts == ["s0", "s1", "s2", "s3"] and len(set(starts)) == 4, "one server each"

    asyncio.run(scenario())


def test_cancelling_a_wait_leaves_the_line_and_the_probe_skips_it(spawner_class):
    cls, the_line, starts = spawner_class
    users: dict = {}
    taken = [make_spawner(cls, f"t{i}", users) for i in range(2)]
    waiter = make_spawner(cls, "w", users)
    probe = make_spawner(cls, "hubfleet--probe", users)
    teacher = make_spawner(cls, "prof", users, groups=["teachers"])

    async def scenario():
        for spawner in taken:
            await spawner.start()
        task = asyncio.create_task(waiter.start())
        await asyncio.sleep(0.3)
        assert the_line.position("w") == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert the_line.position("w") is None, "a cancelled wait frees its place"
        await probe.start()
        await teacher.start()
        assert starts[-2:] == ["hubfleet--probe", "prof"], "the probe and teachers do not wait"

    asyncio.run(scenario())


# --- the pressure service's choice ---------------------------------------------------------


def test_pressure_stops_the_longest_idle_never_a_busy_kernel_nor_a_teacher():
    now = 10_000.0
    servers = [
        pressure.Server("busy-oldest", idle_since=now - 5000, busy=True, spared=False),
        pressure.Server("teacher", idle_since=now - 4000, busy=False, spared=True),
        pressure.Server("idle-long", idle_since=now - 3000, busy=False, spared=False),
        pressure.Server("idle-short", idle_since=now - 700, busy=False, spared=False),
        pressure.Server("typing", idle_since=now - 5, busy=False, spared=False),
    ]
    stop, releases = pressure.choose(servers, short=1, timeout=600, now=now)
    assert stop == ["idle-long"]
    assert releases == [now - 700 + 600, now - 5 + 600], "when the others become stoppable"
    stop, _ = pressure.choose(servers, short=5, timeout=600, now=now)
    assert stop == ["idle-long", "idle-short"], "only servers idle past the timeout, however many wait"
    assert pressure.choose(servers, short=0, timeout=600, now=now)[0] == []


class PressureHub:
    """The hub and the servers as the pressure service sees them; records whose kernels it asked about."""

    def __init__(self, now: float, idle: dict[str, float], busy: set[str], waiting: int):
        self.api, self.now, self.idle, self.busy, self.waiting = "hub", now, idle, busy, waiting
        self.asked, self.deleted = [], []

    async def seats(self):
        return {"waiting": self.waiting, "short": self.waiting}

    async def ready_users(self):
        return [{"name": name, "servers": {"": {"last_activity": None}}} for name in self.idle]

    async def last_activity(self, user):
        return self.now - self.idle[user]

    async def computing(self, user):
        self.asked.append(user)  # on a real server this request is the student's activity
        return user in self.busy

    async def call(self, method, url, body=None, accept=None):
        if method == "DELETE":
            self.deleted.append(url.split("/users/")[1].split("/")[0])
        return {}


def test_pressure_asks_about_kernels_only_of_servers_it_would_stop_and_a_busy_one_gives_way():
    """Jupyter Server counts GET /api/kernels as activity: asked of every server every round, none would
    ever be idle (the real hub showed it: tests/integration/test_pressure.py)."""
    now = 10_000.0
    hub = PressureHub(now, {"computing": 3000, "idle-long": 2000, "idle-short": 700, "typing": 5}, {"computing"},
                      waiting=1)
    result = asyncio.run(pressure.one_round(hub, timeout=600, spared_groups=set(), now=now))
    assert result["stopped"] == ["idle-long"] and hub.deleted == ["idle-long"]
    assert hub.asked == ["computing", "idle-long"], "never the servers it would not stop"
    quiet = PressureHub(now, {"a": 3000, "b": 5}, set(), waiting=0)
    asyncio.run(pressure.one_round(quiet, timeout=600, spared_groups=set(), now=now))
    assert quiet.asked == [] and quiet.deleted == [], "nobody waits: nobody is asked or stopped"


def test_a_server_on_a_node_gone_down_takes_no_seat():
    """A killed worker: its seats leave the count, and so do the servers the hub still thinks run there."""
    def user(name, node, ready=True):
        return SimpleNamespace(name=name, spawners={"": SimpleNamespace(ready=ready, node=node)})

    users = {u.name: u for u in (user("alice", "hub"), user("bob", "w1"), user("cy", "w1", ready=False))}
    nodes = {"hub": {"ready": True}, "w1": {"ready": False}}
    assert seats.down_nodes(nodes) == {"w1"}
    assert seats.running_users(users) == {"alice", "bob"}
    assert seats.running_users(users, seats.down_nodes(nodes)) == {"alice"}
    line = Line(clock=lambda: 0.0)
    line.capacity = 2  # the hub's two seats: bob's dead server must not hold one of them
    line.join("carol")
    assert [t.key for t in line.admit(seats.running_users(users, seats.down_nodes(nodes)))] == ["carol"]


def test_students_let_in_together_are_spread_before_their_tasks_exist(spawner_class, monkeypatch):
    """Four admitted at once onto a hub with 2 seats and a new node with 3: the choices see each other."""
    cls, the_line, _ = spawner_class
    users: dict = {}
    spawners = [make_spawner(cls, f"s{i}", users) for i in range(4)]
    nodes = {"t-hub": {"ID": "n1", "Status": {"State": "ready"}, "Spec": {"Availability": "active"}},
             "t-worker-1": {"ID": "n2", "Status": {"State": "ready"}, "Spec": {"Availability": "active"}}}

    async def ready_nodes(self):
        await asyncio.sleep(0.01)  # the Swarm is asked: every spawner's choice is in flight at once
        return nodes

    async def docker(self, method, *args, **kwargs):
        await asyncio.sleep(0.01)
        assert method == "tasks"
        return []  # no task exists yet for any of them

    monkeypatch.setattr(cls, "_ready_nodes", ready_nodes)
    monkeypatch.setattr(cls, "docker", docker)
    monkeypatch.setattr(cls, "node_capacity", 3)
    for spawner in spawners:
        the_line.holding[spawner.user.name] = object()  # admitted together

    async def choose_all():
        async def one(spawner):
            spawner.node = await spawner.choose_node()
        await asyncio.gather(*(one(s) for s in spawners))

    asyncio.run(choose_all())
    chosen = [s.node for s in spawners]
    assert sorted(chosen) == ["t-hub", "t-hub", "t-worker-1", "t-worker-1"], chosen
