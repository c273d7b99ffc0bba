"""The archive format and its verification, on a volume made in a temp dir with every kind of entry.

The on-host script (playbooks/files/hubfleet_archive.py) runs for real with GNU tar and GNU find;
only `docker volume ls/inspect` is a stand-in that names the temp dir as the volume. Its part is
joined by hubfleet.archive as destroy does, read back, and each student's archive is extracted
with GNU tar and compared with the volume entry by entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from hubfleet.archive import ArchiveSummary, join_parts, verify
from hubfleet.errors import ArchiveError
from tests.support.modules import load_file

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "playbooks" / "files" / "hubfleet_archive.py"
PREFIX = "hubfleet-user-"
FAKE_DOCKER = """#!/usr/bin/env python3
import json, os, sys
volumes = json.loads(os.environ["FAKE_VOLUMES"])
if sys.argv[1:3] == ["volume", "ls"]:
    print("\\n".join(volumes))
elif sys.argv[1:3] == ["volume", "inspect"]:
    print(json.dumps([{"Name": sys.argv[3], "Mountpoint": volumes[sys.argv[3]]}]))
else:
    sys.exit("unexpected: " + " ".join(sys.argv[1:]))
"""


def awkward_volume(root: Path) -> dict:
    """Every kind of entry a student can make, with names no text encoding likes; returns what was made."""
    root.mkdir(parents=True)
    r = os.fsencode(root)
    made = {}

    def write(name: bytes, data: bytes, mode: int = 0o644) -> None:
        path = os.path.join(r, name)
        with open(path, "wb") as handle:
            handle.write(data)
        os.chmod(path, mode)
        made[name] = data

    write(b"latin1-caf\xe9.txt", b"a Latin-1 byte in the name")
    write(b"new\nline.txt", b"a newline in the name")
    write("line\u2028separator.py".encode(), b"print('U+2028')\n")
    write(b"quote\"back\\slash tab\t.txt", b"shell and JSON specials")
    write(b"n" * 240, b"a 240-byte name")
    write(b"private.ipynb", b'{"cells": []}', 0o600)
    write(b"run.sh", b"#!/bin/sh\necho hi\n", 0o755)
    write(b"empty.txt", b"")
    write(b"large.bin", os.urandom(3 * 2**20))
    os.makedirs(os.path.join(r, b"deep/" * 30 + b"end"))
    write(b"deep/" * 30 + b"end/leaf.txt", b"deep")
    os.makedirs(os.path.join(r, b"empty-dir/inner-empty"))
    os.mkdir(os.path.join(r, b"locked"), 0o700)
    os.link(os.path.join(r, b"run.sh"), os.path.join(r, b"hard-link-to-run.sh"))
    os.symlink(b"private.ipynb", os.path.join(r, b"link-to-notebook"))
    os.symlink(b"/nonexistent/elsewhere", os.path.join(r, b"dangling-link"))
    os.symlink(b"empty-dir", os.path.join(r, b"link-to-dir"))
    os.mkfifo(os.path.join(r, b"pipe"))
    with open(os.path.join(r, b"sparse.img"), "wb") as handle:
        handle.truncate(64 * 2**20)
        handle.seek(32 * 2**20)
        handle.write(b"middle of a hole")
    if os.geteuid() == 0:
        os.chown(os.path.join(r, b"private.ipynb"), 1000, 100)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.path.join(root, "kernel.sock"))  # sockets hold no data: skipped and reported
    sock.close()
    os.utime(os.path.join(r, b"empty.txt"), (1_000_000_000, 1_000_000_000))
    return made


def jupyter_secrets(root: Path) -> None:
    """What Jupyter itself writes into a home volume: secrets the teacher must never receive."""
    runtime = root / ".local" / "share" / "jupyter" / "runtime"
    runtime.mkdir(parents=True)
    (runtime / "jupyter_cookie_secret").write_text("SERVER-COOKIE-SECRET")
    (runtime / "jpserver-7.json").write_text('{"token": "SERVER-TOKEN"}')
    (runtime / "kernel-1.json").write_text('{"key": "KERNEL-KEY"}')
    (root / ".local" / "share" / "jupyter" / "notebook_secret").write_text("NOTEBOOK-TRUST-KEY")
    (root / ".local" / "share" / "jupyter" / "lab" / "workspaces").mkdir(parents=True)  # the student's: kept
    security = root / ".ipython" / "profile_default" / "security"
    security.mkdir(parents=True)
    (security / "kernel-old.json").write_text('{"key": "IPYTHON-KERNEL-KEY"}')
    (root / ".ipython" / "profile_default" / "startup").mkdir()

SECRETS = [b"SERVER-COOKIE-SECRET", b"SERVER-TOKEN", b"KERNEL-KEY", b"NOTEBOOK-TRUST-KEY", b"IPYTHON-KERNEL-KEY"]


def tree(root: Path) -> dict[bytes, tuple]:
    """Everything that must survive, per entry: kind, mode, owner, mtime, size, content, link target, link group."""
    r = os.fsencode(root)
    found, inodes = {}, {}
    for folder, dirs, files in os.walk(r):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, r)
            st = os.lstat(path)
            if stat.S_ISSOCK(st.st_mode):
                continue
            content = target = None
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(open(path, "rb").read()).hexdigest()
                inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(path)
            mtime = None if stat.S_ISDIR(st.st_mode) else int(st.st_mtime)
            found[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, mtime,
                          st.st_size if not stat.S_ISDIR(st.st_mode) else 0, content, target, st.st_ino)
    groups = {ino: tuple(sorted(names)) for ino, names in inodes.items()}
    return {rel: (*entry[:-1], groups.get(entry[-1])) for rel, entry in found.items()}


def run_script(tmp_path: Path, volumes: dict[str, Path], *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    out = tmp_path / "host" / "part.tar"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "FAKE_VOLUMES": json.dumps({k: str(v) for k, v in volumes.items()})}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--prefix", PREFIX, "--out", str(out), *extra],
                          capture_output=True, text=True, env=env, timeout=300)
    return proc, out


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """Two students (one awkward) and the probe on one host; the hub's data dir beside them."""
    base = tmp_path_factory.mktemp("archive")
    alice = base / "volumes" / "alice"
    made = awkward_volume(alice)
    jupyter_secrets(alice)
    bob = base / "volumes" / "bob"
    (bob / "work").mkdir(parents=True)
    (bob / "work" / "notes.md").write_text("bob's notes\n")
    probe = base / "volumes" / "probe"
    probe.mkdir()
    hub_data = base / "srv" / "jupyterhub"
    hub_data.mkdir(parents=True)
    (hub_data / "jupyterhub.sqlite").write_bytes(b"SQLite format 3\0 tokens and sessions")
    (hub_data / "jupyterhub_cookie_secret").write_text("c0ffee" * 10)
    volumes = {f"{PREFIX}alice": alice, f"{PREFIX}jane-2edoe-40example-2eedu": bob,
               f"{PREFIX}hubfleet-2d-2dprobe": probe}
    restore = base / "host" / "restore.tar.gz"
    proc, part = run_script(base, volumes, "--exclude", f"{PREFIX}hubfleet-2d-2dprobe", "--restore", str(restore),
                            "--hub-data", str(hub_data))
    assert proc.returncode == 0, proc.stderr
    state = base / "state"
    out = state / "archives" / "python-101-20270101T000000Z.tar"
    out.parent.mkdir(parents=True)
    summary = join_parts("python-101", {"python-101-hub": part}, out, restore_part=restore,
                         restore_out=state / "restore" / "python-101-20270101T000000Z.hub.tar", hub="python-101-hub")
    return {"base": base, "alice": alice, "made": made, "part": part, "summary": summary, "report": json.loads(proc.stdout)}


