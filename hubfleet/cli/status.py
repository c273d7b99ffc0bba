from __future__ import annotations

import click

from hubfleet.app import Application


@click.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON on stdout.")
@click.pass_obj
def command(app: Application, name: str, as_json: bool) -> None:
    """Show a course's state: status, hosts, URL.

    \b
    Example:
      hubfleet status workshop
    """
    instance = app.store.get(name)
    if as_json:
        app.print_json(instance.to_dict())
        return
    click.echo(f"{instance.name}: {instance.status} ({instance.provider})")
    if instance.outputs.get("url"):
        click.echo(f"url: {instance.outputs['url']}")
    for host in instance.hosts:
        click.echo(f"host {host['name']} ({host['role']}) ssh {host['address']}:{host['ssh_port']}")
    if instance.error:
        click.echo(f"last error: {instance.error}")
