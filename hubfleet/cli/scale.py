from __future__ import annotations

import click

from hubfleet.app import Application
from hubfleet.cli.params import COURSE
from hubfleet.cli.progress import printer
from hubfleet.lifecycle import scale_course


@click.command("scale")
@click.argument("name", type=COURSE)
@click.option("--hosts", "count", type=click.IntRange(1, 64), required=True, help="How many hosts the course should have.")
@click.pass_obj
def command(app: Application, name: str, count: int) -> None:
    """Add hosts to a live course, or remove empty ones, without touching running students.

    New hosts join the course's Swarm and new students are placed on the least loaded node.
    Shrinking refuses while a host to remove still holds students' volumes: their work lives
    there (archive the course with `hubfleet destroy` instead).

    \b
    Examples:
      hubfleet scale mooc-queues --hosts 4
      hubfleet scale mooc-queues --hosts 2
    """
    result = scale_course(app.store, name, count, progress=printer(app), verbosity=app.verbosity)
    app.success(f"{name} has {len(result.instance.hosts)} host(s) ({result.changed} change(s))")
