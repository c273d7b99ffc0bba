from __future__ import annotations

import time

import click

from hubfleet.app import Application
from hubfleet.cli.params import COURSE
from hubfleet.cli.progress import printer
from hubfleet.elastic import autoscale
from hubfleet.errors import HubfleetError

MAX_WATCH_SECONDS = 366 * 86400


@click.command("autoscale")
@click.argument("names", nargs=-1, type=COURSE)
@click.option("--all", "every", is_flag=True, help="Every live course of the state store.")
@click.option("--watch", is_flag=True, help="Repeat the round every --interval seconds until interrupted.")
@click.option("--interval", type=click.IntRange(5, 3600), default=30, show_default=True,
              help="Seconds between rounds with --watch.")
@click.option("--for", "duration", type=click.IntRange(1, MAX_WATCH_SECONDS), metavar="SECONDS",
              help="With --watch: stop after this many seconds.")
@click.option("--empty-for", type=click.IntRange(0, 86400), metavar="SECONDS",
              help="Seconds an added host must stay without servers before it goes (default 600).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per course and round on stdout.")
@click.pass_obj
def command(app: Application, names: tuple[str, ...], every: bool, watch: bool, interval: int,
            duration: int | None, empty_for: int | None, as_json: bool) -> None:
    """Grow a full course past its plan and shrink it back: elastic hosts, one round or on a timer.

    A round asks the course's hub for its seats and its line. Students waiting without a seat, or
    seats nearly all taken: a host of the planned flavor is added (up to load.max_hosts) and joins
    the Swarm; the hub never restarts for it. An added host that has run no server for --empty-for
    seconds while the rest has room goes, the last added first. The files of students who started
    there move to the other hosts first (copied and compared, then removed); a host whose files
    could not all move stays, so no student's work is lost to a shrink. Before a
    class of the descriptor's class_hours, or one `hubfleet warm` announced, the hosts it needs
    are added. Every decision is logged; `hubfleet status NAME` shows the latest.

    Run it on a timer (a systemd timer or cron, every minute) or as a service with --watch: it
    needs the provider's credentials, which stay on this machine, never on a course's hosts.

    \b
    Examples:
      hubfleet autoscale mooc-queues                 one round
      hubfleet autoscale --all --watch --interval 30 every course, until interrupted
      hubfleet autoscale --all                        from a timer, every minute
    """
    if bool(names) == every:
        raise click.UsageError("name the courses, or give --all (not both)")
    if duration and not watch:
        raise click.UsageError("--for goes with --watch")
    deadline = time.monotonic() + duration if duration else None
    failed = False
    while True:
        courses = names or tuple(i.name for i in app.store.all() if i.status in ("ready", "degraded"))
        for name in courses:
            try:
                result = autoscale(app.store, name, progress=printer(app) if app.verbosity else None,
                                   empty_for=empty_for, verbosity=app.verbosity)
            except HubfleetError as exc:
                if not watch:
                    raise
                app.warn(f"{name}: {exc.message}")
                failed = True
                continue
            if as_json:
                app.print_json(result.to_dict(), one_line=True)  # a round per line, also with --watch
            else:
                moved = f" → {result.hosts_after} host(s)" if result.hosts_after != result.hosts_before else ""
                app.info(f"{name}: {result.decision.action}: {result.decision.reason}{moved}")
        if not watch or (deadline and time.monotonic() >= deadline):
            break
        time.sleep(interval if deadline is None else max(0, min(interval, deadline - time.monotonic())))
    if failed and not watch:
        raise SystemExit(5)
