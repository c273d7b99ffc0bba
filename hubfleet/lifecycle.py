"""A course's life: create (converging), status (live health), destroy (archive first).

The CLI and the portal both call these; progress goes through a callback and into the state
store's event log so another process can follow a long step.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from hubfleet import ansible, course_image, egress, peers, shared_data, teaching, tls, trust
from hubfleet.authenticators import ADMIN_USER, kind_of
from hubfleet.archive import ArchiveSummary, join_parts, sha256_file, verify
from hubfleet.descriptor import Course, parse_recorded
from hubfleet.errors import ArchiveError, HubfleetError, InvalidInput, ProvisionError
from hubfleet.providers.docker import acme_local
from hubfleet.health import PROBE_USER, Health, check
from hubfleet.jupyter import HubClient
from hubfleet.providers import Host, HostSpec, Provider, get_provider
from hubfleet.site import SiteWide, load_site_wide
from hubfleet.sizing import Plan, load_catalogue, plan_course, spawn_limit_for
from hubfleet.state import Instance, StateStore
from hubfleet.usernames import spawner_escape

Progress = Callable[[str, str], None]  # (kind, message)

# What a create keeps of the course's outputs: the elastic hosts and their decisions, the term's banner,
# the session's last backup (hubfleet/backups.py; destroy forgets it), what its contacts were mailed.
KEPT_OUTPUTS = ("elastic", "announcement", "backup", "backup_previous", "notices")
VOLUME_PREFIX = "hubfleet-user-"  # one volume per student: <prefix><username as DockerSpawner escapes it>
PROBE_VOLUME = VOLUME_PREFIX + spawner_escape(PROBE_USER)  # the health probe's: no student's name escapes to it


@dataclass
class CreateResult:
    instance: Instance
    plan: Plan
    health: Health
    seconds: float
    changed: int


def recorder(store: StateStore, name: str, progress: Progress | None) -> Progress:
    def record(kind: str, message: str) -> None:
        if kind in ("step", "task", "failed", "info", "ok"):
            store.add_event(name, kind, message)
        if progress:
            progress(kind, message)

    return record


def provider_for(store: StateStore, course_name: str, provider: str, progress: Progress) -> Provider:
    # The path only: nothing is written until the provider creates something.
    return get_provider(provider, course_name, store.dir / "instances" / course_name,
                        lambda message: progress("info", message))


def plan_for(store: StateStore, course: Course, *, flavors: Path | None = None, hosts: int | None = None,
             strict: bool = True) -> tuple[Plan, list[str]]:
    """Size the course against the backend's real flavors when it has them, else the packaged catalogue.

    With strict=False (the `plan` verb), a backend that cannot be asked (no site file, cloud down)
    falls back to the packaged catalogue and says so instead of failing. A course whose peers sit
    in the hosts' own address ranges is refused either way.
    """
    clashes = peers.colliding(course, load_site_wide(store.dir).addresses)
    if clashes:
        raise InvalidInput(clashes, source=f"course {course.name} against the site's address ranges")
    notes: list[str] = []
    catalogue = load_catalogue(course.provider, flavors) if flavors else None
    if catalogue is None:
        provider = provider_for(store, course.name, course.provider, lambda k, m: None)
        try:
            catalogue = provider.catalogue()
        except HubfleetError as exc:
            if strict:
                raise
            notes.append(f"planned against the packaged flavors: {exc.message}")
    plan = plan_course(course, catalogue or load_catalogue(course.provider), hosts_override=hosts)
    return plan, notes


def role_variables(course: Course, plan: Plan, hosts: list[Host], cores: float | None = None, *,
                   site: SiteWide | None = None) -> dict:
    """What the roles need, none of it secret: goes into the generated inventory.

    `cores` is what the hosts really have when less than planned (Docker hosts share this machine):
    the spawn limit follows the real cores, or a crowd of starts would outrun them.
    """
    site = site or SiteWide()
    spawn_limit = plan.spawn_limit
    if cores:
        spawn_limit = min(spawn_limit, spawn_limit_for(cores, course.load.cpu_per_user))
    return {
        "hub_course": course.name,
        "hub_title": course.title,
        "hub_image": course.image,
        # The spawn page's choice (roles/hub/files/hubfleet_environments.py); none for a course of one image.
        "hub_environments": environments_for_hub(course),
        "hub_mem_limit": f"{plan.mem_limit // 2**20}M",
        "hub_cpu_limit": plan.cpu_limit,
        "hub_idle_timeout": course.culling.idle_timeout,
        "hub_max_age": course.culling.max_age,
        "hub_concurrent_spawn_limit": spawn_limit,
        "hub_active_server_limit": plan.active_server_limit,
        "hub_volume_prefix": VOLUME_PREFIX,
        "hub_node_capacity": plan.node_capacity,
        # The line for seats (hubfleet_seats): the hub host's share, when idle servers go for the line, who skips it.
        "hub_hub_capacity": plan.first_capacity or plan.active_server_limit,
        "hub_pressure_timeout": course.culling.pressure_seconds,
        "hub_probe_user": PROBE_USER,
        "hub_line_bypass_groups": [teaching.TEACHERS_GROUP],
        "hub_teachers_group": teaching.TEACHERS_GROUP,
        "swarm_course": course.name,
        "proxy_domain": course.domain,
        **site.addresses.role_variables(),
        # Where students' servers may connect to (roles/egress on every host, the proxy in the hub's settings).
        **egress.role_variables(course, site.egress, site.addresses.engine_bridge,
                                [str(net) for _, net in site.addresses.ranges()], hosts),
        **kind_of(course).role_variables(course),
        **teaching.role_variables(course, kind_of(course)),
        **tls.role_variables(course, hosts),
    }


def environments_for_hub(course: Course) -> list[dict]:
    """Each environment with the limits its servers get, as the hub's spawner takes them."""
    hub = []
    for environment in course.environments or []:
        memory, cpu = course.limits_of(environment)
        hub.append({"name": environment.name, "title": environment.title, "image": environment.image,
                    "mem_limit": f"{memory // 2**20}M", "cpu_limit": float(cpu)})
    return hub


