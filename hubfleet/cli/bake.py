from __future__ import annotations

import time

import click

from hubfleet.app import Application
from hubfleet.baking import bake_image

PROVIDERS = ("docker", "openstack")


@click.command("bake")
@click.argument("provider", type=click.Choice(PROVIDERS), default="docker")
@click.pass_obj
def command(app: Application, provider: str) -> None:
    """Bake the host image: a stock Debian 12 host with the roles' install steps done ahead.

    hubfleet starts a stock host, runs playbooks/bake.yml on it (the Docker engine, nginx,
    certbot, the hub's virtualenv and configurable-http-proxy: the install steps of the roles
    that `create` runs), wipes what belongs to that one machine (host keys, machine id,
    cloud-init's instance, the login key) and saves it as the provider's host image. Courses then
    start from it and `create`'s install steps find everything done. The image is named by a hash
    of what went into it: baking again with unchanged roles does nothing.

    \b
    Examples:
      hubfleet bake            # the Docker provider's hubfleet/host image
      hubfleet bake docker
    """
    started = time.monotonic()
    image = bake_image(provider, app.store.dir, lambda message: app.info(f"  {message}"), verbosity=app.verbosity)
    app.success(f"baked host image: {image} ({time.monotonic() - started:.0f} s)")
    click.echo(image)
