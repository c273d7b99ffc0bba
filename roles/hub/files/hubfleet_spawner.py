"""A SwarmSpawner that keeps each student on one node of the course's Swarm, behind the course's line.

A student's notebook volume is a local volume on the node where their server first ran; the
node is recorded in the spawner's state (the hub's database) and becomes a placement
constraint, so they never land on an empty notebook directory elsewhere. A new student goes
to the least loaded ready node. The hub is not on the overlay network, so each server
publishes its port on its node (host mode) and the hub reaches it at the node's address.

Admission is here, not in JupyterHub's limits (which answer 429): start() first waits its turn in
the hub's one line (hubfleet_seats.LINE) while the spawn-pending page shows the student's place
and an estimate, then starts the server and waits until it answers, so a seat and a start slot
are held exactly as long as they are used.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import docker
from docker.types import Mount
from dockerspawner import SwarmSpawner
from jupyterhub.utils import url_path_join
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Dict, Int, List, Unicode, default

import hubfleet_environments
from hubfleet_seats import LINE, down_nodes, placed_load, running_users

NODE_LABEL = "hubfleet.host"
ADDRESS_LABEL = "hubfleet.address"
SEATS_FRESH_SECONDS = 3.0  # how long a reading of the Swarm's nodes counts as current


class PinnedSwarmSpawner(SwarmSpawner):
    node = Unicode("", help="hubfleet.host label of the node holding this student's volume.")
    node_capacity = Int(0, config=True, help="Servers a node carries by the plan; 0 = no limit.")
    hub_capacity = Int(0, config=True, help="Servers the hub's own node carries by the plan (node_capacity when 0).")
    seats_fallback = Int(0, config=True, help="Seats when the Swarm cannot be read (the plan's capacity); 0 = none.")
    start_limit = Int(20, config=True, help="Servers starting at once; more wait in line.")
    queue_timeout = Int(3600, config=True, help="Seconds a student may wait in line before the spawn gives up.")
    server_start_timeout = Int(180, config=True, help="Seconds a server may take to answer once admitted.")
    line_bypass_users = List(Unicode(), config=True, help="Users who take a seat without waiting (the health probe).")
    line_bypass_groups = List(Unicode(), config=True, help="Groups whose members take a seat without waiting.")
    environments = List(Dict(), config=True, help="The course's environments, the first the default "
                        "(hubfleet_environments); empty: the course's image and limits only.")
    shared_data_dir = Unicode("", config=True, help="The course's shared folder on every node (roles/shared_data); "
                              "'' for none.")
    shared_data_mount = Unicode("/home/jovyan/shared", config=True, help="Where servers see the shared folder.")
    teachers_group = Unicode("teachers", config=True, help="Members (and hub admins) write the shared folder.")

    # One pool for every student's Docker calls: upstream's single thread makes a rush queue behind it.
    _executor = ThreadPoolExecutor(8, thread_name_prefix="docker")
    _seats_read_at = 0.0

    # --- the student's node, kept across stops and hub restarts --------------------------

    def load_state(self, state):
        super().load_state(state)
        self.node = state.get("node", self.node)

    def get_state(self):
        state = super().get_state()
        if self.node:
            state["node"] = self.node
        return state

    def clear_state(self):
        node = self.node
        super().clear_state()
        self.node = node  # the volume stays on that node after the server stops
        if self.name == "":
            LINE.leave(self.user.name)  # stopped, failed or cancelled: the seat or the place is free

    # --- the student's environment -------------------------------------------------------------

    @default("options_form")
    def _environments_form(self):
        if len(self.environments) < 2:
            return ""
        return lambda spawner: hubfleet_environments.form(
            spawner.environments, (spawner.user_options or {}).get(hubfleet_environments.FIELD))

    @default("options_from_form")
    def _environment_from_form(self):
        return lambda data: hubfleet_environments.options(self.environments, data) if self.environments else {}

    def apply_environment(self) -> None:
        """The image and limits of the environment this start runs (kept by JupyterHub from the last choice)."""
        if not self.environments:
            return
        environment, asked = hubfleet_environments.chosen(self.environments, self.user_options)
        if not asked:
            self.log.warning("%s chose environment %r, which the course no longer offers: starting %s", self.user.name,
                             str(self.user_options.get(hubfleet_environments.FIELD))[:64], environment["name"])
        self.image, self.mem_limit, self.cpu_limit = environment["image"], environment["mem_limit"], \
            float(environment["cpu_limit"])

    # --- the line ---------------------------------------------------------------------------

    def _bypasses_line(self) -> bool:
        groups = {group.name for group in getattr(self.user, "groups", [])}
        return self.user.name in self.line_bypass_users or bool(groups & set(self.line_bypass_groups))

    async def seat_nodes(self) -> dict[str, dict]:
        """Every labelled node: its seats (the hub's share on the manager), servers running, readiness."""
        return await read_seat_nodes(self.docker, self.hub_capacity, self.node_capacity)

    @classmethod
    async def seat_nodes_for(cls, handler) -> dict[str, dict]:
        """seat_nodes for the hub's endpoint, which has no spawner of its own: the class's client and config."""
        section = handler.settings["config"][cls.__name__]
        client = cls._client or docker.APIClient(version="auto")  # upstream's default: the local engine

        def call(method, *args, **kwargs):
            return asyncio.wrap_future(cls._executor.submit(getattr(client, method), *args, **kwargs))

        return await read_seat_nodes(call, int(section.get("hub_capacity", 0)), int(section.get("node_capacity", 0)))

    async def _read_seats(self) -> None:
        """The line's seats from the Swarm's ready, active nodes (at most every few seconds, for everyone)."""
        cls = type(self)
        if time.monotonic() - cls._seats_read_at < SEATS_FRESH_SECONDS:
            return
        cls._seats_read_at = time.monotonic()
        LINE.start_limit = max(1, self.start_limit)
        try:
            nodes = await self.seat_nodes()
        except Exception as exc:  # the Swarm unreadable for a moment: the plan's seats
            self.log.warning("cannot read the Swarm's nodes (%s): %s seats by the plan", exc, self.seats_fallback)
            LINE.capacity = self.seats_fallback
            return
        LINE.capacity = sum(n["capacity"] for n in nodes.values() if n["ready"] and n["active"]) or self.seats_fallback
        LINE.down = down_nodes(nodes)

    def _running(self) -> set[str]:
        return running_users(self.user.settings.get("users", {}), LINE.down)

    async def _wait_turn(self) -> None:
        key = self.user.name
        ticket = LINE.join(key)
        if ticket.admitted is not None:
            return
        deadline = time.monotonic() + self.queue_timeout
        try:
            while True:
                await self._read_seats()
                LINE.admit(self._running())
                if ticket.admitted is not None:
                    self.log.info("%s admitted after %.1f s in line", key, time.time() - ticket.joined)
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the course stayed full for {self.queue_timeout // 60} minutes: "
                                       "launch again from the course page to wait again")
                ticket.wake.clear()
                try:
                    await asyncio.wait_for(ticket.wake.wait(), timeout=2.0)
                except asyncio.TimeoutError:
                    pass
        except BaseException:
            if ticket.admitted is None:
                LINE.leave(key)  # cancelled or timed out in line: the place goes to the next
            raise

    async def start(self):
        self.apply_environment()
        key = self.user.name
        if self._bypasses_line():
            LINE.bypass(key)
        else:
            await self._wait_turn()
        ok = False
        try:
            started = await asyncio.wait_for(self._start_until_it_answers(), timeout=self.server_start_timeout)
            ok = True
            return started
        finally:
            LINE.started(key, ok)

    async def _start_until_it_answers(self):
        ip, port = await super().start()
        # The start slot is held until the server answers; looking every fifth of a second finds it
        # sooner than JupyterHub's backoff (up to 5 s between looks), which then finds it at once.
        url = url_path_join(f"http://{ip}:{port}", self.server.base_url if self.server else "/", "api")
        client = AsyncHTTPClient()
        while True:
            try:
                answer = await client.fetch(url, raise_error=False, follow_redirects=False, request_timeout=5)
            except (OSError, HTTPClientError):  # refused, unrouted or timed out: raise_error=False covers HTTP only
                answer = None
            if answer is not None and answer.code < 500:
                return ip, port
            await asyncio.sleep(0.2)

    async def progress(self):
        """The student's place in line and an honest estimate, then the start itself."""
        key = self.user.name
        last = None
        while True:
            position = LINE.position(key)
            if position is None:
                break
            ticket = LINE.join(key)
            first = max(ticket.first_position, position)
            if key in LINE.moving:
                message = ("Your files are being moved to another host of the course; you go in as soon as "
                           "that is done (a few seconds).")
            else:
                estimate = LINE.estimate(key, self._running())
                waiting = len(LINE.waiting)
                message = (f"The course is full right now: you are number {position} in line"
                           f"{f' of {waiting}' if waiting > 1 else ''}; {estimate.text() if estimate else ''}. "
                           "Keep this page open: it continues into your server by itself.")
            if message != last:
                yield {"progress": int(5 + 35 * (first - position) / first), "message": message}
                last = message
            await asyncio.sleep(2)
        yield {"progress": 50, "message": f"Starting your server{' on ' + self.node if self.node else ''}..."}

    async def _ready_nodes(self) -> dict[str, dict]:
        nodes = await self.docker("nodes")
        return {
            n["Spec"]["Labels"][NODE_LABEL]: n
            for n in nodes
            if n["Status"]["State"] == "ready" and n["Spec"].get("Availability") == "active"
            and NODE_LABEL in n["Spec"].get("Labels", {})
        }

    async def choose_node(self) -> str:
        """The ready node with the fewest running servers, preferring nodes under capacity."""
        ready = await self._ready_nodes()
        if not ready:
            raise RuntimeError("no node of the course's Swarm is ready")
        by_id = {n["ID"]: label for label, n in ready.items()}
        tasks = await self.docker("tasks", filters={"desired-state": "running"})
        load = Counter(by_id.get(t.get("NodeID")) for t in tasks)
        # Students let in together choose before any of their tasks exists: count the places already
        # given (from here to the assignment nothing else runs, so the next one sees this one's).
        placed = placed_load(self.user.settings.get("users", {}), set(LINE.holding), LINE.down)
        load = Counter({label: max(load[label], placed[label]) for label in ready})
        under = [label for label in ready if not self.node_capacity or load[label] < self.node_capacity]
        candidates = under or list(ready)
        return min(sorted(candidates), key=lambda label: load[label])

    # --- the shared folder: students read it, teachers write it on the hub's node -------------------

    def is_teacher(self) -> bool:
        return bool(self.user.admin) or self.teachers_group in {g.name for g in getattr(self.user, "groups", [])}

    async def hub_node(self) -> str | None:
        """The manager's node label: the shared folder's own copy is there (the others are copies of it)."""
        ready = await self._ready_nodes()
        return next((label for label, n in ready.items() if "ManagerStatus" in n), None)

    _writes_shared = False

    async def create_object(self):
        hub_node = await self.hub_node() if self.shared_data_dir and self.is_teacher() else None
        if not self.node and hub_node:
            self.node = hub_node  # a teacher writes the shared folder where it is kept
            self.log.info("Placing teacher %s on the hub's node %s", self.user.name, self.node)
        if not self.node:
            self.node = await self.choose_node()
            self.log.info("Placing %s on node %s", self.user.name, self.node)
        self._writes_shared = bool(hub_node) and self.node == hub_node
        if hub_node and not self._writes_shared:
            self.log.warning("teacher %s has their files on node %s: the shared folder is read-only there",
                             self.user.name, self.node)
        self.extra_placement_spec = {"constraints": [f"node.labels.{NODE_LABEL} == {self.node}"]}
        self.extra_endpoint_spec = {"ports": {None: (self.port, "tcp", "host")}}
        return await super().create_object()

    async def start_object(self):
        """Wait for the task to run, checking every quarter second (upstream backs off to 11 s)."""
        waiting = {"new", "assigned", "accepted", "starting", "pending", "preparing", "ready", "rejected"}
        while True:
            task = await self.get_task()
            if not task:
                raise RuntimeError(f"service {self.service_name} not found")
            state = task["Status"]["State"].lower()
            if state not in waiting:
                break
            await asyncio.sleep(0.25)
        if state != "running":
            raise RuntimeError(f"service {self.service_name} is {state}: {task['Status'].get('Err', '')}")

    @property
    def mounts(self):
        # Named volumes are volumes on the node, not bind mounts of a path.
        mounts = [
            Mount(target=vol["bind"], source=source, read_only=vol["mode"] == "ro",
                  type="bind" if source.startswith("/") else "volume")
            for source, vol in self.volume_binds.items()
        ]
        if self.shared_data_dir:
            mounts.append(Mount(target=self.shared_data_mount, source=self.shared_data_dir, type="bind",
                                read_only=not self._writes_shared))
        return mounts

    async def get_ip_and_port(self):
        task = await self.get_task()
        if not task:
            raise RuntimeError(f"no task for service {self.service_name}")
        node = await self.docker("inspect_node", task["NodeID"])
        address = node["Spec"].get("Labels", {}).get(ADDRESS_LABEL) or node["Status"]["Addr"]
        for port in task.get("Status", {}).get("PortStatus", {}).get("Ports", []):
            if port.get("TargetPort") == self.port:
                return address, port["PublishedPort"]
        raise RuntimeError(f"service {self.service_name} publishes no port for {self.port}")


async def read_seat_nodes(call, hub_capacity: int, node_capacity: int) -> dict[str, dict]:
    """node label -> seats (the hub's share on the manager node), servers running, ready, active."""
    nodes = await call("nodes")
    tasks = await call("tasks", filters={"desired-state": "running"})
    running = Counter(t.get("NodeID") for t in tasks)
    found = {}
    for node in nodes:
        label = node["Spec"].get("Labels", {}).get(NODE_LABEL)
        if not label:
            continue
        is_hub = "ManagerStatus" in node
        found[label] = {"capacity": (hub_capacity or node_capacity) if is_hub else node_capacity,
                        "running": running[node["ID"]], "hub": is_hub,
                        "ready": node["Status"]["State"] == "ready",
                        "active": node["Spec"].get("Availability") == "active"}
    return found
