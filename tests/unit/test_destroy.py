"""destroy's steps as a state machine: cut off anywhere, run again, it finishes with the archive recorded.

No hosts here: a stand-in provider keeps its hosts in memory, and a stand-in for the archiving
playbook runs the real on-host script (GNU tar and find) on volumes in a temp dir, as the
playbook would on each host. A `Crash` (a BaseException, like kill -9 it is caught by nothing)
is raised at each step in turn.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from hubfleet import lifecycle
from hubfleet.archive import verify
from hubfleet.descriptor import parse_course
from hubfleet.errors import ArchiveError, ProvisionError
from hubfleet.providers import Host
from hubfleet.state import StateStore
from tests.unit.test_archive import FAKE_DOCKER, PREFIX, SCRIPT


class Crash(BaseException):
    """The process dies here: nothing after it runs, nothing catches it."""


class FakeProvider:
    """The course's hosts in memory; `destroy_hosts` may be told to die half-way."""

    def __init__(self, names: list[str]):
        self.alive = {n: Host(n, "hub" if n.endswith("-hub") else "worker", "127.0.0.1", 22) for n in names}
        self.crash_in_destroy = False
        self.destroy_calls = 0

    def hosts(self):
        return list(self.alive.values())

    def destroy_hosts(self):
        self.destroy_calls += 1
        if self.alive:
            self.alive.pop(sorted(self.alive)[0])  # one host goes, then the process dies
        if self.crash_in_destroy:
            self.crash_in_destroy = False
            raise Crash()
        self.alive.clear()

    def leftovers(self):
        return [f"container {n}" for n in self.alive]

    def inventory_vars(self):
        return {}


