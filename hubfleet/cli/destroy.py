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
    """Archive a course's student work, verify the archive, then remove everything.

    Servers are stopped, every student's volume and the hub database go into one tar.gz with a
    sha256 manifest, the archive is checked file by file, and only then are hosts, volumes,
    networks, keys and secrets removed. If archiving fails, nothing is removed.

    \b
    Examples:
      hubfleet destroy workshop
      hubfleet destroy workshop --yes
    """
    instance = app.store.get(name)
    if not yes:
        what = "WITHOUT an archive" if no_archive else "after archiving the students' work"
        click.confirm(f"Remove course {instance.name!r} ({len(instance.hosts)} host(s)) {what}?", abort=True, err=True)
    summary = destroy_course(app.store, name, archive=not no_archive, progress=printer(app), verbosity=app.verbosity)
    if summary:
        click.echo(f"archive: {summary.path} ({summary.files} files, {summary.volumes} volume(s), "
                   f"{summary.bytes} bytes, sha256 {summary.sha256})")
    app.success(f"{name} is destroyed")