def members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar}


def test_one_archive_per_student_with_index_sums_and_readme(course):
    summary: ArchiveSummary = course["summary"]
    names = set(members(summary.path))
    top = "python-101-20270101T000000Z"
    assert names == {f"{top}/README.txt", f"{top}/index.json", f"{top}/SHA256SUMS",
                     f"{top}/students/alice.tar.gz", f"{top}/students/jane.doe@example.edu.tar.gz"}
    assert summary.volumes == 2 and oct(summary.path.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(summary.path) as tar:
        index = json.loads(tar.extractfile(f"{top}/index.json").read())
        sums = tar.extractfile(f"{top}/SHA256SUMS").read().decode()
    alice = next(s for s in index["students"] if s["user"] == "alice")
    assert alice["volume"] == f"{PREFIX}alice" and alice["host"] == "python-101-hub"
    assert alice["sockets_skipped"] == ["kernel.sock"] and "secrets" not in alice
    assert alice["kept_apart"] == [".ipython/profile_default/security", ".local/share/jupyter/notebook_secret",
                                   ".local/share/jupyter/runtime"]
    assert alice["kinds"]["symlink"] == 3 and alice["kinds"]["fifo"] == 1 and alice["kinds"]["directory"] >= 33
    assert f"{alice['sha256']}  students/alice.tar.gz" in sums
    assert summary.files == sum(s["entries"] for s in index["students"]) == course["report"]["entries"]


def test_every_entry_comes_back_byte_for_byte(course, tmp_path):
    """Extract alice's archive as a teacher would (GNU tar) and compare it with her volume."""
    top = "python-101-20270101T000000Z"
    with tarfile.open(course["summary"].path) as tar:
        (tmp_path / "alice.tar.gz").write_bytes(tar.extractfile(f"{top}/students/alice.tar.gz").read())
    (tmp_path / "out").mkdir()
    subprocess.run(["tar", "-xzf", str(tmp_path / "alice.tar.gz"), "-C", str(tmp_path / "out")], check=True)
    original, restored = tree(course["alice"]), tree(tmp_path / "out")
    apart = {b".local/share/jupyter/runtime", b".local/share/jupyter/notebook_secret",
             b".ipython/profile_default/security"}
    original = {k: v for k, v in original.items() if not any(k == a or k.startswith(a + b"/") for a in apart)}
    assert set(restored) == set(original)
    assert b".local/share/jupyter/lab/workspaces" in restored and b".ipython/profile_default/startup" in restored
    for name in original:
        assert restored[name] == original[name], name
    assert restored[b"hard-link-to-run.sh"][-1] == (b"hard-link-to-run.sh", b"run.sh"), "one file, two names"
    assert restored[b"link-to-notebook"][7] == b"private.ipynb" and restored[b"dangling-link"][0] == stat.S_IFLNK
    sparse = os.stat(tmp_path / "out" / "sparse.img")
    assert sparse.st_size == 64 * 2**20 and sparse.st_blocks * 512 < 2**20, "a sparse file stays sparse"
    for name, data in course["made"].items():
        assert open(os.path.join(os.fsencode(tmp_path / "out"), name), "rb").read() == data


def unpacked(path: Path, tmp_path: Path) -> bytes:
    """Every byte of an archive of archives, decompressed: what a reader of it could see."""
    seen = [path.read_bytes()]
    with tarfile.open(path) as tar:
        for member in tar:
            if member.name.endswith(".tar.gz"):
                with tarfile.open(fileobj=tar.extractfile(member), mode="r|gz") as inner:
                    seen += [inner.extractfile(m).read() for m in inner if m.isfile()]
    return b"".join(seen)


def test_the_teachers_archive_holds_no_hub_or_jupyter_secret_and_the_operators_is_private(course, tmp_path):
    summary = course["summary"]
    teacher = unpacked(summary.path, tmp_path)
    for secret in [b"c0ffee" * 10, b"tokens and sessions", *SECRETS]:
        assert secret not in teacher, secret
    assert not any("jupyterhub" in n for n in members(summary.path))
    restore = summary.restore
    assert restore.parent.name == "restore" and restore.parent != summary.path.parent
    assert restore.stat().st_mode & 0o777 == 0o600 and restore.parent.stat().st_mode & 0o777 == 0o700
    top = "python-101-20270101T000000Z.hub"
    assert set(members(restore)) == {f"{top}/hub-data.tar.gz", f"{top}/secrets/alice.tar.gz", f"{top}/index.json",
                                     f"{top}/SHA256SUMS"}
    operator = unpacked(restore, tmp_path)
    for secret in [b"c0ffee" * 10, b"tokens and sessions", *SECRETS]:
        assert secret in operator, "nothing is lost: the operator keeps it"
    with tarfile.open(restore) as tar:
        index = json.loads(tar.extractfile(f"{top}/index.json").read())
    alice = next(f for f in index["files"] if f.get("user") == "alice")
    assert alice["paths"] == [".ipython/profile_default/security", ".local/share/jupyter/notebook_secret",
                              ".local/share/jupyter/runtime"]


def test_the_probe_is_left_out_by_its_volume_name(course):
    assert not any("probe" in name for name in members(course["summary"].path))


def test_verify_reads_back_and_catches_corruption(course, tmp_path):
    path = course["summary"].path
    assert verify(path) == (course["summary"].files, 2)
    broken = tmp_path / "broken.tar"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    broken.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError):
        verify(broken)