@pytest.fixture
def world(tmp_path, monkeypatch, workshop_data):
    """A course `c1` of two hosts with one student's volume each, and the playbook stand-in."""
    store = StateStore(tmp_path / "state")
    names = ["c1-hub", "c1-worker-1"]
    volumes = {}
    for host in names:
        volume = tmp_path / "volumes" / host / "v"
        (volume / "work").mkdir(parents=True)
        (volume / "work" / f"{host}.txt").write_text(f"work on {host}\n")
        (volume / "empty").mkdir()
        os.symlink("work", volume / "link")
        volumes[host] = {f"{PREFIX}student-on-{host.split('-')[-1]}": str(volume)}
    hub_data = tmp_path / "srv" / "jupyterhub"
    hub_data.mkdir(parents=True)
    (hub_data / "jupyterhub.sqlite").write_bytes(b"db")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    provider = FakeProvider(names)
    calls = {"playbook": 0, "crash_playbook": False, "fail_playbook": False}

    def run_playbook(playbook, *, workdir, inventory, progress=None, verbosity=0, **_):
        assert playbook == "archive.yml"
        calls["playbook"] += 1
        if calls["crash_playbook"]:
            calls["crash_playbook"] = False
            raise Crash()
        if calls["fail_playbook"]:
            raise ProvisionError("task 'Archive each student's volume' failed on c1-hub: a volume differs")
        fetch = Path(workdir) / "archive-parts"
        for host in provider.alive:  # each host in its own folder, fetched as the playbook does
            on_host = tmp_path / "hosts" / host
            extra = ["--restore", str(on_host / "restore.tar.gz"), "--hub-data", str(hub_data)] if host.endswith("-hub") else []
            env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_VOLUMES": json.dumps(volumes[host])}
            proc = subprocess.run([sys.executable, str(SCRIPT), "--prefix", PREFIX, "--out", str(on_host / "part.tar"),
                                   *extra], env=env, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
            shutil.copyfile(on_host / "part.tar", fetch / f"{host}.tar")
            if extra:
                shutil.copyfile(on_host / "restore.tar.gz", fetch / "restore.tar.gz")

    monkeypatch.setattr(lifecycle.ansible, "run_playbook", run_playbook)
    monkeypatch.setattr(lifecycle, "provider_for", lambda *a, **k: provider)
    stopped = []
    monkeypatch.setattr(lifecycle.acme_local, "stop_local_acme", lambda state_dir: stopped.append(state_dir))

    def add(name: str, tls_local: bool = True) -> None:
        data = {**workshop_data, "name": name, "domain": f"{name}.hub.localhost"}
        if not tls_local:  # the institution's own ACME server
            data["tls"] = {"acme_server": "https://acme.example.edu/directory", "email": "ops@example.edu"}
        course = parse_course(data)
        store.upsert(name, provider="docker", descriptor=course.model_dump(mode="json"))
        store.update(name, status="ready", hosts=[h.to_dict() for h in provider.hosts()] if name == "c1" else [],
                     outputs={"url": "https://x"})

    add("c1")
    return {"store": store, "provider": provider, "calls": calls, "stopped": stopped, "add": add}


def destroy(world, **kwargs):
    return lifecycle.destroy_course(world["store"], "c1", **kwargs)


def assert_done(world, summary):
    store = world["store"]
    instance = store.get("c1")
    assert instance.status == "archived" and instance.hosts == [] and "destroy" not in instance.outputs
    assert instance.outputs["archive"] == summary.to_dict()
    assert verify(summary.path) == (summary.files, 2), "both students, read back from disk"
    with tarfile.open(summary.path) as tar:
        names = tar.getnames()
    assert sum(n.endswith(".tar.gz") for n in names) == 2
    assert summary.restore and summary.restore.is_file()
    assert world["provider"].alive == {}
    assert not (store.dir / "instances" / "c1").exists()


def test_a_destroy_that_is_not_cut_off(world):
    summary = destroy(world)
    assert_done(world, summary)
    assert world["calls"]["playbook"] == 1


def test_killed_while_archiving_then_run_again(world):
    world["calls"]["crash_playbook"] = True
    with pytest.raises(Crash):
        destroy(world)
    instance = world["store"].get("c1")
    assert instance.status == "destroying" and instance.outputs["destroy"]["step"] == "archiving"
    assert world["provider"].destroy_calls == 0, "nothing removed"
    summary = destroy(world)
    assert_done(world, summary)
    assert world["calls"]["playbook"] == 2


def test_killed_after_the_archive_was_written_but_not_recorded(world, monkeypatch):
    real_join = lifecycle.join_parts

    def join_then_die(*args, **kwargs):
        real_join(*args, **kwargs)
        raise Crash()

    monkeypatch.setattr(lifecycle, "join_parts", join_then_die)
    with pytest.raises(Crash):
        destroy(world)
    planned = Path(world["store"].get("c1").outputs["destroy"]["archive_path"])
    assert planned.is_file() and "archive" not in world["store"].get("c1").outputs
    monkeypatch.setattr(lifecycle, "join_parts", real_join)
    summary = destroy(world)
    assert summary.path == planned, "the verified archive on disk is found and recorded, not made again"
    assert world["calls"]["playbook"] == 1
    assert_done(world, summary)


def test_killed_after_the_archive_was_recorded(world, monkeypatch):
    real_set_step = lifecycle._set_step

    def die_when_removing(store, name, step, *args, **kwargs):
        if step == "removing":
            raise Crash()
        return real_set_step(store, name, step, *args, **kwargs)

    monkeypatch.setattr(lifecycle, "_set_step", die_when_removing)
    with pytest.raises(Crash):
        destroy(world)
    recorded = world["store"].get("c1").outputs["archive"]
    assert world["store"].get("c1").outputs["destroy"]["step"] == "archived"
    monkeypatch.setattr(lifecycle, "_set_step", real_set_step)
    summary = destroy(world)
    assert summary.to_dict() == recorded and world["calls"]["playbook"] == 1
    assert_done(world, summary)


@pytest.mark.parametrize("again", [[], ["no-archive"]])
def test_killed_while_removing_hosts(world, again):
    """The old bug: a destroy cut off in host removal could only be finished with --no-archive, which then
    forgot the verified archive."""
    world["provider"].crash_in_destroy = True
    with pytest.raises(Crash):
        destroy(world)
    assert len(world["provider"].alive) == 1, "half the hosts are gone"
    summary = destroy(world, archive=not again)
    assert_done(world, summary)
    assert world["calls"]["playbook"] == 1


def test_a_failed_archive_removes_nothing_and_puts_the_course_back(world):
    world["calls"]["fail_playbook"] = True
    with pytest.raises(ArchiveError, match="nothing was removed: task 'Archive each student's volume'"):
        destroy(world)
    instance = world["store"].get("c1")
    assert instance.status == "ready" and "destroy" not in instance.outputs and "a volume differs" in instance.error
    assert world["provider"].destroy_calls == 0 and len(world["provider"].alive) == 2
    assert list(world["store"].archive_dir().iterdir()) == []


def test_a_recorded_archive_that_vanished_with_its_hosts_is_refused(world):
    world["provider"].crash_in_destroy = True
    with pytest.raises(Crash):
        destroy(world)
    Path(world["store"].get("c1").outputs["archive"]["path"]).unlink()
    with pytest.raises(ArchiveError, match="missing or has changed since it was verified, and hosts are gone"):
        destroy(world)
    assert world["store"].get("c1").status == "destroying"


def test_the_embedded_acme_server_stops_with_the_last_course_that_uses_it(world):
    world["add"]("other-local")
    world["add"]("plain", tls_local=False)
    destroy(world)
    assert world["stopped"] == [], "another live course still gets its certificates from it"
    lifecycle.destroy_course(world["store"], "other-local", archive=False)
    assert world["stopped"] == [world["store"].dir], "a course without it does not keep it running"
    lifecycle.destroy_course(world["store"], "plain", archive=False)
    assert world["stopped"] == [world["store"].dir]
