from __future__ import annotations

from pathlib import Path

import click

from hubfleet.app import Application
from hubfleet.cli.params import COURSE
from hubfleet.lifecycle import course_status


@click.command("status")
@click.argument("name", type=COURSE)
@click.option("--no-probe", is_flag=True, help="Only ask the hub API; do not start a probe server.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON on stdout.")
@click.pass_obj
def command(app: Application, name: str, no_probe: bool, as_json: bool) -> None:
    """Is the course usable right now? Live health from the hub itself.

    The hub API must answer; a student must get in the way the course's students do (the shared
    password at the login form, a launch signed with the course's LTI 1.1 key; the account is
    removed again); and a probe user starts a server, runs 1+1 in a kernel and stops again
    (--no-probe skips that). Also the seats and the line of students waiting for one, and
    the elastic hosts' latest decisions (`hubfleet autoscale`). Exits 0 when healthy, 7 when not.

    \b
    Examples:
      hubfleet status workshop
      hubfleet status workshop --json --no-probe
    """
    with app.status(f"checking {name}"):
        report = course_status(app.store, name, probe=not no_probe)
    instance, health = report.instance, report.health
    all_problems = report.problems + (health.problems if health else [])
    healthy = health is not None and health.api and not all_problems and (no_probe or health.probe)
    if as_json:
        app.print_json({**report.to_dict(), "problems": all_problems, "healthy": healthy})
    else:
        click.echo(f"{instance.name}: {instance.status} ({instance.provider})")
        if instance.outputs.get("url"):
            click.echo(f"url: {instance.outputs['url']}")
        certificate = report.certificate
        if certificate:
            click.echo(f"certificate: {certificate.subject}, issued by {certificate.issuer}, "
                       f"{certificate.days_left} day(s) left")
        if instance.outputs.get("ca_certificate"):
            click.echo(f"CA certificate to trust: {instance.outputs['ca_certificate']}")
        for node in report.nodes:
            memory = (f", memory {node.memory_used / 2**30:.1f} of {node.memory_total / 2**30:.1f} GiB used"
                      if node.memory_used is not None else "")
            click.echo(f"node {node.host}: {node.state}, {node.availability}, {node.servers} server(s){memory}")
        if not report.nodes:
            for host in instance.hosts:
                click.echo(f"host {host['name']} ({host['role']})")
        if health:
            click.echo(f"hub: JupyterHub {health.version}, {health.users} user(s), "
                       f"{len(health.running)} server(s) running")
            if health.student_login:
                click.echo("student login: a student got in the way the course's students do")
            elif health.student_login is None:
                click.echo(f"student login: not tried ({health.login_note})")
            if health.probe:
                click.echo(f"probe: started a server and ran code in {health.probe_seconds:.1f} s")
        for line in elastic_lines(report):
            click.echo(line)
        backup = instance.outputs.get("backup")
        if backup and instance.status != "archived":
            click.echo(f"last backup: {backup.get('at', '?')}, {backup.get('volumes', '?')} student(s), "
                       f"{Path(backup['path']).name} (`hubfleet reconcile` backs up every term.backup_every)")
        archive = instance.outputs.get("archive")
        if archive:
            click.echo(f"archive: {archive['path']}")
        for problem in all_problems + report.warnings:
            app.warn(problem)
    if instance.status != "archived" and not healthy:
        raise SystemExit(7)


def elastic_lines(report, decisions: int = 5) -> list[str]:
    """The seats and the line, the elastic hosts and the latest decisions about them."""
    lines = []
    seats = report.seats
    if seats:
        lines.append(f"seats: {seats['used']} of {seats['capacity']} taken, {seats['starting']} starting, "
                     f"{seats['waiting']} waiting in line")
    elastic = report.instance.outputs.get("elastic") or {}
    if elastic.get("extra"):
        lines.append(f"elastic: {elastic['extra']} host(s) added beyond the plan")
    for entry in (elastic.get("decisions") or [])[-decisions:]:
        lines.append(f"autoscale {entry.get('at', '?')}: {entry.get('action')}: {entry.get('reason')}")
    return lines
