from __future__ import annotations

import click
from rich.table import Table

from hubfleet.app import Application


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print every instance as JSON on stdout.")
@click.option("--all", "show_all", is_flag=True, help="Include archived courses.")
@click.pass_obj
def command(app: Application, as_json: bool, show_all: bool) -> None:
    """List the fleet's courses from the state store.

    \b
    Examples:
      hubfleet list
      hubfleet list --json | jq '.[].url'
    """
    instances = [i for i in app.store.all() if show_all or i.status != "archived"]
    if as_json:
        app.print_json([i.to_dict() for i in instances])
        return
    if not instances:
        app.info("no courses yet — create one with `hubfleet create examples/workshop.yaml`")
        return
    table = Table(show_header=True)
    for col in ("name", "status", "provider", "hosts", "url", "updated"):
        table.add_column(col)
    for i in instances:
        table.add_row(i.name, i.status, i.provider, str(len(i.hosts)), i.outputs.get("url", "-"),
                      i.updated_at.strftime("%Y-%m-%d %H:%M"))
    app.out.print(table)