def test_a_part_changed_on_the_way_is_refused(course, tmp_path):
    tampered = tmp_path / "part.tar"
    with tarfile.open(course["part"]) as source, tarfile.open(tampered, "w") as out:
        for member in source:
            data = source.extractfile(member).read()
            if member.name == "students/alice.tar.gz":
                data = data[:-10] + bytes(10)
            member.size = len(data)
            out.addfile(member, __import__("io").BytesIO(data))
    target = tmp_path / "course.tar"
    with pytest.raises(ArchiveError, match="sha256 differs"):
        join_parts("python-101", {"hub": tampered}, target)
    assert not target.exists() and not (tmp_path / "course.tar.part").exists()


def load_script():
    return load_file(str(SCRIPT.relative_to(ROOT)))


def test_an_entry_the_archive_lacks_is_caught_though_tar_compare_would_not(tmp_path, monkeypatch):
    """`tar --compare` passes an archive that lacks a file; the listing both ways does not."""
    script = load_script()
    volume = tmp_path / "v"
    (volume / "kept").mkdir(parents=True)
    (volume / "kept" / "a.txt").write_text("a")
    (volume / "left-out.txt").write_text("b")
    monkeypatch.setattr(script, "TAR_CREATE", [*script.TAR_CREATE, "--exclude=./left-out.txt"])
    target = str(tmp_path / "v.tar.gz")
    with pytest.raises(script.Refused, match="1 entry is missing from the archive: left-out.txt"):
        script.archive_volume("v", str(volume), target, target + ".secrets")
    assert subprocess.run(["tar", "--compare", "-zf", target, "-C", str(volume)]).returncode == 0


