"""A live course's backup and the students' files after its hosts vanished (hubfleet/backups.py).

The hub, the provider and Ansible are stand-ins here that record what was asked of them; the real
path (a backup of a live course, its host removed with its disks, made again with Bob's essay back) is
tests/integration/test_workshop_e2e.py.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hubfleet import backups
from hubfleet.archive import ArchiveSummary
from hubfleet.errors import ArchiveError, HubfleetError
from hubfleet.state import StateStore
from tests.unit.test_archives import student_archive

NOW = dt.datetime(2027, 3, 1, 3, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def store(tmp_path) -> StateStore:
    made = StateStore(tmp_path / "state")
    made.upsert("algebra", provider="docker", descriptor={"name": "algebra"})
    made.update("algebra", status="ready", outputs={"url": "https://algebra.example"})
    return made


@pytest.fixture
def hub(store, monkeypatch):
    """Who is on the hub, what archiving and starting the hub again were asked to do."""
    seen = {"on": [], "calls": [], "fail": None}

    def archive_work(store_, instance, provider, record, verbosity, out, restore):
        seen["calls"].append("archive")
        out.write_bytes(b"archive")
        restore.write_bytes(b"hub data")
        if seen["fail"]:
            raise ArchiveError(seen["fail"])
        return ArchiveSummary(out, 7, 2, 7, "ab" * 32, restore)

    monkeypatch.setattr(backups, "users_on", lambda store_, name: list(seen["on"]))
    monkeypatch.setattr(backups, "provider_for", lambda *args: None)
    monkeypatch.setattr(backups, "archive_work", archive_work)
    monkeypatch.setattr(backups, "_start_hub", lambda *args: seen["calls"].append("hub started"))
    return seen


def test_nobody_on_the_hub_the_backup_is_made_recorded_and_the_hub_started_again(store, hub):
    made = backups.backup_course(store, "algebra", at=NOW)
    assert hub["calls"] == ["archive", "hub started"]
    recorded = store.get("algebra").outputs["backup"]
    assert recorded["at"] == "2027-03-01T03:00:00+00:00" and recorded["volumes"] == 2
    assert Path(recorded["path"]) == made.summary.path and made.summary.path.parent == store.archive_dir()
    assert backups.newest_backup(store, "algebra") == made.summary.path
    assert any("backup verified: 2 student(s)" in m for _, _, _, m in store.events("algebra"))


def test_the_last_two_backups_are_kept_and_the_one_before_removed(store, hub, monkeypatch):
    stamps = iter(["20270301T030000Z", "20270302T030000Z", "20270303T030000Z"])
    monkeypatch.setattr(backups, "_stamp", lambda: next(stamps))
    made = [backups.backup_course(store, "algebra", at=NOW + dt.timedelta(days=d)).summary for d in range(3)]
    assert not made[0].path.exists() and not made[0].restore.exists(), "the oldest goes, with its hub data"
    assert made[1].path.exists() and made[2].path.exists()
    outputs = store.get("algebra").outputs
    assert outputs["backup"]["path"] == str(made[2].path) and outputs["backup_previous"]["path"] == str(made[1].path)
    assert any("the backup before the last two removed" in m for *_, m in store.events("algebra"))


def test_a_student_on_the_hub_holds_the_backup_back_and_nothing_is_done(store, hub):
    hub["on"] = ["alice"]
    with pytest.raises(backups.NotQuiet, match="1 student server"):
        backups.backup_course(store, "algebra", at=NOW)
    assert hub["calls"] == [] and "backup" not in store.get("algebra").outputs


def test_a_failed_backup_leaves_no_half_archive_and_the_hub_running(store, hub):
    hub["fail"] = "tar --compare found a difference on algebra-hub"
    with pytest.raises(ArchiveError):
        backups.backup_course(store, "algebra", at=NOW)
    assert hub["calls"] == ["archive", "hub started"], "the hub is started again whatever happened"
    assert list(store.archive_dir().glob("*.tar")) == [] and "backup" not in store.get("algebra").outputs


def test_only_a_live_course_is_backed_up(store, hub):
    store.update("algebra", status="configuring")
    with pytest.raises(HubfleetError, match="is configuring: only a live course"):
        backups.backup_course(store, "algebra", at=NOW)
    assert hub["calls"] == []


def test_after_hosts_vanished_each_student_of_the_last_backup_is_restored_only_into_a_new_volume(store, monkeypatch):
    asked = []

    def restore_student(store_, archive, user, course, *, progress=None, verbosity=0, only_new=False):
        asked.append((archive.name, user, only_new))
        return None if user == "kept" else object()

    monkeypatch.setattr(backups, "restore_student", restore_student)
    assert backups.restore_vanished(store, "algebra") == [], "no backup of this session: nothing to restore"
    archive = student_archive(store, "algebra", {"essay.md": b"# week 1"})
    store.update("algebra", outputs={**store.get("algebra").outputs,
                                     "backup": {"path": str(archive), "at": NOW.isoformat()}})
    assert len(backups.restore_vanished(store, "algebra")) == 1
    assert asked == [(archive.name, "alice", True)]
    archive.unlink()
    assert backups.newest_backup(store, "algebra") is None, "a backup pruned away is not used"


def test_a_damaged_newest_backup_gives_way_to_the_one_before_and_one_failing_student_stops_no_other(
        store, monkeypatch):
    from hubfleet.errors import ProvisionError

    asked = []

    def restore_student(store_, archive, user, course, *, progress=None, verbosity=0, only_new=False):
        asked.append((archive.name, user))
        if user == "alice" and len(asked) == 1:
            raise ProvisionError("tar --compare found a difference")
        return object()

    monkeypatch.setattr(backups, "restore_student", restore_student)
    previous = student_archive(store, "algebra", {"essay.md": b"# week 1"})
    newest = store.archive_dir() / "algebra-20270302T030000Z.tar"
    newest.write_bytes(b"not a tar at all")
    store.update("algebra", outputs={**store.get("algebra").outputs, "backup": {"path": str(newest)},
                                     "backup_previous": {"path": str(previous)}})
    with pytest.raises(HubfleetError, match=r"1 student\(s\)' files could not be restored") as caught:
        backups.restore_vanished(store, "algebra")
    assert "archives restore" in caught.value.hint
    assert asked == [(previous.name, "alice")], "the damaged newest was passed over for the one before"
    events = " ".join(m for *_, m in store.events("algebra"))
    assert "cannot be read" in events and "alice" not in events, "no student named in the course's log"


def test_destroy_forgets_the_sessions_backup_so_the_next_session_never_restores_it(store):
    from hubfleet import lifecycle

    class Provider:
        def destroy_hosts(self):
            pass

        def leftovers(self):
            return []

    store.update("algebra", outputs={**store.get("algebra").outputs, "backup": {"path": "/x.tar", "at": "t"},
                                     "backup_previous": {"path": "/w.tar", "at": "s"}, "announcement": "bye"})
    assert "backup" in lifecycle.KEPT_OUTPUTS, "a create (a repair) keeps it"
    lifecycle._remove_step(store, "algebra", Provider(), lambda kind, message: None, None)
    archived = store.get("algebra")
    assert archived.status == "archived" and not {"backup", "backup_previous"} & set(archived.outputs)
    assert backups.newest_backup(store, "algebra") is None
