"""The course archive: one archive per student, every host's part joined, then read back and verified.

Each host wrote a part (playbooks/files/hubfleet_archive.py): every student's work as a GNU tar.gz
that was already compared with the volume there (`tar --compare`, plus a listing both ways),
and index.json with each one's sha256. Here the parts are joined into one plain tar for the
teacher:

    <course>-<stamp>/README.txt         what this is and how to open it
    <course>-<stamp>/index.json         every student: user, volume, host, file, sha256, entries
    <course>-<stamp>/SHA256SUMS         `sha256sum -c SHA256SUMS` inside the folder checks every file
    <course>-<stamp>/students/<user>.tar.gz   one student's volume, to hand back alone
    <course>-<stamp>/teaching/course.tar.gz   a graded course's nbgrader folder: gradebook, assignments,
                                              submissions, feedback (and teaching/exchange.tar.gz)
    <course>-<stamp>/teaching/shared.tar.gz   the course's shared folder (`shared_data`), as teachers left it

It holds the students' work only. The operator's file (restore/<course>-<stamp>.hub.tar, mode
0600) holds what restoring the hub needs and no teacher may see: hub-data.tar.gz (the hub's
database and cookie secret) and secrets/<user>.tar.gz (Jupyter's secrets found in that student's
volume: the server's cookie secret and token, kernels' keys, the notebook-trust key). Everything
is fsynced before the caller may remove anything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from hubfleet.errors import ArchiveError

FORMAT = "hubfleet-course-archive/2"
INDEX = "index.json"
SUMS = "SHA256SUMS"
README = """\
Students' work of the course {course}, archived by hubfleet on {made_at}.

students/<name>.tar.gz holds one student's notebook volume, exactly as it was: every file (any
name), folder, symbolic link, hard link, permission and sparse file. Each was compared with the
volume before the course was removed. index.json says which student each file belongs to.

teaching/course.tar.gz (a course graded with nbgrader) is the teachers' course folder: gradebook.db
(every grade and comment), source/, release/, submitted/, autograded/ and feedback/; teaching/
exchange.tar.gz what went through the exchange (every submission, every feedback). teaching/
shared.tar.gz (a course with a shared folder) is that folder as the teachers left it.

