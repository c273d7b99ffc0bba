from __future__ import annotations

import click

from hubfleet.app import Application
from hubfleet.cli.params import COURSE
from hubfleet.authenticators import secret_labels

PUBLIC_NAMES = secret_labels()


@click.command("credentials")
@click.argument("name", type=COURSE)
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON on stdout.")
@click.pass_obj
def command(app: Application, name: str, as_json: bool) -> None:
    """Show a course's secrets: admin user and password, shared password, LTI key and secret.

    This is the only command that prints secrets; treat its output as such.

    \b
    Example:
      hubfleet credentials workshop
    """
    instance = app.store.get(name)
    found = {k: v for k, v in app.store.secrets(instance.name).items() if k in PUBLIC_NAMES}
    found["admin-user"] = instance.outputs.get("admin_user", "admin")
    if as_json:
        app.print_json(found)
        return
    app.warn("secrets follow: do not paste them in tickets or chats")
    for key, value in found.items():
        click.echo(f"{PUBLIC_NAMES.get(key, key.replace('-', ' '))}: {value}")
