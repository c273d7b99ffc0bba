from __future__ import annotations

from pathlib import Path

import click

from hubfleet.app import Application
from hubfleet.cli.params import COURSE, FilePath
from hubfleet.cli.progress import printer
from hubfleet.elastic import warm_course
from hubfleet.errors import FieldProblem, InvalidInput
from hubfleet.inputs import text_problem

MAX_IDENTITIES = 200_000


@click.command("warm")
@click.argument("name", type=COURSE)
@click.option("--students", type=click.IntRange(1, 200_000), help="Students expected at once (default: load.students).")
@click.option("--for", "minutes", type=click.IntRange(10, 24 * 60), default=120, show_default=True,
              metavar="MINUTES", help="How long the class's hosts are kept.")
@click.option("--expect", type=FilePath(dir_okay=False, exists=True, path_type=Path), metavar="FILE",
              help="The class list: one identity per line (as the LMS or the login form names them).")
@click.option("--json", "as_json", is_flag=True, help="Print what was made ready as JSON on stdout.")
@click.pass_obj
def command(app: Application, name: str, students: int | None, minutes: int, expect: Path | None,
            as_json: bool) -> None:
    """Make a course ready for a class arriving at once, before it starts.

    The hosts for --students at once are added now (up to load.max_hosts) and kept for --for
    minutes; every host gets the course image; every student the hub already knows, and every
    identity in --expect, gets a home host now (spread over the hosts' seats) and their volume
    there. The descriptor's class_hours do the hosts part by themselves before each class
    (`hubfleet autoscale` on a timer).

    \b
    Examples:
      hubfleet warm stats-101 --students 120 --for 90
      hubfleet warm stats-101 --expect class-list.txt
    """
    identities = read_identities(expect) if expect else []
    warmed = warm_course(app.store, name, students=students, minutes=minutes, identities=identities,
                         progress=printer(app), verbosity=app.verbosity)
    if as_json:
        app.print_json(warmed.to_dict())
        return
    app.success(f"{name} is warm until {warmed.until}: {warmed.hosts} host(s) for {warmed.students} student(s) "
                f"at once, the image on each, {warmed.volumes} student volume(s) ready")


def read_identities(path: Path) -> list[str]:
    """One identity per line; blank lines and # comments skipped; a line that cannot be a name is refused."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput([FieldProblem("--expect", f"cannot read {path}: {exc} — give a UTF-8 text file")],
                           source="command line") from None
    found, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        identity = line.strip()
        if not identity or identity.startswith("#"):
            continue
        problem = text_problem(identity)
        if problem or len(identity) > 256:
            problems.append(FieldProblem(f"--expect line {number}", f"{problem or 'is longer than 256 characters'} "
                                                                    "— one identity per line"))
        found.append(identity)
    if len(found) > MAX_IDENTITIES:
        problems.append(FieldProblem("--expect", f"{len(found)} identities — at most {MAX_IDENTITIES}"))
    if problems:
        raise InvalidInput(problems[:20], source="command line")
    return found
