from __future__ import annotations

from pathlib import Path

import click

from hubfleet.app import Application
from hubfleet.cli.params import FilePath
from hubfleet.authenticators import kind_of
from hubfleet.cli.progress import printer
from hubfleet.descriptor import load_course
from hubfleet.lifecycle import create_course


@click.command("create")
@click.argument("descriptor", type=FilePath(path_type=Path))
@click.option("--no-probe", is_flag=True, help="Skip the end-to-end probe (start a server, run code) at the end.")
@click.option("--flavors", type=FilePath(dir_okay=False, exists=True, path_type=Path),
              help="Plan against this flavor catalogue YAML instead of the backend's.")
@click.option("--hosts", type=click.IntRange(1, 64), help="Use this many hosts (at least what the plan needs).")
@click.option("--json", "as_json", is_flag=True, help="Print the resulting instance as JSON on stdout.")
@click.pass_obj
def command(app: Application, descriptor: Path, no_probe: bool, flavors: Path | None, hosts: int | None,
            as_json: bool) -> None:
    """Create a course's hub from its descriptor, or finish / update an existing one.

    Validates, plans, provisions the hosts, configures them with Ansible, checks that a user can
    run code, and records the course. Running it again converges: nothing changes on a healthy
    course, and an interrupted run is finished.

    \b
    Examples:
      hubfleet create examples/workshop.yaml
      hubfleet credentials workshop      # the password to log in with
    """
    course = load_course(descriptor)
    result = create_course(app.store, course, progress=printer(app), probe=not no_probe, verbosity=app.verbosity,
                           flavors=flavors, hosts=hosts)
    if as_json:
        app.print_json({**result.instance.to_dict(), "health": result.health.to_dict(),
                        "seconds": round(result.seconds, 1), "changed": result.changed})
        return
    url = result.instance.outputs["url"]
    app.success(f"{course.name} is ready in {result.seconds:.0f} s ({result.changed} change(s))")
    click.echo(f"url: {url}")
    if result.instance.outputs.get("ca_certificate"):
        click.echo(f"CA certificate: {result.instance.outputs['ca_certificate']} (the embedded ACME server's root: "
                   "trust it in your browser to open the hub without a warning)")
    for line in kind_of(course).login_hints(course):
        click.echo(line)
