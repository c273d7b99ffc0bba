"""The shared folder: the descriptor's field, the source packed for the hosts (the same bytes from the same
files, refused when it would land outside the folder), and which servers may write it."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import zipfile
from types import SimpleNamespace

import pytest

from hubfleet import shared_data
from hubfleet.changes import compare
from hubfleet.errors import InvalidInput
from hubfleet.flavors import load_catalogue
from hubfleet.sizing import plan_course
from tests.support.descriptors import stats_course
from tests.support.modules import ROOT



course = stats_course


def members(packed: shared_data.Packed) -> dict[str, tuple]:
    with tarfile.open(packed.archive) as archive:
        return {m.name: (m.type, m.mode, m.uid, m.gid, archive.extractfile(m).read() if m.isfile() else m.linkname)
                for m in archive}


@pytest.fixture
def source(tmp_path):
    root = tmp_path / "data"
    (root / "week 1" / "ünïcode ✓").mkdir(parents=True)
    (root / "week 1" / "data.csv").write_text("x,y\n1,2\n")
    (root / "week 1" / "ünïcode ✓" / "notes.md").write_text("# notes\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o700)
    os.symlink("week 1/data.csv", root / "latest.csv")
    return root


def test_the_field_takes_a_path_or_a_mapping_and_a_bad_one_names_itself():
    assert course().shared_data is None
    assert str(course(shared_data="/srv/course").shared_data.source) == "/srv/course"
    assert course(shared_data={}).shared_data.source is None, "a folder that starts empty"
    for bad, path in (("", "shared_data.source"), ({"source": "a\nb"}, "shared_data.source"),
                      (5, "shared_data"), ({"path": "/x"}, "shared_data.path")):
        with pytest.raises(InvalidInput) as caught:
            course(shared_data=bad)
        assert [p.path for p in caught.value.problems] == [path], caught.value.problems


def test_a_folder_is_packed_the_same_each_time_owned_by_the_notebook_user_with_its_links(source, tmp_path):
    packed = shared_data.pack(course(shared_data=str(source)), tmp_path / "cache")
    found = members(packed)
    assert found["week 1/data.csv"] == (tarfile.REGTYPE, 0o644, 1000, 100, b"x,y\n1,2\n")
    assert found["week 1/ünïcode ✓/notes.md"][-1] == b"# notes\n"
    assert found["run.sh"][:2] == (tarfile.REGTYPE, 0o755), "an executable stays executable for everyone"
    assert found["latest.csv"][0] == tarfile.SYMTYPE and found["latest.csv"][-1] == "week 1/data.csv"
    assert found["week 1"][:2] == (tarfile.DIRTYPE, 0o755)
    assert packed.files == len(found) and packed.size == len(b"x,y\n1,2\n") + len(b"# notes\n") + len(b"#!/bin/sh\n")
    again = shared_data.pack(course(shared_data=str(source)), tmp_path / "cache")
    assert again.digest == packed.digest, "the same files, the same digest: a re-run changes nothing"
    (source / "week 1" / "data.csv").write_text("x,y\n1,3\n")
    assert shared_data.pack(course(shared_data=str(source)), tmp_path / "cache").digest != packed.digest


def test_tar_and_zip_archives_are_repacked_alike(source, tmp_path):
    tgz = tmp_path / "course.tgz"
    with tarfile.open(tgz, "w:gz") as archive:
        archive.add(source / "week 1", arcname="./week 1")
    zipped = tmp_path / "course.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("week 1/", "")
        archive.writestr("week 1/data.csv", "x,y\n1,2\n")
    from_tar = members(shared_data.pack(course(shared_data=str(tgz)), tmp_path / "c1"))
    from_zip = members(shared_data.pack(course(shared_data=str(zipped)), tmp_path / "c2"))
    assert from_tar["week 1/data.csv"] == from_zip["week 1/data.csv"] == (tarfile.REGTYPE, 0o644, 1000, 100,
                                                                          b"x,y\n1,2\n")


def evil_tar(tmp_path, name: str, **kind) -> str:
    path = tmp_path / f"evil-{len(list(tmp_path.iterdir()))}.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo(name)
        for key, value in kind.items():
            setattr(info, key, value)
        archive.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return str(path)


@pytest.mark.parametrize(("make", "words"), [
    (lambda t: evil_tar(t, "../../etc/cron.d/x", size=1), "outside the shared folder"),
    (lambda t: evil_tar(t, "/etc/passwd", size=1), "outside the shared folder"),
    (lambda t: evil_tar(t, "link", type=tarfile.SYMTYPE, linkname="/etc/shadow"), "points out of"),
    (lambda t: evil_tar(t, "a/link", type=tarfile.SYMTYPE, linkname="../../x"), "points out of"),
    (lambda t: evil_tar(t, "dev", type=tarfile.CHRTYPE), "device"),
    (lambda t: str(t / "missing"), "does not exist"),
    (lambda t: (t / "notes.txt").write_text("x") and str(t / "notes.txt"), "neither a directory nor an archive"),
    (lambda t: (t / "broken.tgz").write_bytes(b"not gzip") and str(t / "broken.tgz"), "not a readable tar"),
])
def test_a_source_that_would_escape_the_folder_or_cannot_be_read_is_refused_naming_the_field(tmp_path, make, words):
    cache = tmp_path / "cache"
    bad = make(tmp_path)
    with pytest.raises(InvalidInput) as caught:
        shared_data.pack(course(shared_data=bad), cache)
    (problem,) = caught.value.problems
    assert problem.path == "shared_data.source" and words in problem.message, problem.message
    assert not list(cache.glob("*.tar.gz")), "nothing is left half-made"


def test_the_hub_mounts_the_folder_only_for_a_course_that_has_one():
    assert shared_data.role_variables(course(), None)["hub_shared_data_dir"] == ""
    values = shared_data.role_variables(course(shared_data={}), None)
    assert values["hub_shared_data_dir"] == "/srv/hubfleet/shared/data" and values["shared_data_enabled"]
    assert values["shared_data_archive"] == ""


def test_plan_diff_says_a_new_source_keeps_the_teachers_files():
    old, new = course(shared_data="/srv/a"), course(shared_data="/srv/b")
    plan = plan_course(old, load_catalogue("docker"))
    (change,) = compare(old, new, plan, plan)
    assert change.path == "shared_data.source" and "teachers' other files kept" in change.effect


def test_students_read_the_folder_and_teachers_write_it_on_the_hubs_node(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "roles/hub/files"))
    import hubfleet_spawner

    nodes = {"c-hub": {"ManagerStatus": {}}, "c-worker-1": {}}

    async def ready(self):
        return nodes

    async def least_loaded(self):
        return "c-worker-1"

    monkeypatch.setattr(hubfleet_spawner.PinnedSwarmSpawner, "_ready_nodes", ready)
    monkeypatch.setattr(hubfleet_spawner.PinnedSwarmSpawner, "choose_node", least_loaded)
    monkeypatch.setattr(hubfleet_spawner.SwarmSpawner, "create_object", lambda self: asyncio.sleep(0))

    def mounted(name: str, *, admin=False, groups=(), node="") -> tuple[str, bool | None]:
        user = SimpleNamespace(name=name, admin=admin, groups=[SimpleNamespace(name=g) for g in groups],
                               settings={"users": {}}, url=f"/user/{name}/")
        spawner = hubfleet_spawner.PinnedSwarmSpawner(user=user, config=None, shared_data_dir="/srv/hubfleet/shared/data",
                                                      volumes={"hubfleet-user-{username}": "/home/jovyan"})
        spawner.node = node
        asyncio.run(spawner.create_object())
        shared = [m for m in spawner.mounts if m["Target"] == "/home/jovyan/shared"]
        return spawner.node, (not shared[0]["ReadOnly"]) if shared else None

    assert mounted("kim") == ("c-worker-1", False), "a student reads it, wherever she is placed"
    assert mounted("ada", groups=["teachers"]) == ("c-hub", True), "a teacher is placed where it is kept, and writes"
    assert mounted("admin", admin=True) == ("c-hub", True)
    assert mounted("bo", groups=["teachers"], node="c-worker-1") == ("c-worker-1", False), \
        "a teacher whose files are on another host reads a copy there"
    without = hubfleet_spawner.PinnedSwarmSpawner(
        user=SimpleNamespace(name="x", admin=False, groups=[], settings={}, url="/user/x/"), config=None)
    assert all(m["Target"] != "/home/jovyan/shared" for m in without.mounts), "no folder, no mount"
