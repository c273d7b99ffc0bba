from __future__ import annotations

import datetime as dt
from pathlib import Path

import click
from rich.table import Table

from hubfleet import archives
from hubfleet.app import Application
from hubfleet.cli.params import COURSE
from hubfleet.descriptor import format_bytes
from hubfleet.errors import FieldProblem, InvalidInput
from hubfleet.site import load_site_wide


class When(click.ParamType):
    """A date or date and time (ISO 8601); without a time zone it is UTC."""

    name = "TIMESTAMP"

    def convert(self, value, param, ctx):
        if isinstance(value, dt.datetime):
            return value
        try:
            when = dt.datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{str(value)[:60]!r} is not a date — write 2027-06-30 or 2027-06-30T08:00:00+02:00", param, ctx)
        return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


@click.group("archives")
def command() -> None:
    """The students' work that `destroy` saved: list it, and remove it after the site's keep time.

    Each course destroyed with its archive left archives/NAME-STAMP.tar in the state directory (the
    teacher's: every student's files, an index and SHA256SUMS) and restore/NAME-STAMP.hub.tar (the
    operator's). The site file's `archives: {keep_days: N}` says how long they are kept; without it
    they are kept until removed by hand.

    \b
    Examples:
      hubfleet archives list
      hubfleet archives list --course workshop --json
      hubfleet archives prune --dry-run
      hubfleet archives prune --yes                 # from a daily timer
    """


@command.command("list")
@click.option("--course", type=COURSE, help="Only this course's archives.")
@click.option("--checksums", is_flag=True,
              help="Compute every archive's sha256 now (reads each in full) instead of showing the one destroy recorded.")
@click.option("--json", "as_json", is_flag=True, help="Print the archives as JSON on stdout.")
@click.pass_obj
def list_(app: Application, course: str | None, checksums: bool, as_json: bool) -> None:
    """Course, date, size, students and sha256 of every archive, oldest first.

    The sha256 is the one `destroy` recorded after reading the archive back (its first 12 digits in the
    table, all of it with --json); `-` when no course of the state store records it (copied in by
    hand, or its course's record is gone). Recorded archives no longer in the folder are named on stderr.
    """
    entries = archives.list_archives(app.store, course=course, checksums=checksums)
    gone = [r for r in archives.missing(app.store)
            if course is None or Path(r["path"]).name.startswith(f"{course}-")]
    if as_json:
        app.print_json([e.to_dict() for e in entries])
    elif not entries:
        app.info("no archives yet — `hubfleet destroy NAME` writes one" if course is None
                 else f"no archive of {course}")
    else:
        table = Table(show_header=True)
        for col in ("course", "made (UTC)", "size", "students", "sha256", "file"):
            table.add_column(col)
        for e in entries:
            table.add_row(e.course or f"? ({e.problem})", e.made_at.strftime("%Y-%m-%d %H:%M") if e.made_at else "-",
                          format_bytes(e.bytes), "-" if e.students is None else str(e.students),
                          f"{e.sha256[:12]}…" if e.sha256 else "-", e.path.name)
        app.out.print(table)
    for record in gone:
        app.info(f"recorded but missing from {app.store.archive_dir()}: {record['path']}")


@command.command("prune")
@click.option("--keep-days", type=click.IntRange(1, 36500), metavar="DAYS",
              help="Keep archives this many days (default: the site file's archives.keep_days).")
