from __future__ import annotations

import click

from hubfleet.app import Application
from hubfleet.cli.params import COURSE
from hubfleet.cli.progress import printer
from hubfleet.lifecycle import destroy_course


@click.command("destroy")
@click.argument("name", type=COURSE)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-archive", is_flag=True,
              help="Remove everything WITHOUT saving the students' work first. Must be explicit.")
@click.pass_obj
def command(app: Application, name: str, yes: bool, no_archive: bool) -> None:
    """Archive every student's work, verify the archive, then remove everything.

    Servers are stopped; each student's volume becomes a GNU tar.gz of its own (every file name,
    link, empty folder, permission and sparse file), compared with the volume before anything
    else happens. The teacher's archive (archives/NAME-STAMP.tar) holds these, an index and
    SHA256SUMS; the hub's database and cookie secret go to a separate file only the operator can
    read (restore/). Only then are hosts, volumes, networks, keys and secrets removed, and the
    embedded ACME server is stopped when no other course uses it. If archiving fails, nothing is
    removed. A destroy that was cut off (even by kill -9) is run again and goes on where it stopped.

    \b
    Examples:
      hubfleet destroy workshop
      hubfleet destroy workshop --yes
      tar -xf ~/.local/share/hubfleet/archives/workshop-*.tar   # then students/<name>.tar.gz
    """
    instance = app.store.get(name)
    if not yes:
        what = "WITHOUT an archive" if no_archive else "after archiving the students' work"
        verb = "Go on removing" if instance.status == "destroying" else "Remove"
        click.confirm(f"{verb} course {instance.name!r} ({len(instance.hosts)} host(s)) {what}?", abort=True, err=True)
    summary = destroy_course(app.store, name, archive=not no_archive, progress=printer(app), verbosity=app.verbosity)
    if summary:
        click.echo(f"archive: {summary.path} ({summary.files} entries, {summary.volumes} student(s), "
                   f"{summary.bytes} bytes, sha256 {summary.sha256})")
        if summary.restore:
            click.echo(f"hub data for the operator only: {summary.restore}")
    app.success(f"{name} is destroyed")
