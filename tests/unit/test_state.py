from __future__ import annotations

import multiprocessing
import os
import stat

import pytest

from hubfleet.errors import Busy, NotFound
from hubfleet.state import StateStore


@pytest.fixture
def store(tmp_path):
    return StateStore(tmp_path / "state")


def test_instance_round_trip(store):
    store.upsert("c1", provider="docker", descriptor={"name": "c1"})
    store.update("c1", status="ready", outputs={"url": "http://x"}, hosts=[{"name": "h"}])
    got = store.get("c1")
    assert (got.status, got.outputs["url"], got.hosts[0]["name"]) == ("ready", "http://x", "h")
    assert [i.name for i in store.all()] == ["c1"]


def test_unknown_course_lists_known_ones(store):
    store.upsert("alpha", provider="docker", descriptor={})
    with pytest.raises(NotFound) as info:
        store.get("beta")
    assert "alpha" in str(info.value)


def test_secrets_are_private_files_and_stable(store):
    first = store.ensure_secret("c1", "admin-password")
    assert store.ensure_secret("c1", "admin-password") == first
    path = store.secret_path("c1", "admin-password")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert first not in (store.dir / "state.db").read_bytes().decode("latin-1")


def test_secret_from_env_and_file(store, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SECRET", "from-env")
    assert store.ensure_secret("c1", "k", "env:MY_SECRET") == "from-env"
    f = tmp_path / "s.txt"
    f.write_text("from-file\n")
    assert store.ensure_secret("c1", "k2", f"file:{f}") == "from-file"


def _hold_lock(state_dir, ready, release):
    store = StateStore(state_dir)
    with store.lock("c1", "create"):
        ready.set()
        release.wait(10)


def test_lock_refuses_second_holder_with_clear_message(store):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(store.dir, ready, release))
    proc.start()
    try:
        assert ready.wait(10)
        with pytest.raises(Busy) as info:
            with store.lock("c1", "destroy"):
                pass
        assert "`create` has been running" in str(info.value) and str(proc.pid) in str(info.value)
    finally:
        release.set()
        proc.join(10)
    with store.lock("c1", "destroy"):  # released once the holder is gone
        pass


def test_atomic_write_leaves_no_partial_file(store, monkeypatch):
    store.set_secret("c1", "k", "old")

    def boom(*a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.set_secret("c1", "k", "new")
    assert store.get_secret("c1", "k") == "old"
    assert [p.name for p in store.secret_path("c1", "k").parent.iterdir()] == ["k"]


def test_events_in_order(store):
    store.upsert("c1", provider="docker", descriptor={})
    store.add_event("c1", "step", "one")
    store.add_event("c1", "ok", "two")
    events = store.events("c1")
    assert [e[3] for e in events] == ["one", "two"]
    assert store.events("c1", after_id=events[0][0])[0][3] == "two"