@click.option("--now", type=When(), help="Count ages at this time instead of now (to see what a date would remove).")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def prune(app: Application, keep_days: int | None, now: dt.datetime | None, dry_run: bool, yes: bool) -> None:
    """Remove the archives older than the keep time, with their operator's files.

    An archive's age counts from the date written inside it, not the file's time; one that cannot be
    read is never removed (it is listed by `hubfleet archives list`). Each removal goes to the
    course's events. Running it again removes nothing more.
    """
    if keep_days is None:
        keep_days = load_site_wide(app.store.dir).archives.keep_days
    if keep_days is None:
        raise InvalidInput([FieldProblem("--keep-days", "no keep time: give --keep-days DAYS, or set "
                                                        "`archives: {keep_days: DAYS}` in the site file")],
                           source="command line")
    now = now or dt.datetime.now(dt.timezone.utc)
    old = archives.expired(archives.list_archives(app.store), keep_days, now)
    if not old:
        app.success(f"no archive is older than {keep_days} day(s)")
        return
    for entry in old:
        app.info(f"{'would remove' if dry_run else 'removing'} {entry.path.name} ({entry.course}, made "
                 f"{entry.made_at:%Y-%m-%d}, {format_bytes(entry.bytes)}, {entry.students} student(s))"
                 + (f" and {entry.restore.name}" if entry.restore else ""))
    if dry_run:
        return
    if not yes:
        click.confirm(f"Remove {len(old)} archive(s) older than {keep_days} day(s)? The students' work in them "
                      "is then gone for good", abort=True, err=True)
    for entry in old:
        archives.remove(app.store, entry, keep_days)
    app.success(f"removed {len(old)} archive(s) older than {keep_days} day(s)")


class ArchiveFile(click.ParamType):
    """An archive: a path, or a file name in the state directory's archive folder."""

    name = "ARCHIVE"

    def convert(self, value, param, ctx):
        text = str(value)
        if "\x00" in text:
            self.fail("an archive's name holds no NUL byte", param, ctx)
        path = Path(text).expanduser()
        if not path.is_file() and "/" not in text and ctx is not None and isinstance(ctx.obj, Application):
            path = ctx.obj.store.archive_dir() / (text if text.endswith(".tar") else f"{text}.tar")
        if not path.is_file():
            self.fail(f"{text[:200]!r} is no archive — give a path, or a name `hubfleet archives list` shows", param, ctx)
        return path


@command.command("students")
@click.argument("archive", type=ArchiveFile())
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON on stdout.")
@click.pass_obj
def students(app: Application, archive: Path, as_json: bool) -> None:
    """The students whose files an archive holds: their hub username, entries, size and sha256.

    \b
    Examples:
      hubfleet archives students workshop-20270618T090000Z.tar
    """
    from hubfleet.restores import students_in

    _, listed = students_in(archive)
    rows = [{"user": s.get("user"), "entries": s.get("entries"), "bytes": s.get("bytes"), "sha256": s.get("sha256"),
             "file": s.get("file")} for s in listed]
    if as_json:
        app.print_json(rows)
        return
    table = Table(show_header=True)
    for col in ("user", "entries", "size", "sha256"):
        table.add_column(col)
    for row in rows:
        table.add_row(str(row["user"]), str(row["entries"]), format_bytes(row["bytes"] or 0),
                      f"{row['sha256'][:12]}…" if row["sha256"] else "-")
    app.out.print(table)


@command.command("restore")
@click.argument("archive", type=ArchiveFile())
@click.argument("user")
@click.option("--into", "course", type=COURSE, required=True, help="The live course to restore into.")
@click.option("--json", "as_json", is_flag=True, help="Print what was restored, where, as JSON on stdout.")
@click.pass_obj
def restore(app: Application, archive: Path, user: str, course: str, as_json: bool) -> None:
    """Put one student's archived files back into a live course, beside their current files.

    USER is the student's hub username as `hubfleet archives students ARCHIVE` lists it. Their
    files go to a new folder of their volume, restored-<archive name>/, on the host that is their
    home in the course (given one if they have none yet), checked against the archive's sha256
    first and compared with it after unpacking. Nothing they have is changed; a folder of that name
    already there is never written into. Their server must be stopped meanwhile (the hub holds
    their next start until the files are in).

    \b
    Examples:
      hubfleet archives restore workshop-20270618T090000Z.tar alice --into workshop-autumn
    """
    from hubfleet.cli.progress import printer
    from hubfleet.restores import restore_student

    done = restore_student(app.store, archive, user, course, progress=printer(app), verbosity=app.verbosity)
    if as_json:
        app.print_json(done.to_dict())
    app.success(f"{user}'s files from {archive.name} are in {done.folder}/ of their files in {course} "
                f"(on {done.host}, compared with the archive)")