def test_a_volume_that_differs_from_its_archive_is_refused_naming_the_entry(tmp_path, monkeypatch):
    script = load_script()
    volume = tmp_path / "v"
    volume.mkdir()
    (volume / "notebook.ipynb").write_text("{}")
    real_run = subprocess.run

    def run(argv, **kwargs):  # a student's server still writing between tar's two passes
        if argv[:2] == ["tar", "--compare"]:
            (volume / "notebook.ipynb").write_text('{"changed": true}')
        return real_run(argv, **kwargs)

    monkeypatch.setattr(script.subprocess, "run", run)
    with pytest.raises(script.Refused, match="differs from the volume: ./notebook.ipynb"):
        script.archive_volume("v", str(volume), str(tmp_path / "v.tar.gz"), str(tmp_path / "s.tar.gz"))


def test_a_failing_host_reports_the_volume_and_writes_no_part(tmp_path, monkeypatch):
    volume = tmp_path / "v"
    volume.mkdir()
    (volume / "x").write_text("x")
    proc, part = run_script(tmp_path, {f"{PREFIX}carol": volume}, "--restore", str(tmp_path / "r.tar.gz"),
                            "--hub-data", str(tmp_path / "no-such-dir"))
    assert proc.returncode == 3 and "hub's data directory" in proc.stderr
    assert not part.exists() and not Path(str(part) + ".part").exists()


def test_no_parts_or_an_unreadable_part_is_refused(tmp_path):
    (tmp_path / "a.tar").write_bytes(b"not a tarball")
    with pytest.raises(ArchiveError, match="cannot be read"):
        join_parts("c", {"hub": tmp_path / "a.tar"}, tmp_path / "out.tar")
    with pytest.raises(ArchiveError, match="no host"):
        join_parts("c", {}, tmp_path / "out.tar")


def test_a_graded_courses_gradebook_and_exchange_go_to_the_teachers_archive(tmp_path):
    course_dir = tmp_path / "srv" / "hubfleet" / "grading" / "course"
    (course_dir / "submitted" / "ana" / "ps1").mkdir(parents=True)
    (course_dir / "gradebook.db").write_bytes(b"SQLite format 3\0 grades")
    (course_dir / "submitted" / "ana" / "ps1" / "ps1.ipynb").write_text("{}")
    exchange = tmp_path / "srv" / "hubfleet" / "exchange"
    (exchange / "stats-101" / "outbound").mkdir(parents=True)
    alice = tmp_path / "volumes" / "alice"
    alice.mkdir(parents=True)
    (alice / "ps1.ipynb").write_text("{}")
    proc, part = run_script(tmp_path, {f"{PREFIX}alice": alice}, "--teaching", f"course={course_dir}",
                            "--teaching", f"exchange={exchange}", "--teaching", f"absent={tmp_path / 'none'}")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "state" / "c-20270101T000000Z.tar"
    out.parent.mkdir(parents=True)
    summary = join_parts("c", {"c-hub": part}, out)
    top = "c-20270101T000000Z"
    with tarfile.open(summary.path) as tar:
        index = json.loads(tar.extractfile(f"{top}/index.json").read())
        sums = tar.extractfile(f"{top}/SHA256SUMS").read().decode()
        gradebook = tarfile.open(fileobj=tar.extractfile(f"{top}/teaching/course.tar.gz"), mode="r:gz")
        assert gradebook.extractfile("./gradebook.db").read() == b"SQLite format 3\0 grades"
        assert "./submitted/ana/ps1/ps1.ipynb" in gradebook.getnames()
    assert [t["name"] for t in index["teaching"]] == ["course", "exchange"], "a missing folder is no error"
    assert "teaching/course.tar.gz" in sums and "teaching/exchange.tar.gz" in sums
    assert summary.volumes == 1, "the teachers' folders are not students"
    with tarfile.open(summary.path) as tar:
        assert "gradebook" in tar.extractfile(f"{top}/README.txt").read().decode()
