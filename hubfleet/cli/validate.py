from __future__ import annotations

from pathlib import Path

import click

from hubfleet import tls
from hubfleet.app import Application
from hubfleet.cli.params import FilePath
from hubfleet.descriptor import json_schema, load_course


@click.command("validate")
@click.argument("descriptor", type=FilePath(path_type=Path), required=False)
@click.option("--schema", is_flag=True, help="Print the descriptor's JSON Schema (every field described) and exit.")
@click.pass_obj
def command(app: Application, descriptor: Path | None, schema: bool) -> None:
    """Check a course descriptor; every problem is listed with its field and fix.

    \b
    Examples:
      hubfleet validate examples/workshop.yaml
      hubfleet validate --schema > course.schema.json

    Exits 0 when valid, 2 when not. Nothing is written either way.
    """
    if schema:
        app.print_json(json_schema())
        return
    if descriptor is None:
        raise click.UsageError("give a descriptor file, e.g. `hubfleet validate examples/workshop.yaml`")
    course = load_course(descriptor)
    app.success(f"{descriptor} is valid: course {course.name!r} ({course.title}), "
                f"{course.authenticator.kind}, {course.load.students} students, provider {course.provider}")
    https = tls.summary(course)
    app.info(f"served at {https['url']} with a certificate from {https['certificate']}")
