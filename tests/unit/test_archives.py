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


# --- restoring one student's files ---------------------------------------------------------------

def student_archive(store: StateStore, course: str, files: dict[str, bytes], *, corrupt: bool = False) -> Path:
    """A course archive whose one student, alice, has a real gzip tar of `files` with its sha256 in the index."""
    made = io.BytesIO()
    with tarfile.open(fileobj=made, mode="w:gz") as student:
        for name, data in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            student.addfile(info, io.BytesIO(data))
    data = made.getvalue()
    top = f"{course}-20270110T120000Z"
    index = {"format": FORMAT, "course": course, "made_at": MADE.isoformat(), "teaching": [],
             "students": [{"user": "alice", "file": "students/alice.tar.gz", "entries": len(files),
                           "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}]}
    path = store.archive_dir() / f"{top}.tar"
    with tarfile.open(path, "w") as tar:
        for name, content in ((f"{top}/students/alice.tar.gz", data[:-1] + b"!" if corrupt else data),
                              (f"{top}/index.json", json.dumps(index).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def test_a_students_archive_is_read_out_checked_against_its_sha256(store, tmp_path):
    from hubfleet.restores import read_student

    archive = student_archive(store, "algebra", {"notes.txt": b"mine"})
    top, copy = read_student(archive, "alice", tmp_path)
    assert top == "algebra-20270110T120000Z"
    with tarfile.open(copy) as tar:
        assert tar.extractfile("./notes.txt").read() == b"mine"


def test_a_damaged_or_unknown_student_is_refused_before_anything_changes(store, tmp_path):
    from hubfleet.errors import ArchiveError, InvalidInput
    from hubfleet.restores import read_student

    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(InvalidInput, match="'bob' has no files in .* its students: alice"):
        read_student(student_archive(store, "algebra", {"a": b"1"}), "bob", work)
    damaged = student_archive(store, "physics", {"a": b"1"}, corrupt=True)
    with pytest.raises(ArchiveError, match="does not match its sha256"):
        read_student(damaged, "alice", work)
    assert list(work.iterdir()) == [], "nothing of a damaged archive is kept"


class FakeHub:
    """The hub's seats API as restore calls it (the real one: tests/integration/test_pressure.py)."""

    def __init__(self, refuse_move: bool = False):
        self.calls, self.refuse_move = [], refuse_move

    def tell_hub(self, body: dict) -> dict:
        from hubfleet.errors import HubfleetError

        self.calls.append(next(iter(body)))
        if "place" in body:
            return {"homes": {"alice": "algebra-hub"}}
        if "move" in body and self.refuse_move:
            raise HubfleetError("the hub refused (409): alice's server is in use")
        return {}


@pytest.fixture
def live_course(store, monkeypatch):
    """A ready course whose hub and playbook are stand-ins that record the order of the calls."""
    from hubfleet import restores

    store.upsert("algebra", provider="docker", descriptor={"name": "algebra"})
    store.update("algebra", status="ready")
    hub, runs = FakeHub(), []

    class Live:
        def __init__(self, *args):
            self.hosts, self.provider, self.tell_hub = [], None, lambda body: hub.tell_hub(body)
            self.course = type("Course", (), {"image": "hubfleet/notebook:latest"})()

    monkeypatch.setattr("hubfleet.elastic.LiveCourse", Live)
    monkeypatch.setattr("hubfleet.lifecycle.course_inventory", lambda *args: store.dir / "inventory")

    def run_playbook(name, **kwargs):
        runs.append((name, kwargs["variables"]))
        hub.calls.append("playbook")
        assert Path(kwargs["variables"]["restore_archive"]).is_file()
        if getattr(run_playbook, "fails", False):
            from hubfleet.errors import ProvisionError
            raise ProvisionError("tar --compare found a difference")
        from hubfleet.ansible import RunResult
        # The playbook's set_stats when restore_only_new finds the student's volume there.
        kept = kwargs["variables"].get("restore_only_new") and getattr(run_playbook, "volume_there", False)
        return RunResult(facts={kwargs["variables"]["restore_host"]: {"restore_kept": True}} if kept else {})

    monkeypatch.setattr(restores.ansible, "run_playbook", run_playbook)
    return hub, runs, run_playbook


def test_restore_places_holds_unpacks_then_releases_in_that_order(store, live_course):
    from hubfleet.restores import restore_student

    hub, runs, _ = live_course
    archive = student_archive(store, "algebra", {"notes.txt": b"mine"})
    done = restore_student(store, archive, "alice", "algebra")
    assert hub.calls == ["place", "move", "playbook", "moved"]
    assert runs[0][0] == "restore_student.yml" and runs[0][1]["restore_host"] == "algebra-hub"
    assert runs[0][1]["restore_folder"] == "restored-algebra-20270110T120000Z" == done.folder
    assert runs[0][1]["restore_volume"] == "hubfleet-user-alice"
    assert (runs[0][1]["restore_image"], runs[0][1]["restore_mount"]) == ("hubfleet/notebook:latest", "/home/jovyan")
    assert not (store.instance_dir("algebra") / "restore-work").exists(), "no student's file stays here"
    assert any("the files of 1 student restored" in m and "alice" not in m for _, _, _, m in store.events("algebra"))


def test_only_new_leaves_a_student_whose_volume_is_there_untouched_and_releases_the_hold(store, live_course):
    from hubfleet.restores import restore_student

    hub, runs, run_playbook = live_course
    archive = student_archive(store, "algebra", {"notes.txt": b"mine"})
    run_playbook.volume_there = True
    assert restore_student(store, archive, "alice", "algebra", only_new=True) is None
    assert hub.calls == ["place", "move", "playbook", "unmove"] and runs[0][1]["restore_only_new"] is True
    assert not any("restored" in m for _, _, _, m in store.events("algebra")), "nothing was restored"
    run_playbook.volume_there = False
    hub.calls.clear()
    assert restore_student(store, archive, "alice", "algebra", only_new=True).folder.startswith("restored-")
    assert hub.calls == ["place", "move", "playbook", "moved"]


def test_a_failed_unpack_releases_the_hold_and_a_running_server_is_refused(store, live_course):
    from hubfleet.errors import HubfleetError, ProvisionError
    from hubfleet.restores import restore_student

    hub, _, run_playbook = live_course
    archive = student_archive(store, "algebra", {"notes.txt": b"mine"})
    run_playbook.fails = True
    with pytest.raises(ProvisionError):
        restore_student(store, archive, "alice", "algebra")
    assert hub.calls == ["place", "move", "playbook", "unmove"]
    run_playbook.fails = False
    hub.calls.clear()
    hub.refuse_move = True
    with pytest.raises(HubfleetError, match="cannot be restored now"):
        restore_student(store, archive, "alice", "algebra")
    assert hub.calls == ["place", "move"], "nothing unpacked while her server runs"


def test_restore_into_a_course_that_is_not_live_is_refused(store, run):
    archive = student_archive(store, "algebra", {"notes.txt": b"mine"})
    store.upsert("algebra", provider="docker", descriptor={"name": "algebra"})
    store.update("algebra", status="archived")
    result = run("restore", archive.name, "alice", "--into", "algebra")
    assert result.exit_code != 0 and "is archived: files are restored into a live course" in result.stderr


def test_students_lists_whose_files_an_archive_holds(store, run):
    student_archive(store, "algebra", {"notes.txt": b"mine"})
    listed = json.loads(run("students", "algebra-20270110T120000Z", "--json").stdout)
    assert [(s["user"], s["entries"]) for s in listed] == [("alice", 1)]
