from __future__ import annotations

import shlex
from pathlib import Path

import click
from rich.table import Table

from hubfleet import egress, tls
from hubfleet.app import Application
from hubfleet.cli.params import FilePath
from hubfleet.changes import compare
from hubfleet.descriptor import Course, format_bytes, load_course, parse_recorded
from hubfleet.errors import HubfleetError, NotFound
from hubfleet.lifecycle import plan_for, provider_for
from hubfleet.site import load_site_wide
from hubfleet.sizing import Plan


@click.command("plan")
@click.argument("descriptor", type=FilePath(path_type=Path))
@click.option("--flavors", type=FilePath(dir_okay=False, exists=True, path_type=Path),
              help="A flavor catalogue YAML to plan against instead of the packaged one.")
@click.option("--hosts", type=click.IntRange(1, 64), help="Force this many hosts (e.g. to plan a Swarm).")
@click.option("--diff", is_flag=True, help="Compare with the live course of the same name: what `hubfleet create` "
              "would change, and whom it affects.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan (or with --diff, the changes) as JSON on stdout.")
@click.pass_obj
def command(app: Application, descriptor: Path, flavors: Path | None, hosts: int | None, diff: bool,
            as_json: bool) -> None:
    """Size a course: hosts and flavors, per-user limits, spawn limit, disk, cost per day.

    \b
    Examples:
      hubfleet plan examples/mooc-queues.yaml
      hubfleet plan examples/workshop.yaml --json
      hubfleet plan course.yaml --flavors site-flavors.yaml --hosts 2
      hubfleet plan course.yaml --diff
      hubfleet plan course.yaml --diff --json

    With --diff, the descriptor is compared with the one the live course of its name was last created
    from: each changed field with what happens and to whom (a new image at each student's next server
    start, more hosts, a new login), then the plan's hosts, flavor, servers at once and cost. Secrets
    show as "(changed)", never their value. Nothing is touched: apply with `hubfleet create`.

    Memory = concurrent users x memory per user + 0.5 GiB for hub and proxy, plus 30% headroom;
    CPU = concurrent x CPU per user x 1.2 + 0.25; disk = students x disk per user + 10 GiB a host.
    A rush may grow the course to load.max_hosts hosts (default: twice the plan, at least one
    more); students beyond the capacity wait in line on the hub instead of getting an error.
    Every hub is HTTPS: the plan says where its certificate comes from (without `tls`, the
    provider's ACME server: the embedded one on docker, Let's Encrypt on openstack). It also says
    where students' servers may connect to (`egress`; without it, package-index: only the site's
    package indexes, through a proxy on each host).
    """
    course = load_course(descriptor)
    if diff:
        show_changes(app, course, descriptor, flavors, hosts, as_json)
        return
    plan, notes = plan_for(app.store, course, flavors=flavors, hosts=hosts, strict=False)
    preflight: list[str] | None = None
    if not notes:  # the backend answered: ask it whether it can provision this plan
        try:
            preflight = provider_for(app.store, course.name, course.provider, lambda k, m: None).check(list(plan.hosts))
        except HubfleetError as exc:
            notes.append(f"pre-flight not run: {exc.message}")
    https = tls.summary(course)
    site_egress = load_site_wide(app.store.dir).egress
    outward = {"mode": course.egress, "summary": egress.summary(course.egress, site_egress),
               "package_indexes": list(site_egress.package_indexes) if course.egress == "package-index" else []}
    if as_json:
        app.print_json({**plan.to_dict(), "https": https, "egress": outward, "preflight": preflight,
                        "plan_notes": notes})
    else:
        render_plan(app, plan)
        app.out.print(f"https: {https['url']}, certificate from {https['certificate']}", markup=False)
        app.out.print(f"  needs: {https['needs']}", markup=False)
        app.out.print(f"egress: {outward['summary']}", markup=False)
        for note in notes:
            app.warn(note)
        if preflight is not None:
            if preflight:
                app.out.print("pre-flight: NOT ready", markup=False)
                for problem in preflight:
                    app.out.print(f"  - {problem}", markup=False)
            else:
                app.out.print("pre-flight: ready", markup=False)
    if preflight:
        raise SystemExit(5)