Check the files:        sha256sum -c SHA256SUMS
Open one student's:     mkdir alice && tar -xzf students/alice.tar.gz -C alice
(GNU tar keeps every name byte for byte; `tar -tvzf` lists without extracting.)
"""
_READ_ERRORS = (tarfile.TarError, KeyError, OSError, EOFError, zlib.error, ValueError, UnicodeDecodeError)


@dataclass(frozen=True)
class ArchiveSummary:
    path: Path
    files: int  # entries of every kind in the students' archives
    volumes: int  # students
    bytes: int
    sha256: str
    restore: Path | None = None  # the hub's data for the operator, kept apart

    def to_dict(self) -> dict:
        return {"path": str(self.path), "files": self.files, "volumes": self.volumes, "bytes": self.bytes,
                "sha256": self.sha256, "restore": str(self.restore) if self.restore else None}

    @classmethod
    def from_dict(cls, data: dict) -> "ArchiveSummary":
        return cls(Path(data["path"]), data["files"], data["volumes"], data["bytes"], data["sha256"],
                   Path(data["restore"]) if data.get("restore") else None)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    """Flush a file, then its folder's entry for it: after this, a crash cannot lose it."""
    for target, flags in ((path, os.O_RDONLY), (path.parent, os.O_RDONLY | os.O_DIRECTORY)):
        fd = os.open(target, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _part_index(host: str, part: Path) -> dict:
    try:
        with tarfile.open(part, "r:") as tar:
            index = json.loads(tar.extractfile(tar.getmember(INDEX)).read())
    except _READ_ERRORS as exc:
        raise ArchiveError(f"{host}: its archive part cannot be read ({exc}); nothing was removed") from None
    if not isinstance(index, dict) or not isinstance(index.get("students"), list):
        raise ArchiveError(f"{host}: its archive part has no list of students; nothing was removed")
    return index


class _HashingReader:
    def __init__(self, stream):
        self.stream, self.digest = stream, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.digest.update(data)
        return data


def join_parts(course: str, parts: dict[str, Path], out: Path, *, restore_part: Path | None = None,
               restore_out: Path | None = None, hub: str | None = None) -> ArchiveSummary:
    """Join the hosts' parts ({host: part.tar}) into the teacher's archive `out`, checking every student
    archive against its host's sha256; put the hub's data (`restore_part`) and Jupyter's secrets of the
    volumes in the operator's file `restore_out`; fsync both, then read `out` back from disk."""
    if not parts:
        raise ArchiveError("no host produced an archive part; nothing was removed")
    indexes = {host: _part_index(host, part) for host, part in sorted(parts.items())}
    restore = None
    if restore_part is not None and restore_out is not None:
        if hub not in parts:
            raise ArchiveError(f"the hub host {hub} produced no archive part; nothing was removed")
        restore = _write_restore(course, parts, indexes, hub, restore_part, restore_out)
    made_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    top = out.name.removesuffix(".tar")
    students: list[dict] = []
    teaching: list[dict] = []  # a graded course's gradebook and exchange, from the hub
    _write_private_tar(out, lambda joined: _join_students(joined, top, parts, indexes, students, teaching),
                       lambda joined: [
        (f"{top}/{INDEX}", json.dumps({"format": FORMAT, "course": course, "made_at": made_at, "students": students,
                                       "teaching": teaching}, indent=2, sort_keys=True) + "\n"),
        (f"{top}/{SUMS}", "".join(f"{s['sha256']}  {s['file']}\n" for s in students + teaching)),
        (f"{top}/README.txt", README.format(course=course, made_at=made_at))])
    try:
        entries, count = verify(out)
    except ArchiveError:
        out.unlink(missing_ok=True)  # never leave an archive that failed its check where one is expected
        raise
    return ArchiveSummary(out, entries, count, out.stat().st_size, sha256_file(out), restore)


def _join_students(joined: tarfile.TarFile, top: str, parts: dict[str, Path], indexes: dict[str, dict],
                   students: list[dict], teaching: list[dict]) -> None:
    names: set[str] = set()
    for host, part in sorted(parts.items()):
        with _reading(host, part) as source:
            for entry in indexes[host]["students"]:
                name = _unique(names, "students", entry["file"], host)
                _copy_checked(source, entry["file"], joined, f"{top}/{name}", entry["sha256"], host)
                students.append({**{k: v for k, v in entry.items() if k != "secrets"}, "file": name, "host": host})
            for entry in indexes[host].get("teaching", []):  # the graded course's folders, on the hub
                _copy_checked(source, entry["file"], joined, f"{top}/{entry['file']}", entry["sha256"], host)
                teaching.append({**entry, "host": host})


def _write_restore(course: str, parts: dict[str, Path], indexes: dict[str, dict], hub: str, restore_part: Path,
                   out: Path) -> Path:
    """The operator's file: the hub's data directory, and each volume's Jupyter secrets, checked against the
    hosts' sha256s; readable by the operator only."""
    expected = indexes[hub].get("restore") or {}
    if not restore_part.is_file() or sha256_file(restore_part) != expected.get("sha256"):
        raise ArchiveError(f"{hub}: the hub's data archive is missing or differs from the host's; nothing was removed")
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(out.parent, 0o700)
    top = out.name.removesuffix(".tar")
    files = [{"file": "hub-data.tar.gz", "sha256": expected["sha256"], "what": "the hub's data directory"}]

    def content(kit: tarfile.TarFile) -> None:
        kit.add(restore_part, arcname=f"{top}/hub-data.tar.gz", recursive=False)
        names: set[str] = set()
        for host, part in sorted(parts.items()):
            with _reading(host, part) as source:
                for entry in indexes[host]["students"]:
                    secrets = entry.get("secrets")
                    if secrets:
                        name = _unique(names, "secrets", secrets["file"], host)
                        _copy_checked(source, secrets["file"], kit, f"{top}/{name}", secrets["sha256"], host)
                        files.append({"file": name, "sha256": secrets["sha256"], "user": entry.get("user"),
                                      "volume": entry["volume"], "host": host, "paths": entry.get("kept_apart", []),
                                      "what": "Jupyter's secrets in the student's volume"})

    _write_private_tar(out, content, lambda kit: [
        (f"{top}/{INDEX}", json.dumps({"format": FORMAT, "course": course, "files": files}, indent=2) + "\n"),
        (f"{top}/{SUMS}", "".join(f"{f['sha256']}  {f['file']}\n" for f in files))])
    _verify_sums(out)
    return out


def _write_private_tar(out: Path, content, texts) -> None:
    """Write a plain tar readable by its owner only, atomically, and fsync it (file and folder)."""
    tmp = out.with_name(out.name + ".part")
    try:
        with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
            content(tar)
            for name, text in texts(tar):
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, int(dt.datetime.now().timestamp())
                tar.addfile(info, io.BytesIO(data))
        os.chmod(tmp, 0o600)
        fsync_path(tmp)
        os.replace(tmp, out)
        fsync_path(out)
    finally:
        tmp.unlink(missing_ok=True)


class _reading:
    """A host's part opened for reading; any failure to read it is an ArchiveError naming the host."""

    def __init__(self, host: str, part: Path):
        self.host, self.part = host, part

    def __enter__(self) -> tarfile.TarFile:
        try:
            self.tar = tarfile.open(self.part, "r:")
        except _READ_ERRORS as exc:
            raise ArchiveError(f"{self.host}: its archive part cannot be read ({exc}); nothing was removed") from None
        return self.tar

    def __exit__(self, kind, exc, tb) -> None:
        self.tar.close()
        if exc is not None and isinstance(exc, _READ_ERRORS):
            raise ArchiveError(f"{self.host}: its archive part cannot be read ({exc}); nothing was removed") from None


def _unique(names: set[str], folder: str, file: str, host: str) -> str:
    stem = Path(file).name.removesuffix(".tar.gz")
    name = f"{folder}/{stem}.tar.gz"
    if name in names:  # the same name on two hosts: both are kept
        name = f"{folder}/{stem}@{host}.tar.gz"
    names.add(name)
    return name


def _copy_checked(source: tarfile.TarFile, member_name: str, target: tarfile.TarFile, name: str, sha256: str,
                  host: str) -> None:
    """Stream one archive from a host's part into `target`, refusing it unless its sha256 is the host's."""
    member = source.getmember(member_name)
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = member.size, 0o600, member.mtime
    reader = _HashingReader(source.extractfile(member))
    target.addfile(info, reader)  # streamed: a student's work may be large
    if reader.digest.hexdigest() != sha256:
        raise ArchiveError(f"{host}: {member_name} changed between the host and here (sha256 differs); "
                           "nothing was removed")


def _verify_sums(path: Path) -> None:
    """Read a file of archives back from disk: every file its index names is there with its sha256."""
    try:
        with tarfile.open(path, "r:") as tar:
            members = {m.name.split("/", 1)[1]: m for m in tar if "/" in m.name}
            index = json.loads(tar.extractfile(members[INDEX]).read())
            for entry in index["files"]:
                if entry["file"] not in members or sha256_file_in(tar, members[entry["file"]]) != entry["sha256"]:
                    raise ArchiveError(f"{path}: {entry['file']} is missing or does not match its sha256")
    except ArchiveError:
        raise
    except _READ_ERRORS as exc:
        raise ArchiveError(f"{path} cannot be read back ({type(exc).__name__}: {exc}); nothing was removed") from None


def verify(path: Path) -> tuple[int, int]:
    """Read the course archive back from disk: every student archive is there, matches its sha256 and
    reads to its end with as many entries as its host counted. Returns (entries, students)."""
    try:
        with tarfile.open(path, "r:") as tar:
            members = {m.name.split("/", 1)[1]: m for m in tar if "/" in m.name}
            index = json.loads(tar.extractfile(members[INDEX]).read())
            sums = tar.extractfile(members[SUMS]).read().decode()
            kept = index["students"] + index.get("teaching", [])
            listed = {s["file"] for s in kept}
            if set(line.split("  ", 1)[1] for line in sums.splitlines() if line) != listed:
                raise ArchiveError(f"{path}: SHA256SUMS and index.json name different files")
            stray = {name for name in members if name.startswith(("students/", "teaching/"))} - listed
            if stray:
                raise ArchiveError(f"{path}: {sorted(stray)[0]} is in the archive but not in its index")
            entries = 0
            for student in kept:
                member = members.get(student["file"])
                if member is None:
                    raise ArchiveError(f"{path}: {student['file']} is missing")
                if sha256_file_in(tar, member) != student["sha256"]:
                    raise ArchiveError(f"{path}: {student['file']} does not match its sha256")
                with tarfile.open(fileobj=tar.extractfile(member), mode="r|gz") as inner:
                    count = sum(1 for _ in inner)
                if count != student["entries"]:
                    raise ArchiveError(f"{path}: {student['file']} holds {count} entries, its host archived "
                                       f"{student['entries']}")
                entries += count
    except ArchiveError:
        raise
    except _READ_ERRORS as exc:
        raise ArchiveError(f"{path} cannot be read back ({type(exc).__name__}: {exc}); nothing was removed") from None
    return entries, len(index["students"])


def read_index(path: Path, formats: tuple[str, ...] = (FORMAT,)) -> tuple[str, dict]:
    """(the archive's top folder, its index.json): the headers are read, the students' data skipped.

    Raises ValueError (not a course archive in one of `formats`) or the tar's own read errors."""
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            if member.isfile() and member.name.count("/") == 1 and member.name.endswith("/" + INDEX):
                index = json.loads(tar.extractfile(member).read())
                if index.get("format") not in formats:
                    raise ValueError(f"unknown format {index.get('format')!r}")
                return member.name.split("/", 1)[0], index
    raise ValueError(f"no {INDEX} in it")


def sha256_file_in(tar: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    digest = hashlib.sha256()
    stream = tar.extractfile(member)
    for block in iter(lambda: stream.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()