def ensure_secrets(store: StateStore, course: Course) -> dict:
    """Every secret the roles need, created once and kept across re-runs."""
    return {
        "hub_service_token": store.ensure_secret(course.name, "hub-api-token", nbytes=32),
        **kind_of(course).ensure_secrets(store, course),
        **teaching.ensure_secrets(store, course, kind_of(course)),
    }


def create_course(store: StateStore, course: Course, *, progress: Progress | None = None,
                  probe: bool = True, verbosity: int = 0, flavors: Path | None = None,
                  hosts: int | None = None, extra_hosts: int | None = None,
                  announcement: str | None = None) -> CreateResult:
    """Descriptor to working hub; safe to run again on a live or half-made course.

    `extra_hosts` are elastic hosts beyond the plan (hubfleet/elastic.py): hosts of the planned flavor
    that join the Swarm while the hub's configuration stays the plan's, so adding one never restarts
    the hub. Omitted, a re-run keeps the ones the course has. `announcement` is the hub's banner (plain
    text, "" for none: hubfleet/term.py); omitted, the course keeps the one it has.
    """
    started = time.monotonic()
    tls.check_files(course)  # an institution's certificate is checked before any host is touched
    trust_variables = trust.role_variables(course, trust.site_ca_certificates(store.dir))  # and its own CAs
    existing = store.find(course.name)
    live = existing and existing.status != "archived"
    # A re-run keeps what `create --hosts/--flavors` or `scale` chose, unless told otherwise.
    flavors = flavors or (Path(existing.outputs["flavors"]) if live and existing.outputs.get("flavors") else None)
    hosts = hosts or (existing.outputs.get("hosts_wanted") if live else None)
    if extra_hosts is None:
        extra_hosts = int((existing.outputs.get("elastic") or {}).get("extra", 0)) if live else 0
    if announcement is None:
        announcement = (existing.outputs.get("announcement") or "") if live else ""
    plan, _ = plan_for(store, course, flavors=flavors, hosts=hosts)
    with store.lock(course.name, "create"):
        existing = store.find(course.name)
        if existing and existing.status not in ("archived",) and existing.provider != course.provider:
            raise HubfleetError(f"course {course.name!r} already runs on {existing.provider}",
                                hint="destroy it first, or keep provider: " + existing.provider)
        running = existing if existing and existing.status == "ready" else None
        store.upsert(course.name, provider=course.provider, descriptor=course.model_dump(mode="json"))
        record = recorder(store, course.name, progress)
        store.update(course.name, status="provisioning", error=None)
        try:
            result = _create(store, course, plan, record, probe, verbosity,
                             {"flavors": str(flavors) if flavors else None, "hosts_wanted": hosts}, trust_variables,
                             extra_hosts, announcement)
        except HubfleetError as exc:
            if running is not None and store.get(course.name).status == "provisioning":
                # Refused before any host was configured (a pre-flight: TLS, the image): the course runs as
                # it did, and its record says so; the refusal is in its events.
                store.update(course.name, descriptor=running.descriptor, status="ready", error=None)
                record("failed", f"not applied, the course runs as before: {exc}")
            else:
                store.update(course.name, status="failed", error=str(exc))
                record("failed", str(exc))
            raise
        except KeyboardInterrupt:
            store.update(course.name, status="failed", error="interrupted; run create again to finish")
            raise
    return CreateResult(result[0], plan, result[1], time.monotonic() - started, result[2])


