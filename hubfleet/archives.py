"""The courses' archives after destroy: what is kept (course, date, size, students, checksum) and for how long.

`destroy` writes one teacher's archive per course (archives/<course>-<stamp>.tar, hubfleet.archive)
and, beside it, the operator's file (restore/<course>-<stamp>.hub.tar). This module reads them back
from the state directory; the checksum is the one destroy recorded after verifying the archive,
never recomputed unless asked. The site file's `archives.keep_days` (absent: kept for ever) says
when `prune` may remove an archive and its operator's file: only past that age, counted from the
date inside the archive, and never an archive it cannot read the date of.
"""

from __future__ import annotations

import datetime as dt
import tarfile
from dataclasses import dataclass
from pathlib import Path

from hubfleet.archive import FORMAT, read_index, sha256_file
from hubfleet.state import StateStore

OLDER_FORMATS = ("hubfleet-course-archive/1",)


@dataclass(frozen=True)
class ArchiveEntry:
    path: Path
    course: str | None  # None: not a course archive hubfleet can read (listed, never pruned)
    made_at: dt.datetime | None
    bytes: int
    students: int | None
    sha256: str | None  # recorded by destroy, or computed on request
    recorded: bool  # a course in the state store names this archive as its own
    restore: Path | None  # the operator's file made with it, when it is there
    problem: str = ""

    def age_days(self, now: dt.datetime) -> float | None:
        return None if self.made_at is None else (now - self.made_at).total_seconds() / 86400

    def to_dict(self) -> dict:
        return {"path": str(self.path), "course": self.course,
                "made_at": self.made_at.isoformat(timespec="seconds") if self.made_at else None,
                "bytes": self.bytes, "students": self.students, "sha256": self.sha256, "recorded": self.recorded,
                "restore": str(self.restore) if self.restore else None, "problem": self.problem or None}


def _recorded(store: StateStore) -> dict[Path, dict]:
    """{archive path: what destroy (or a live course's last backup) recorded} for every course of the store."""
    found = {}
    for instance in store.all():
        for archive in (instance.outputs.get(k) for k in ("archive", "backup", "backup_previous")):
            if isinstance(archive, dict) and archive.get("path"):
                found[Path(archive["path"]).resolve()] = archive
    return found


def read(path: Path, store: StateStore, *, checksums: bool = False,
         recorded: dict[Path, dict] | None = None) -> ArchiveEntry:
    recorded = _recorded(store) if recorded is None else recorded
    record = recorded.get(path.resolve())
    restore = store.dir / "restore" / f"{path.name.removesuffix('.tar')}.hub.tar"  # looked at, never made here
    size = path.stat().st_size
    sha256 = sha256_file(path) if checksums else (record or {}).get("sha256")
    try:
        _, index = read_index(path, (FORMAT, *OLDER_FORMATS))
        made_at = dt.datetime.fromisoformat(index["made_at"])
        if made_at.tzinfo is None:
            raise ValueError("its date has no time zone")
        return ArchiveEntry(path, str(index["course"]), made_at, size, len(index.get("students", [])), sha256,
                            record is not None, restore if restore.exists() else None)
    except (tarfile.TarError, OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        return ArchiveEntry(path, None, None, size, None, sha256, record is not None,
                            restore if restore.exists() else None, problem=f"not readable as a course archive: {exc}")


def list_archives(store: StateStore, *, course: str | None = None, checksums: bool = False) -> list[ArchiveEntry]:
    """Every archive in the state directory, oldest first; `course` keeps that course's only."""
    recorded = _recorded(store)
    entries = [read(path, store, checksums=checksums, recorded=recorded)
               for path in sorted(store.archive_dir().glob("*.tar")) if path.is_file()]
    if course is not None:
        entries = [e for e in entries if e.course == course]
    far_past = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return sorted(entries, key=lambda e: (e.made_at or far_past, e.path.name))


def missing(store: StateStore) -> list[dict]:
    """Archives the state store records that are no longer in the archive folder."""
    return [record for path, record in sorted(_recorded(store).items()) if not path.exists()]


def expired(entries: list[ArchiveEntry], keep_days: int, now: dt.datetime) -> list[ArchiveEntry]:
    """The archives older than keep_days at `now`; an archive without a readable date never is."""
    if keep_days < 1:
        raise ValueError("keep_days must be at least 1")
    return [e for e in entries if e.made_at is not None and e.age_days(now) > keep_days]


def remove(store: StateStore, entry: ArchiveEntry, keep_days: int) -> None:
    """Remove an expired archive and its operator's file, and say so in the course's events."""
    for path in (entry.restore, entry.path):
        if path is not None:
            path.unlink(missing_ok=True)
    if entry.course in {instance.name for instance in store.all()}:
        store.add_event(entry.course, "info",
                        f"archive {entry.path.name} removed: older than {keep_days} day(s) (archives.keep_days)")
