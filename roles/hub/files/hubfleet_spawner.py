"""A SwarmSpawner that keeps each student on one node of the course's Swarm.

A student's notebook volume is a local volume on the node where their server first ran; the
node is recorded in the spawner's state (the hub's database) and becomes a placement
constraint, so they never land on an empty notebook directory elsewhere. A new student goes
to the least loaded ready node. The hub is not on the overlay network, so each server
publishes its port on its node (host mode) and the hub reaches it at the node's address.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from docker.types import Mount
from dockerspawner import SwarmSpawner
from traitlets import Int, Unicode

NODE_LABEL = "hubfleet.host"
ADDRESS_LABEL = "hubfleet.address"


class PinnedSwarmSpawner(SwarmSpawner):
    node = Unicode("", help="hubfleet.host label of the node holding this student's volume.")
    node_capacity = Int(0, config=True, help="Servers a node carries by the plan; 0 = no limit.")

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
        under = [label for label in ready if not self.node_capacity or load[label] < self.node_capacity]
        candidates = under or list(ready)
        return min(sorted(candidates), key=lambda label: load[label])

    async def create_object(self):
        if not self.node:
            self.node = await self.choose_node()
            self.log.info("Placing %s on node %s", self.user.name, self.node)
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
        return [
            Mount(target=vol["bind"], source=source, read_only=vol["mode"] == "ro",
                  type="bind" if source.startswith("/") else "volume")
            for source, vol in self.volume_binds.items()
        ]

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