def course_inventory(store: StateStore, name: str, hosts: list[Host], provider: Provider) -> Path:
    """The course's inventory: its hosts now and how to reach them. The only writer of it."""
    workdir = store.instance_dir(name)
    return ansible.write_inventory(workdir, hosts, provider.inventory_vars(), workdir / "secrets" / "id_ed25519")


def extra_specs(plan: Plan, count: int) -> list[HostSpec]:
    """`count` elastic hosts beyond the plan: workers of the planned flavor."""
    worker = next((h for h in plan.hosts if h.role == "worker"), None) or replace(plan.hosts[0], role="worker")
    return [worker] * max(0, count)


def _create(store, course, plan, record, probe, verbosity, choices, trust_variables, extra_hosts=0, announcement=""):
    workdir = store.instance_dir(course.name)
    provider = provider_for(store, course.name, course.provider, record)
    provider.domain = course.domain
    specs = list(plan.hosts) + extra_specs(plan, extra_hosts)
    problems = provider.check(specs)
    if problems:
        raise ProvisionError("pre-flight failed, nothing was created:\n  - " + "\n  - ".join(problems))
    # The shared folder's source, read and packed before any host is touched (a bad one changes nothing).
    packed = shared_data.pack(course, store.dir / "cache" / "shared")
    if packed is not None:
        record("info", f"shared folder: {packed.files} entries, {packed.size / 2**20:.1f} MiB from "
                       f"{course.shared_data.source}")
    _, public_key = ansible.ensure_ssh_key(workdir / "secrets")
    secrets = ensure_secrets(store, course)

    more = f" and {extra_hosts} elastic" if extra_hosts else ""
    record("step", f"hosts: {len(plan.hosts)}{more} x {plan.flavor} on {course.provider}")
    hosts = provider.ensure_hosts(specs, public_key)
    store.update(course.name, hosts=[h.to_dict() for h in hosts])

    record("step", f"TLS pre-flight: {course.domain}, port 80 and the ACME server")
    tls_variables = tls.ensure_ready(store.dir, course, hosts, lambda message: record("info", message))

    images = course.images
    record("step", f"notebook image{'s' if len(images) > 1 else ''} {', '.join(images)} onto the hosts")
    placed = all([provider.ensure_image(image) for image in images])  # each one, not only up to a refusal
    image_variables = course_image.images_variables(images, placed=placed, cache=store.dir / "cache" / "images",
                                                    progress=lambda message: record("info", message))

    store.update(course.name, status="configuring")
    inventory = course_inventory(store, course.name, hosts, provider)
    # The plan's hosts decide the hub's settings: elastic hosts add seats, never a hub restart.
    ansible.write_course_variables(inventory, {
        **role_variables(course, plan, hosts, provider.cpu_cores(hosts[:len(plan.hosts)]),
                         site=load_site_wide(store.dir)),
        **image_variables,
        **shared_data.role_variables(course, packed),
        **tls_variables,
        **trust_variables,
        "hub_announcement": announcement})
    run = ansible.run_playbook("site.yml", workdir=workdir, inventory=inventory, secrets=secrets,
                               progress=record, verbosity=verbosity)
    record("ok", f"configured: {run.changed} change(s)")

    url = tls.public_url(course, hosts)
    ca = tls.ca_certificate(store.dir, course)
    kept = {k: v for k, v in store.get(course.name).outputs.items() if k in KEPT_OUTPUTS}
    kept["elastic"] = {**(kept.get("elastic") or {}), "extra": extra_hosts}
    kept["announcement"] = announcement
    outputs = {**kept, "url": url, "admin_user": ADMIN_USER, "flavor": plan.flavor, **choices,
               "ca_certificate": str(ca) if ca else None,
               "configured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    store.update(course.name, outputs=outputs)
    record("step", "health check: a probe user starts a server and runs code" if probe else "health check: hub API")
    with tls.reaching(store.dir, course, hosts):
        health = check(url, secrets["hub_service_token"], probe=probe, verify=tls.trust(store.dir, course),
                       **as_a_student(store, course, url))
    if not health.ok and (probe or not health.api):
        raise ProvisionError("the hub was configured but is not usable: " + "; ".join(health.problems),
                             hint="see `hubfleet status " + course.name + "`, then run create again")
    instance = store.update(course.name, status="ready", error=None)
    record("ok", f"ready at {url}")
    return instance, health, run.changed


def scale_course(store: StateStore, name: str, count: int, *, progress: Progress | None = None,
                 verbosity: int = 0) -> CreateResult:
    """Give a live course `count` hosts: new ones join its Swarm; removed ones must hold no student's work."""
    instance = store.get(name)
    if instance.status == "archived":
        raise HubfleetError(f"course {name!r} is archived", hint="create it again with `hubfleet create`")
    course = parse_recorded(instance.descriptor, source="recorded descriptor")
    flavors = Path(instance.outputs["flavors"]) if instance.outputs.get("flavors") else None
    plan_for(store, course, flavors=flavors, hosts=count)  # refuses a count the load does not fit, first
    if count < len(instance.hosts):
        with store.lock(name, "scale"):
            _remove_empty_hosts(store, instance, count, recorder(store, name, progress))
    # The operator's count is the plan from now on: elastic hosts within it are planned ones.
    return create_course(store, course, progress=progress, probe=False, verbosity=verbosity, hosts=count,
                         extra_hosts=0)


def _remove_empty_hosts(store: StateStore, instance: Instance, count: int, record: Progress) -> None:
    """Pause the leaving nodes (no new student goes there), then look for students' volumes on them:
    any found, they are made active again and nothing is removed; none, they are drained, leave the
    Swarm and their hosts are removed. Pausing first closes the gap in which a student could be
    placed on a node already judged empty; draining first would stop a running student's server."""
    provider = provider_for(store, instance.name, instance.provider, record)
    hosts = provider.hosts()
    going = [h.name for h in hosts if h.role != "hub"][max(0, count - 1):]
    if not going:
        return
    workdir = store.instance_dir(instance.name)
    inventory = course_inventory(store, instance.name, hosts, provider)

    def step(name: str, progress: Progress | None = None) -> ansible.RunResult:
        return ansible.run_playbook("scale_down.yml", workdir=workdir, inventory=inventory, progress=progress,
                                    variables={"scale_down_step": name, "scale_down_hosts": going,
                                               "hub_volume_prefix": VOLUME_PREFIX})

    record("step", f"pausing {', '.join(going)}: no new student goes there")
    try:
        held = step("pause").facts
    except ProvisionError as exc:
        step("resume")
        raise ProvisionError(f"cannot tell whether {', '.join(going)} hold students' work ({exc.message}); "
                             "nothing was removed", hint="run `hubfleet create` to bring them back first") from None
    busy = {name: [v for v in held.get(name, {}).get("volumes", []) if v != PROBE_VOLUME] for name in going}
    busy = {name: volumes for name, volumes in busy.items() if volumes}
    if busy:
        step("resume")
        detail = "; ".join(f"{host} holds {len(v)} student volume(s) ({', '.join(sorted(v)[:3])}"
                           f"{', ...' if len(v) > 3 else ''})" for host, v in sorted(busy.items()))
        raise ProvisionError(f"shrinking {instance.name} would lose students' work: {detail}; nothing was removed",
                             hint="keep the hosts, or archive the course with `hubfleet destroy` first")
    record("step", f"draining {', '.join(going)} and taking them out of the Swarm")
    step("remove", record)
    provider.remove_hosts(going)
    store.update(instance.name, hosts=[h.to_dict() for h in provider.hosts()])


@dataclass
class Node:
    host: str
    state: str  # ready | down | unknown
    availability: str
    servers: int
    memory_used: int | None = None
    memory_total: int | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def course_nodes(store: StateStore, instance: Instance, hosts: list[Host], provider: Provider) -> list[Node]:
    """Every node of the course's Swarm as its manager sees it, with each host's memory (playbooks/nodes.yml)."""
    reachable = [h for h in hosts if h.ssh_port]
    if not reachable:
        return []
    workdir = store.instance_dir(instance.name)
    inventory = course_inventory(store, instance.name, reachable, provider)
    try:
        facts = ansible.run_playbook("nodes.yml", workdir=workdir, inventory=inventory,
                                     variables={"hub_volume_prefix": VOLUME_PREFIX}, tolerate_failures=True).facts
    except ProvisionError:
        return []
    return nodes_from(facts)


def nodes_from(facts: dict[str, dict]) -> list[Node]:
    """Nodes from nodes.yml's reports: the manager's node list and running tasks, each host's memory."""
    manager = next((f for f in facts.values() if "swarm_nodes" in f), None)
    if manager is None:
        return []
    servers = Counter(manager.get("swarm_task_nodes") or [])
    nodes = []
    for item in manager["swarm_nodes"]:
        name = item.get("Description", {}).get("Hostname", "?")
        memory = facts.get(name, {}).get("memory_kib") or {}
        total, available = memory.get("MemTotal"), memory.get("MemAvailable")
        nodes.append(Node(name, item.get("Status", {}).get("State", "unknown"),
                          item.get("Spec", {}).get("Availability", "unknown"), servers[item.get("ID")],
                          (int(total) - int(available)) * 1024 if total and available else None,
                          int(total) * 1024 if total else None))
    return sorted(nodes, key=lambda n: (not n.host.endswith("-hub"), n.host))


@dataclass
class StatusReport:
    instance: Instance
    health: Health | None
    problems: list[str]
    nodes: list[Node]
    certificate: tls.ServedCertificate | None = None
    warnings: list[str] = field(default_factory=list)
    seats: dict | None = None  # the hub's seats and line (hubfleet_seats), when it answered

    @property
    def healthy(self) -> bool:
        return self.health is not None and self.health.ok and not self.problems

    def to_dict(self) -> dict:
        return {**self.instance.to_dict(), "health": self.health.to_dict() if self.health else None,
                "problems": self.problems, "nodes": [n.to_dict() for n in self.nodes], "healthy": self.healthy,
                "certificate": self.certificate.to_dict() if self.certificate else None, "warnings": self.warnings,
                "seats": self.seats, "elastic": self.instance.outputs.get("elastic")}


def course_status(store: StateStore, name: str, *, probe: bool = True) -> StatusReport:
    """The recorded state, plus live health, the hosts as the provider sees them and the Swarm's nodes."""
    instance = store.get(name)
    if instance.status == "archived":
        return StatusReport(instance, None, [], [])
    problems: list[str] = []
    provider = provider_for(store, name, instance.provider, lambda k, m: None)
    live_hosts = provider.hosts()
    live = {h.name: h for h in live_hosts}
    for host in instance.hosts:
        if host["name"] not in live:
            problems.append(f"host {host['name']} has disappeared; `hubfleet create` brings it back")
        elif live[host["name"]].ssh_port == 0:
            problems.append(f"host {host['name']} is stopped; `hubfleet create` starts it again")
    url = instance.outputs.get("url")
    hub_alive = any(h.role == "hub" and h.ssh_port for h in live_hosts)
    if hub_alive:
        # A restarted host may answer on new ports: the URL follows the hosts, not the record.
        course = parse_recorded(instance.descriptor, source="recorded descriptor")
        fresh = tls.public_url(course, live_hosts)
        if fresh != url:
            instance = store.update(name, outputs={**instance.outputs, "url": fresh})
            url = fresh
    nodes: list[Node] = []
    if hub_alive and (store.dir / "instances" / name / "secrets" / "id_ed25519").exists():
        nodes = course_nodes(store, instance, live_hosts, provider)
        problems += [f"node {n.host} is {n.state}" for n in nodes if n.state != "ready"]
    certificate = None
    health = None
    token = store.get_secret(name, "hub-api-token")
    if hub_alive:
        certificate = tls.served_certificate(store.dir, course, live_hosts)
        problems += certificate.problems if certificate else []
        if url and token:
            with tls.reaching(store.dir, course, live_hosts):
                health = check(url, token, probe=probe, verify=tls.trust(store.dir, course),
                               **as_a_student(store, course, url))
                seats = _seats(url, token, tls.trust(store.dir, course))
    return StatusReport(instance, health, problems, nodes, certificate, certificate.warnings if certificate else [],
                        seats if hub_alive and url and token else None)


def as_a_student(store: StateStore, course: Course, url: str) -> dict:
    """The health check's student login for this course's kind (health.check's `student`, `login_note`)."""
    kind = kind_of(course)
    return {"student": lambda session: kind.student_login(store, course, url, session),
            "login_note": kind.student_login_note}


@contextmanager
def service_client(store: StateStore, name: str, *, timeout: float = 30) -> Iterator[HubClient]:
    """The course's hub API as the hubfleet service, reachable from this process inside the block."""
    instance = store.get(name)
    course = parse_recorded(instance.descriptor, source="recorded descriptor")
    hosts = provider_for(store, name, instance.provider, lambda k, m: None).hosts()
    token, url = store.get_secret(name, "hub-api-token"), instance.outputs.get("url")
    if not token or not url:
        raise HubfleetError(f"course {name!r} has no hub to ask yet", hint=f"run `hubfleet create` for {name}")
    with tls.reaching(store.dir, course, hosts):
        yield HubClient(url, token, verify=tls.trust(store.dir, course), timeout=timeout)


def stop_servers_started_before(store: StateStore, name: str, before: dt.datetime) -> list[str]:
    """Stop every student's server started before `before` (the course's last change): their next start
    runs the course's current image and limits; their volumes stay. The users whose server stopped."""
    stopped = []
    with service_client(store, name) as client:
        for user in client.users():
            server = (user.get("servers") or {}).get("")
            started = server and server.get("started")
            if not started or user["name"] == PROBE_USER:
                continue
            if dt.datetime.fromisoformat(started.replace("Z", "+00:00")) < before:
                client.stop_server(user["name"])
                stopped.append(user["name"])
    recorder(store, name, None)("info", f"stopped {len(stopped)} server(s) started before {before:%Y-%m-%d %H:%M} "
                                         "UTC: their next start runs the current image")
    return stopped


def _seats(url: str, token: str, verify: bool | str) -> dict | None:
    """The hub's seats and line, or None when it does not say (a hub from before the line, or down)."""
    try:
        return HubClient(url, token, verify=verify).api("GET", "/hubfleet/seats").json()
    except (HubfleetError, ValueError):
        return None


def destroy_course(store: StateStore, name: str, *, archive: bool = True,
                   progress: Progress | None = None, verbosity: int = 0) -> ArchiveSummary | None:
    """Archive the students' work, verify it, and only then remove every resource of the course.

    The steps are recorded in the course's outputs["destroy"], so a destroy cut off anywhere (kill -9
    included) is run again and goes on where it stopped: an archive already verified is found and
    recorded, not made twice, and hosts half removed are removed the rest of the way.
    """
    with store.lock(name, "destroy"):
        instance = store.get(name)
        if instance.status == "archived":
            raise HubfleetError(f"course {name!r} is already archived: {instance.outputs.get('archive', '')}")
        record = recorder(store, name, progress)
        provider = provider_for(store, name, instance.provider, record)
        if instance.status == "destroying":
            step = (instance.outputs.get("destroy") or {}).get("step", "?")
            record("info", f"an earlier destroy stopped while {step}: going on from there")
        summary = _recorded_archive(store, instance, provider, record)
        removing = (instance.outputs.get("destroy") or {}).get("step") == "removing"
        if archive and summary is None and not removing:
            summary = _archive_step(store, instance, provider, record, verbosity)
        elif archive and summary is None:
            record("info", "the earlier destroy had started removing hosts without an archive: finishing that")
        _remove_step(store, name, provider, record, summary)
        record("ok", "destroyed" + (f"; archive at {summary.path}" if summary else " without an archive"))
        return summary


def _set_step(store: StateStore, name: str, step: str, status: str = "destroying", **extra) -> Instance:
    outputs = dict(store.get(name).outputs)
    outputs["destroy"] = {**(outputs.get("destroy") or {}), "step": step,
                          "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **extra}
    return store.update(name, status=status, outputs=outputs)


def _recorded_archive(store: StateStore, instance: Instance, provider: Provider,
                      record: Progress) -> ArchiveSummary | None:
    """The verified archive an earlier, cut-off destroy made: recorded, or written but not yet recorded."""
    recorded = instance.outputs.get("archive")
    if recorded:
        summary = ArchiveSummary.from_dict(recorded)
        if summary.path.is_file() and sha256_file(summary.path) == summary.sha256:
            record("ok", f"archive already verified and recorded: {summary.path}")
            return summary
        problem = f"the recorded archive {summary.path} is missing or has changed since it was verified"
        if {h["name"] for h in instance.hosts} - {h.name for h in provider.hosts()}:
            raise ArchiveError(f"{problem}, and hosts are gone", hint="restore it from a backup of the "
                               f"archive folder, or `hubfleet destroy {instance.name} --no-archive` to finish")
        record("info", f"{problem}: archiving again")
        return None
    planned = (instance.outputs.get("destroy") or {}).get("archive_path")
    if planned and Path(planned).is_file():
        path = Path(planned)
        try:
            files, volumes = verify(path)
        except ArchiveError as exc:
            record("info", f"{path} was not finished ({exc.message}): archiving again")
            return None
        restore = Path((instance.outputs.get("destroy") or {}).get("restore_path") or "")
        summary = ArchiveSummary(path, files, volumes, path.stat().st_size, sha256_file(path),
                                 restore if restore.name and restore.is_file() else None)
        store.update(instance.name, outputs={**store.get(instance.name).outputs, "archive": summary.to_dict()})
        record("ok", f"archive written before the interruption verified and recorded: {path}")
        return summary
    return None


def _archive_step(store: StateStore, instance: Instance, provider: Provider, record: Progress,
                  verbosity: int) -> ArchiveSummary:
    """Make the archive, verify it, fsync it and record it; if it fails the course is as it was."""
    earlier = (instance.outputs.get("destroy") or {}).get("was")
    was = earlier or (instance.status if instance.status != "destroying" else "ready")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = store.archive_dir() / f"{instance.name}-{stamp}.tar"
    restore = store.restore_dir() / f"{instance.name}-{stamp}.hub.tar"
    _set_step(store, instance.name, "archiving", was=was, archive_path=str(out), restore_path=str(restore))
    try:
        summary = archive_work(store, instance, provider, record, verbosity, out, restore)
    except ArchiveError as exc:
        for unfinished in (out, restore):  # nothing points at them any more
            unfinished.unlink(missing_ok=True)
        outputs = dict(store.get(instance.name).outputs)
        outputs.pop("destroy", None)
        store.update(instance.name, status=was, error=str(exc), outputs=outputs)
        record("failed", str(exc))
        raise
    store.update(instance.name, outputs={**store.get(instance.name).outputs, "archive": summary.to_dict()})
    _set_step(store, instance.name, "archived")
    return summary


def _remove_step(store: StateStore, name: str, provider: Provider, record: Progress,
                 summary: ArchiveSummary | None) -> None:
    _set_step(store, name, "removing")
    record("step", "removing hosts, volumes and networks")
    provider.destroy_hosts()
    left = provider.leftovers()
    if left:
        raise ProvisionError(f"{len(left)} resource(s) of {name} are still there: {', '.join(left)}",
                             hint="run destroy again" + ("; the archive is already saved" if summary else ""))
    store.remove_instance_files(name)
    outputs = dict(store.get(name).outputs)
    outputs.update(archive=summary.to_dict() if summary else None,
                   archived_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    outputs.pop("url", None)
    outputs.pop("destroy", None)
    for backup in ("backup", "backup_previous"):  # their files stay in the archive folder (archives prune);
        outputs.pop(backup, None)  # the next session restores from its own backups only
    instance = store.update(name, status="archived", hosts=[], outputs=outputs, error=None)
    _release_embedded_acme(store, instance, record)


def _release_embedded_acme(store: StateStore, gone: Instance, record: Progress) -> None:
    """Stop the embedded ACME server, and remove its network, once no live course of this store uses it."""
    if not acme_local.serves(gone.descriptor):
        return
    if any(acme_local.serves(other.descriptor) for other in store.all() if other.status != "archived"):
        return
    record("info", "no course uses the embedded ACME server any more: stopping it")
    acme_local.stop_local_acme(store.dir)


def archive_work(store: StateStore, instance: Instance, provider: Provider, record: Progress,
                 verbosity: int, out: Path, restore: Path) -> ArchiveSummary:
    """Every host's students' work into `out` (and the hub's data into `restore`), read back and verified.

    The hub and the students' servers are stopped for it (playbooks/archive.yml): destroy removes the
    hosts next, a backup (hubfleet/backups.py) starts the hub again."""
    hosts = provider.hosts()
    recorded = {h["name"] for h in instance.hosts}
    missing = recorded - {h.name for h in hosts}
    if missing:
        raise ArchiveError(f"host(s) {', '.join(sorted(missing))} of {instance.name} have disappeared: their "
                           "students' work cannot be archived; nothing was removed",
                           hint=f"`hubfleet create` brings them back, or `hubfleet destroy {instance.name} "
                           "--no-archive` removes the rest without saving")
    if not hosts:
        raise ArchiveError(f"{instance.name} has no hosts to archive; nothing was removed",
                           hint=f"use `hubfleet destroy {instance.name} --no-archive` if there is nothing to save")
    workdir = store.instance_dir(instance.name)
    fetch_dir = workdir / "archive-parts"
    shutil.rmtree(fetch_dir, ignore_errors=True)  # parts of a run cut off mid-way are not trusted
    fetch_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Archiving needs only what names the course's servers and volumes: no re-plan, which a changed
    # flavor list could refuse while students' work waits to be saved.
    variables = {"hub_course": instance.name, "hub_volume_prefix": VOLUME_PREFIX, "archive_exclude": PROBE_VOLUME,
                 "archive_fetch_dir": str(fetch_dir)}
    inventory = course_inventory(store, instance.name, hosts, provider)
    record("step", "archiving the students' work on every host (each student's archive is compared with the volume)")
    try:
        ansible.run_playbook("archive.yml", workdir=workdir, inventory=inventory, variables=variables,
                             progress=record, verbosity=verbosity)
    except ProvisionError as exc:
        raise ArchiveError(f"archiving failed, nothing was removed: {exc.message}", hint=exc.hint) from None
    hub = next(h.name for h in hosts if h.role == "hub")
    summary = join_parts(instance.name, {h.name: fetch_dir / f"{h.name}.tar" for h in hosts}, out,
                         restore_part=fetch_dir / "restore.tar.gz", restore_out=restore, hub=hub)
    record("ok", f"archive verified: {summary.files} entries of {summary.volumes} student(s), {out}")
    record("info", f"the hub's database and cookie secret (for the operator only): {restore}")
    return summary


def archive_path(instance: Instance) -> Path | None:
    archive = instance.outputs.get("archive")
    return Path(archive["path"]) if archive else None