def show_changes(app: Application, course: Course, descriptor: Path, flavors: Path | None, hosts: int | None,
                 as_json: bool) -> None:
    """What `hubfleet create DESCRIPTOR` would change on the live course of the same name."""
    instance = app.store.find(course.name)
    if instance is None or instance.status == "archived":
        raise NotFound(f"there is no live course named {course.name!r} to compare with",
                       hint=f"`hubfleet plan {shlex.quote(str(descriptor))}` without --diff sizes a new one")
    recorded = parse_recorded(instance.descriptor)
    # As a re-run of create does: the flavors and host count the course was given are kept unless overridden.
    kept_flavors = Path(instance.outputs["flavors"]) if instance.outputs.get("flavors") else None
    kept_hosts = instance.outputs.get("hosts_wanted")
    old_plan, old_notes = plan_for(app.store, recorded, flavors=kept_flavors, hosts=kept_hosts, strict=False)
    new_plan, new_notes = plan_for(app.store, course, flavors=flavors or kept_flavors, hosts=hosts or kept_hosts,
                                   strict=False)
    changes = compare(recorded, course, old_plan, new_plan)
    notes = list(dict.fromkeys(old_notes + new_notes))
    apply = f"hubfleet create {shlex.quote(str(descriptor))}"
    if as_json:
        app.print_json({"course": course.name, "changes": [c.to_dict() for c in changes],
                        "plan": {"old": old_plan.to_dict(), "new": new_plan.to_dict()}, "plan_notes": notes})
        return
    for note in notes:
        app.warn(note)
    if not changes:
        app.out.print(f"{course.name} ({instance.status}): nothing would change", markup=False)
    else:
        app.out.print(f"{course.name} ({instance.status}): {len(changes)} change(s)", markup=False)
        for change in changes:
            app.out.print(f"  {change.path}: {change.shown}", markup=False)
            app.out.print(f"      {change.effect}", markup=False)
    app.out.print(f"apply with: {apply}", markup=False)


def render_plan(app: Application, plan: Plan) -> None:
    table = Table(title=f"plan for {plan.course} ({plan.provider})", show_header=True, title_justify="left")
    for col in ("host", "role", "flavor", "vCPU", "RAM", "disk"):
        table.add_column(col)
    for i, h in enumerate(plan.hosts):
        name = f"{plan.course}-hub" if h.role == "hub" else f"{plan.course}-worker-{i}"
        table.add_row(name, h.role, h.flavor, f"{h.vcpus:g}", format_bytes(h.ram_bytes), format_bytes(h.disk_bytes))
    app.out.print(table)
    cost = "no prices in the catalogue" if plan.cost_per_day is None else f"{plan.cost_per_day:.2f} {plan.currency}/day"
    lines = [
        f"students {plan.students}, at once {plan.concurrent_users}",
        f"needs: memory {format_bytes(plan.memory_needed)}, CPU {plan.cpu_needed:.2f}, disk {format_bytes(plan.disk_needed)}",
        f"per student: memory {format_bytes(plan.mem_limit)}, CPU {plan.cpu_limit:g}, disk {format_bytes(plan.disk_per_user)}",
        f"servers at once (capacity) {plan.active_server_limit}, concurrent spawn limit {plan.spawn_limit}",
        f"estimated cost: {cost}",
        elastic_line(plan),
    ]
    for line in lines + [f"note: {n}" for n in plan.notes]:
        app.out.print(line, markup=False)


def elastic_line(plan: Plan) -> str:
    """What a rush may grow the course to (load.max_hosts), and what that costs."""
    if plan.elastic_hosts <= len(plan.hosts):
        return f"elastic hosts: off (load.max_hosts {plan.elastic_hosts}); students beyond the capacity wait in line"
    cost = "" if plan.max_cost_per_day is None else f", up to {plan.max_cost_per_day:.2f} {plan.currency}/day"
    return (f"elastic hosts: up to {plan.elastic_hosts} (load.max_hosts), {plan.capacity_with(plan.elastic_hosts)} "
            f"servers at once{cost}; a host is added near capacity and removed once empty")
