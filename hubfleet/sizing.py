"""Sizing: from a course's expected load to hosts, limits and cost. Pure functions over data.

The rules (the usual JupyterHub capacity planning):
  memory = concurrent users x memory per user + hub/proxy overhead (0.5 GiB), plus headroom
  CPU    = concurrent users x CPU per user x 1.2 + hub/proxy overhead (0.25 core)
  disk   = students x disk per user + a base per host (OS, images)
The flavor that carries the concurrent users on the fewest hosts wins; among those, the cheapest
(or, without prices, the one with the least memory).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hubfleet.descriptor import Course, format_bytes
from hubfleet.errors import FieldProblem, InvalidInput
from hubfleet.flavors import BASE_DISK, GiB, Catalogue, Flavor, load_catalogue  # noqa: F401 (also sizing's names)
from hubfleet.providers.base import HostSpec

HUB_MEMORY = GiB // 2
HUB_CPU = 0.25
CPU_FACTOR = 1.2
DEFAULT_HEADROOM = 0.30
MAX_HOSTS = 64


@dataclass(frozen=True)
class Plan:
    course: str
    provider: str
    students: int
    concurrent_users: int
    memory_needed: int  # bytes, all hosts, headroom included
    cpu_needed: float
    disk_needed: int
    hosts: tuple[HostSpec, ...]
    users_per_host: int  # concurrent users one host of the chosen flavor carries
    node_capacity: int  # servers a node without the hub carries: the same whatever the host count
    mem_limit: int
    cpu_limit: float
    disk_per_user: int
    spawn_limit: int  # JupyterHub's concurrent_spawn_limit
    active_server_limit: int  # servers the hosts can carry at once
    cost_per_day: float | None
    currency: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    max_hosts: int = 0  # hosts the course may grow to in a rush (elastic); 0 = as planned
    first_capacity: int = 0  # servers the hub host carries (node_capacity on every other host)

    @property
    def elastic_hosts(self) -> int:
        """The bound on hosts: never fewer than planned."""
        return max(self.max_hosts, len(self.hosts))

    def capacity_with(self, hosts: int) -> int:
        """Servers `hosts` hosts of the planned flavor carry at once."""
        first = self.first_capacity or self.active_server_limit
        return first + max(0, hosts - 1) * self.node_capacity

    @property
    def max_cost_per_day(self) -> float | None:
        if self.cost_per_day is None:
            return None
        return self.cost_per_day / len(self.hosts) * self.elastic_hosts

    @property
    def flavor(self) -> str:
        return self.hosts[0].flavor

    def to_dict(self) -> dict:
        return {
            "course": self.course,
            "provider": self.provider,
            "students": self.students,
            "concurrent_users": self.concurrent_users,
            "memory_needed": format_bytes(self.memory_needed),
            "cpu_needed": round(self.cpu_needed, 2),
            "disk_needed": format_bytes(self.disk_needed),
            "hosts": [
                {"role": h.role, "flavor": h.flavor, "vcpus": h.vcpus, "ram": format_bytes(h.ram_bytes),
                 "disk": format_bytes(h.disk_bytes)}
                for h in self.hosts
            ],
            "users_per_host": self.users_per_host,
            "limits": {"memory": format_bytes(self.mem_limit), "cpu": self.cpu_limit,
                       "disk": format_bytes(self.disk_per_user)},
            "spawn_limit": self.spawn_limit,
            "active_server_limit": self.active_server_limit,
            "cost_per_day": None if self.cost_per_day is None else round(self.cost_per_day, 2),
            "currency": self.currency,
            "elastic": {"max_hosts": self.elastic_hosts, "max_servers": self.capacity_with(self.elastic_hosts),
                        "max_cost_per_day": None if self.max_cost_per_day is None else round(self.max_cost_per_day, 2)},
            "notes": list(self.notes),
        }


def users_per_host(flavor: Flavor, mem_per_user: int, cpu_per_user: float, *, headroom: float, hub: bool) -> int:
    """Concurrent users one host of this flavor carries, after headroom and (on the hub host) overhead."""
    usable_mem = flavor.ram_bytes / (1 + headroom) - (HUB_MEMORY if hub else 0)
    usable_cpu = flavor.vcpus - (HUB_CPU if hub else 0)
    by_mem = math.floor(usable_mem / mem_per_user)
    by_cpu = math.floor(usable_cpu / (cpu_per_user * CPU_FACTOR) + 1e-9)
    return max(0, min(by_mem, by_cpu))


def hosts_needed(flavor: Flavor, concurrent: int, mem_per_user: int, cpu_per_user: float, headroom: float) -> int | None:
    """Fewest hosts of this flavor that carry `concurrent` users (None if MAX_HOSTS do not)."""
    first = users_per_host(flavor, mem_per_user, cpu_per_user, headroom=headroom, hub=True)
    if first >= concurrent:
        return 1
    other = users_per_host(flavor, mem_per_user, cpu_per_user, headroom=headroom, hub=False)
    if other <= 0:
        return None
    n = 1 + math.ceil((concurrent - first) / other)
    return n if n <= MAX_HOSTS else None


def default_max_hosts(planned: int) -> int:
    """The elastic bound when the descriptor names none: twice the plan, at least one host more, at most MAX_HOSTS.

    A lab session's rush is the whole class at once, not the plan's share of it: doubling carries a
    plan made for half the class; the bound keeps the cost of a runaway rush known in advance.
    """
    return min(MAX_HOSTS, max(planned + 1, 2 * planned))


def spawn_limit_for(total_vcpus: float, cpu_per_user: float = 0.2) -> int:
    """Servers starting at once: enough to keep every core busy, each at its own CPU limit, and half
    again for the time they wait on disk and network; between 5 and 100.

    Starting a server is CPU-bound (about 2-3 CPU-seconds). Admitting more than the cores can run
    makes every start slower until they pass JupyterHub's timeouts and are killed and retried: 100
    students let in at once on 2 cores had fewer than half running after 7 minutes; admitted 30 at
    a time, all 100 ran code within 4 minutes (docs/benchmarks.md).
    """
    per_start = min(1.0, max(0.05, cpu_per_user))
    return int(min(100, max(5, math.ceil(1.5 * total_vcpus / per_start))))


def plan_course(course: Course, catalogue: Catalogue, *, headroom: float = DEFAULT_HEADROOM,
                hosts_override: int | None = None) -> Plan:
    load = course.load
    concurrent = max(1, math.ceil(load.students * load.concurrent))
    (mem_user, cpu_user), disk_user = course.largest_limits, load.disk_bytes  # the largest environment's
    memory_needed = math.ceil((concurrent * mem_user + HUB_MEMORY) * (1 + headroom))
    cpu_needed = concurrent * cpu_user * CPU_FACTOR + HUB_CPU
    notes: list[str] = []

    candidates = []
    for flavor in catalogue.flavors:
        n = hosts_needed(flavor, concurrent, mem_user, cpu_user, headroom)
        if n is None:
            continue
        if hosts_override is not None:
            if hosts_override < n:
                continue
            n = hosts_override
        priced = all(f.price_per_hour is not None for f in catalogue.flavors)
        cost = n * flavor.price_per_hour * 24 if priced else None
        # Fewest hosts first (each host is work to run), then the cheapest, then the smallest.
        key = (n, cost if priced else 0, n * flavor.ram_bytes, flavor.vcpus)
        candidates.append((key, flavor, n, cost))
    if not candidates:
        biggest = max(catalogue.flavors, key=lambda f: f.ram_bytes)
        what = f"{hosts_override} host(s)" if hosts_override else f"{MAX_HOSTS} hosts"
        raise InvalidInput([FieldProblem(
            "load",
            f"{concurrent} concurrent users at {format_bytes(mem_user)} / {cpu_user} CPU each do not fit on "
            f"{what} of any flavor (largest: {biggest.name}, {format_bytes(biggest.ram_bytes)}, "
            f"{biggest.vcpus:g} vCPU) — lower load.concurrent, memory_per_user or cpu_per_user",
        )], source="plan")
    _, flavor, n, cost = min(candidates, key=lambda c: c[0])

    per_host = users_per_host(flavor, mem_user, cpu_user, headroom=headroom, hub=False)
    first = users_per_host(flavor, mem_user, cpu_user, headroom=headroom, hub=True)
    capacity = first + (n - 1) * per_host
    students_per_host = math.ceil(load.students / n)
    host_disk = max(flavor.disk_bytes, students_per_host * disk_user + BASE_DISK)
    if host_disk > flavor.disk_bytes:
        notes.append(
            f"{flavor.name}'s {format_bytes(flavor.disk_bytes)} disk is too small for "
            f"{students_per_host} students x {format_bytes(disk_user)}: each host gets "
            f"{format_bytes(host_disk)} (a data volume on OpenStack)"
        )
    if n > 1:
        notes.append(f"{n} hosts: the hub host is the Swarm manager, students are spread over all hosts")
    if course.environments:
        offered = ", ".join(f"{e.name} ({e.image})" for e in course.environments)
        notes.append(f"environments on the spawn page: {offered}; sized for the largest "
                     f"({format_bytes(mem_user)}, {cpu_user:g} CPU per student), every image on every host")
    max_hosts = load.max_hosts if load.max_hosts is not None else default_max_hosts(n)
    if max_hosts < n and hosts_override is None:
        raise InvalidInput([FieldProblem(
            "load.max_hosts", f"{max_hosts} is fewer than the {n} host(s) the plan needs for {concurrent} students at "
            f"once — give at least {n} (or leave it out: {default_max_hosts(n)})",
        )], source="plan")
    specs = tuple(
        HostSpec(role="hub" if i == 0 else "worker", flavor=flavor.name, vcpus=flavor.vcpus,
                 ram_bytes=flavor.ram_bytes, disk_bytes=host_disk)
        for i in range(n)
    )
    return Plan(
        course=course.name, provider=course.provider, students=load.students, concurrent_users=concurrent,
        memory_needed=memory_needed, cpu_needed=cpu_needed,
        disk_needed=load.students * disk_user + n * BASE_DISK, hosts=specs,
        users_per_host=per_host if n > 1 else first, node_capacity=per_host, mem_limit=mem_user, cpu_limit=cpu_user,
        disk_per_user=disk_user, spawn_limit=spawn_limit_for(n * flavor.vcpus, cpu_user),
        active_server_limit=capacity, cost_per_day=cost, currency=catalogue.currency, notes=tuple(notes),
        max_hosts=max(max_hosts, n), first_capacity=first,
    )
