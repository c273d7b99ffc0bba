"""The `hubfleet` command: one root group; each verb is one short module that parses, calls domain code, reports."""

from __future__ import annotations

import traceback
from pathlib import Path

import click

from hubfleet import __version__
from hubfleet.app import Application, debug_enabled
from hubfleet.cli.params import FilePath
from hubfleet.errors import HubfleetError


class HubfleetGroup(click.Group):
    """Turns typed domain errors into one message on stderr and the error's exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HubfleetError as exc:
            app = ctx.obj if isinstance(ctx.obj, Application) else Application(None)
            if debug_enabled():
                traceback.print_exc()
            app.abort(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: nothing more was changed; run the same command again to finish", err=True)
            ctx.exit(130)

    def list_commands(self, ctx):
        return list(self.commands)  # keep the order they were added: the order of a course's life


@click.group(cls=HubfleetGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--state-dir", type=FilePath(file_okay=False, path_type=Path), envvar="HUBFLEET_STATE_DIR",
              show_envvar=True, help="Where hubfleet keeps its state, secrets and archives "
              "(default: ~/.local/share/hubfleet).")
@click.option("--database-url", envvar="HUBFLEET_DATABASE_URL", show_envvar=True, metavar="URL",
              help="State database (default: SQLite in the state dir), e.g. postgresql://user@host/hubfleet.")
@click.option("-v", "--verbose", count=True, help="Show more detail (Ansible task output with -vv).")
@click.version_option(__version__, prog_name="hubfleet")
@click.pass_context
def cli(ctx: click.Context, state_dir: Path | None, database_url: str | None, verbose: int) -> None:
    """One JupyterHub per course, from a short course descriptor.

    \b
    A course's life:
      hubfleet validate examples/workshop.yaml   check the descriptor
      hubfleet plan examples/workshop.yaml       hosts, limits and cost it needs
      hubfleet create examples/workshop.yaml     hosts + JupyterHub, prints the URL
      hubfleet status workshop                   is it usable right now?
      hubfleet credentials workshop              admin and student passwords
      hubfleet scale workshop --hosts 2          more hosts for a live course (Docker Swarm)
      hubfleet warm workshop --students 60       ready for a class arriving at once
      hubfleet autoscale --all --watch           grow full courses, shrink them back
      hubfleet reconcile --courses DIR           make, keep and remove courses by their dates
      hubfleet destroy workshop                  archive the students' work, then remove all
      hubfleet archives list                     what was archived; `prune` after the keep time

    \b
    Teachers ask for hubs in a web form, operators approve them:
      hubfleet portal add-operator ops@example.edu
      hubfleet portal serve --port 8088

    Errors exit non-zero: 2 bad input, 3 unknown course, 4 course busy, 5 provisioning
    failed, 6 archive failed, 7 unhealthy. Set HUBFLEET_DEBUG=1 to see tracebacks.
    """
    ctx.obj = Application(state_dir, verbose, database_url)


VERBS = ("validate", "plan", "create", "scale", "warm", "autoscale", "reconcile", "destroy", "archives", "list_",
         "status", "credentials", "lti_config", "images", "bake", "portal")


def _register() -> None:
    """Add each verb module that exists, in the order of a course's life."""
    from importlib import import_module
    from importlib.util import find_spec

    for name in VERBS:
        if find_spec(f"hubfleet.cli.{name}") is not None:
            cli.add_command(import_module(f"hubfleet.cli.{name}").command)


_register()


def main() -> None:
    cli(prog_name="hubfleet")
