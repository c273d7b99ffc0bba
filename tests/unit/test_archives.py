"""`hubfleet archives`: listing the courses' archives and removing them after the site's keep time.

Archives here are plain tars laid out as hubfleet.archive writes them (index.json after the students'
files); the real ones from a real destroy are listed and pruned in tests/integration/test_workshop_e2e.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from hubfleet.archive import FORMAT
from hubfleet.archives import expired, list_archives
from hubfleet.cli import cli
from hubfleet.state import StateStore

UTC = dt.timezone.utc
MADE = dt.datetime(2027, 1, 10, 12, 0, tzinfo=UTC)


def make_archive(store: StateStore, course: str, made_at: dt.datetime, students: list[str],
                 *, with_restore: bool = True) -> Path:
    top = f"{course}-{made_at:%Y%m%dT%H%M%SZ}"
    path = store.archive_dir() / f"{top}.tar"
    index = {"format": FORMAT, "course": course, "made_at": made_at.isoformat(timespec="seconds"),
             "students": [{"user": s, "file": f"students/{s}.tar.gz"} for s in students], "teaching": []}
    with tarfile.open(path, "w") as tar:
        for name, data in [*((f"{top}/students/{s}.tar.gz", s.encode() * 1000) for s in students),
                           (f"{top}/index.json", json.dumps(index).encode())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    if with_restore:
        (store.restore_dir() / f"{top}.hub.tar").write_bytes(b"operator's only")
    return path


def record(store: StateStore, course: str, path: Path) -> str:
    """The course's record as destroy leaves it: archived, the archive's path and sha256."""
    store.upsert(course, provider="docker", descriptor={"name": course})
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    store.update(course, status="archived", outputs={"archive": {"path": str(path), "sha256": digest}})
    return digest


@pytest.fixture
def store(tmp_path) -> StateStore:
    return StateStore(tmp_path / "state")


@pytest.fixture
def run(store):
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(cli, ["--state-dir", str(store.dir), "archives", *args], input=input,
                             catch_exceptions=False)

    return invoke


def test_list_shows_course_date_size_students_and_the_recorded_checksum(store, run):
    old = make_archive(store, "algebra", MADE, ["alice", "bob"])
    digest = record(store, "algebra", old)
    loose = make_archive(store, "physics", MADE + dt.timedelta(days=3), ["carol"])

    listed = json.loads(run("list", "--json").stdout)
    assert [(a["course"], a["students"], a["recorded"]) for a in listed] == [("algebra", 2, True), ("physics", 1, False)]
    assert listed[0]["made_at"] == "2027-01-10T12:00:00+00:00" and listed[0]["bytes"] == old.stat().st_size
    assert listed[0]["sha256"] == digest and listed[1]["sha256"] is None, "recorded, never recomputed unasked"
    assert listed[0]["restore"].endswith("algebra-20270110T120000Z.hub.tar")

    computed = json.loads(run("list", "--json", "--checksums").stdout)
    assert computed[1]["sha256"] == hashlib.sha256(loose.read_bytes()).hexdigest()
    only = json.loads(run("list", "--json", "--course", "physics").stdout)
    assert [a["course"] for a in only] == ["physics"]

    table = run("list")
    assert table.exit_code == 0 and "algebra" in table.stdout and digest[:12] in table.stdout


def test_a_recorded_archive_gone_from_the_folder_is_named(store, run):
    path = make_archive(store, "algebra", MADE, ["alice"])
    record(store, "algebra", path)
    path.unlink()
    result = run("list")
    assert result.exit_code == 0 and f"recorded but missing from {store.archive_dir()}: {path}" in result.stderr


def test_an_unreadable_archive_is_listed_with_its_problem_and_never_pruned(store, run):
    (store.archive_dir() / "notes.tar").write_bytes(b"not a tar at all")
    listed = json.loads(run("list", "--json").stdout)
    assert listed[0]["course"] is None and "not readable as a course archive" in listed[0]["problem"]
    result = run("prune", "--keep-days", "1", "--now", "2099-01-01", "--yes")
    assert result.exit_code == 0 and (store.archive_dir() / "notes.tar").exists()


def test_expired_counts_from_the_date_inside_and_keeps_the_boundary(store):
    make_archive(store, "algebra", MADE, ["alice"])
    entries = list_archives(store)
    assert expired(entries, 30, MADE + dt.timedelta(days=30)) == []
    assert expired(entries, 30, MADE + dt.timedelta(days=30, seconds=1)) == entries
    with pytest.raises(ValueError):
        expired(entries, 0, MADE)


def test_prune_removes_only_the_old_ones_with_their_operators_files_once(store, run):
    old = make_archive(store, "algebra", MADE, ["alice"])
    record(store, "algebra", old)
    recent = make_archive(store, "physics", MADE + dt.timedelta(days=20), ["carol"])
    now = (MADE + dt.timedelta(days=31)).isoformat()

    dry = run("prune", "--keep-days", "30", "--now", now, "--dry-run")
    assert dry.exit_code == 0 and "would remove algebra-20270110T120000Z.tar" in dry.stderr and old.exists()

    declined = run("prune", "--keep-days", "30", "--now", now, input="n\n")
    assert declined.exit_code != 0 and old.exists(), "nothing removed without a yes"

    done = run("prune", "--keep-days", "30", "--now", now, "--yes")
    assert done.exit_code == 0 and "removed 1 archive(s)" in done.stderr
    assert not old.exists() and not (store.restore_dir() / "algebra-20270110T120000Z.hub.tar").exists()
    assert recent.exists() and (store.restore_dir() / f"{recent.name.removesuffix('.tar')}.hub.tar").exists()
    assert any("archive algebra-20270110T120000Z.tar removed: older than 30 day(s)" in message
               for _, _, _, message in store.events("algebra"))

    again = run("prune", "--keep-days", "30", "--now", now, "--yes")
    assert again.exit_code == 0 and "no archive is older than 30 day(s)" in again.stderr


def test_prune_takes_the_keep_time_from_the_site_file(store, run):
    old = make_archive(store, "algebra", MADE, ["alice"], with_restore=False)
    (store.dir / "site.yaml").write_text("archives:\n  keep_days: 7\n")
    result = run("prune", "--now", (MADE + dt.timedelta(days=8)).isoformat(), "--yes")
    assert result.exit_code == 0 and not old.exists()


@pytest.mark.parametrize("site, says", [
    ("archives:\n  keep_days: 0\n", "archives.keep_days"),
    ("archives:\n  keep_days: ten\n", "archives.keep_days"),
    ("archives:\n  keep: 7\n", "archives.keep"),
])
def test_a_bad_keep_time_in_the_site_file_is_refused_naming_the_field(store, run, site, says):
    old = make_archive(store, "algebra", MADE, ["alice"])
    (store.dir / "site.yaml").write_text(site)
    result = run("prune", "--now", "2099-01-01", "--yes")
    assert result.exit_code == 2 and says in result.stderr and old.exists()


@pytest.mark.parametrize("args, says", [
    ([], "--keep-days: no keep time"),
    (["--keep-days", "0"], "--keep-days"),
    (["--keep-days", "7", "--now", "next week"], "is not a date"),
])
def test_prune_without_a_usable_keep_time_or_date_changes_nothing(store, run, args, says):
    old = make_archive(store, "algebra", MADE, ["alice"])
    result = run("prune", "--yes", *args)
    assert result.exit_code == 2 and says in result.stderr + result.stdout and old.exists()


def test_the_shipped_timer_runs_a_command_that_exists(store, run):
    unit = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "hubfleet-archives-prune.service"
    exec_start = next(line for line in unit.read_text().splitlines() if line.startswith("ExecStart="))
    program, *args = exec_start.removeprefix("ExecStart=").split()
    assert program.endswith("/hubfleet") and args[0] == "archives"
    make_archive(store, "algebra", MADE, ["alice"])
    result = run(*args[1:], "--keep-days", "1", "--now", "2099-01-01", "--dry-run")
    assert result.exit_code == 0 and "would remove algebra-" in result.stderr
