from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from hubfleet.app import Application
from hubfleet.cli.params import COURSE, FilePath
from hubfleet.cli.progress import printer
from hubfleet.errors import FieldProblem, InvalidInput
from hubfleet.reconcile import Decision, reconcile
from hubfleet.term import parse_now



class Moment(click.ParamType):
    name = "TIMESTAMP"

    def convert(self, value, param, ctx) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        try:
            return parse_now(str(value))
        except ValueError as exc:
            raise InvalidInput([FieldProblem("--now", str(exc))], source="command line") from None


@click.command("reconcile")
@click.option("--courses", "courses_dir", type=FilePath(file_okay=False, exists=True, path_type=Path),
              metavar="DIR", help="A directory of course descriptors (*.yaml) to hold the fleet to, besides the "
              "courses the state store records (a descriptor here wins over the recorded one).")
@click.option("--now", type=Moment(), metavar="TIMESTAMP",
              help="Act as if it were this moment (ISO 8601, UTC unless a zone is given): with --dry-run, see what "
              "a date would bring. Default: the clock.")
@click.option("--dry-run", is_flag=True, help="Print what each course needs and change nothing.")
@click.option("--course", "only", type=COURSE, metavar="NAME", help="Only this course.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per course on stdout.")
@click.pass_obj
def command(app: Application, courses_dir: Path | None, now: dt.datetime | None, dry_run: bool, only: str | None,
            as_json: bool) -> None:
    """Bring every course to what its dates say: made before the start, removed after the end.

    For each course (the --courses descriptors and the state store's records), its dates give a
    phase. Before dates.start by dates.warm_before (default 2d): the hub is made, the image on every
    host. While the course runs: a create that stopped is finished, a changed descriptor in
    --courses is applied (students keep their work: `hubfleet plan FILE --diff` shows the change
    first), an unhealthy course is repaired by converging; hosts that vanished are made again and
    the students whose volume went with them get their files back (into restored-<backup>) from the
    last backup. A backup is taken every term.backup_every (1d) at a moment when no student's
    server runs (the hub stops for the seconds it takes). From term.notice_before (7d) before the
    end, and through dates.grace_after (14d) after it, the hub's pages carry a banner telling
    students to download their work. After the grace: archived, the archive verified, removed.

    A course that fails never stops the others; a course already as it should be is left alone,
    so running it twice does nothing twice, and a run killed half-way is finished by the next.
    Every action lands in the course's events (`hubfleet status NAME`). Exits 1 when a course
    failed. Run it from a timer: contrib/systemd/hubfleet-reconcile.timer (docs/term.md).

    \b
    Examples:
      hubfleet reconcile --courses /etc/hubfleet/courses
      hubfleet reconcile --dry-run --now 2027-02-01     what the first of February brings
      hubfleet reconcile --course stats-101 --json
    """
    moment = now or dt.datetime.now(dt.timezone.utc)
    report = (lambda d: app.print_json(d.to_dict(), one_line=True)) if as_json else (lambda d: show(app, d, dry_run))
    decisions = reconcile(app.store, moment, courses_dir=courses_dir, dry_run=dry_run, only=only, report=report,
                          progress=printer(app) if app.verbosity and not as_json else None,
                          verbosity=app.verbosity)
    if only and not decisions:
        app.abort(f"no course named {only!r}: not in --courses and not in the state store", 3)
    if not as_json:
        acted = sum(1 for d in decisions if d.acts)
        verb = "would act on" if dry_run else "acted on"
        app.info(f"{len(decisions)} course(s) at {moment:%Y-%m-%d %H:%M} UTC; {verb} {acted}")
    if any(d.failed for d in decisions):
        raise SystemExit(1)


def show(app: Application, d: Decision, dry_run: bool) -> None:
    if d.acts and dry_run:
        line = f"would {d.action}: {d.reason}"
    elif d.acts:
        line = f"{d.action}: {d.outcome} — {d.reason}"
    else:
        line = f"{d.action}: {d.reason}" + (f" ({d.outcome})" if d.outcome else "")
    phase = f" [{d.phase}]" if d.phase else ""
    app.out.print(f"{d.course}{phase} {line}", markup=False)
