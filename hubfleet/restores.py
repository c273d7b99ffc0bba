"""One student's archived files back into a live course, beside what they have there now.

The archive (`destroy`'s, hubfleet.archive) holds each student's volume as students/<name>.tar.gz
with its sha256 in index.json. A restore, in this order:

1. the student's archive is read out of the course archive into the course's private work folder,
   its sha256 checked against the index (a damaged archive is refused before anything changes);
2. the hub gives the student a home host if they have none yet (`place`, as `warm` does) and holds
   their starts while the files go in (`move` to that same host): it refuses while their server
   runs or they wait in line, so no server ever sees a half-restored folder;
3. playbooks/restore_student.yml unpacks it into a new folder of their volume there,
   restored-<archive name>, and compares it with the archive (a volume they never had is first made
   as their first start makes it: the course image's home copied in); a folder of that name already
   there is never written into, and a failed unpack removes only the folder it made;
4. the hub is told the files are in (`moved`: their home is unchanged), or on failure `unmove`.

The student's own files are never touched; the work folder's copy is removed whatever happens.
The course's log counts the restore and names no student.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from hubfleet import ansible
from hubfleet.archive import FORMAT, read_index
from hubfleet.archives import OLDER_FORMATS
from hubfleet.errors import ArchiveError, FieldProblem, HubfleetError, InvalidInput
from hubfleet.state import StateStore
from hubfleet.usernames import spawner_escape


NOTEBOOK_DIR = "/home/jovyan"  # where every server mounts the student's volume (roles/hub: hub_notebook_dir)


@dataclass(frozen=True)
class Restored:
    course: str
    user: str
    host: str
    folder: str
    archive: Path

    def to_dict(self) -> dict:
        return {"course": self.course, "user": self.user, "host": self.host, "folder": self.folder,
                "archive": str(self.archive)}


def students_in(archive: Path) -> tuple[str, list[dict]]:
    """(the archive's top folder, its students as index.json lists them)."""
    try:
        top, index = read_index(archive, (FORMAT, *OLDER_FORMATS))
    except (tarfile.TarError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{archive} is not readable as a course archive: {exc}") from None
    return top, list(index.get("students") or [])


def read_student(archive: Path, user: str, dest: Path) -> tuple[str, Path]:
    """Copy `user`'s archive out of the course archive into `dest` (a private folder), checking its sha256.

    Returns (the archive's top folder, the copy)."""
    top, students = students_in(archive)
    entry = next((s for s in students if s.get("user") == user), None)
    if entry is None:
        known = sorted(str(s.get("user")) for s in students)
        shown = ", ".join(known[:10]) + (f" and {len(known) - 10} more" if len(known) > 10 else "")
        raise InvalidInput([FieldProblem("USER", f"{user!r} has no files in {archive.name} — its students: "
                                                 f"{shown or 'none'}")], source="command line")
    copy = dest / "student.tar.gz"
    digest = hashlib.sha256()
    with tarfile.open(archive, "r:") as tar:
        try:
            source = tar.extractfile(f"{top}/{entry['file']}")
        except KeyError:
            source = None
        if source is None:
            raise ArchiveError(f"{archive.name} lacks {entry['file']}, which its index lists")
        with open(copy, "wb") as out:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    if digest.hexdigest() != entry.get("sha256"):
        copy.unlink()
        raise ArchiveError(f"{entry['file']} in {archive.name} does not match its sha256: the archive is damaged; "
                           "nothing was restored")
    return top, copy


def restore_student(store: StateStore, archive: Path, user: str, course: str, *, progress=None,
                    verbosity: int = 0, only_new: bool = False) -> Restored | None:
    """Restore `user`'s files from `archive` into the live `course` (see the module's docstring).

    With only_new (after hosts vanished, hubfleet/backups.py), a student whose volume is there keeps it
    untouched: None, nothing restored."""
    from hubfleet.elastic import LiveCourse
    from hubfleet.lifecycle import VOLUME_PREFIX, course_inventory

    progress = progress or (lambda kind, message: None)
    status = store.get(course).status
    if status not in ("ready", "degraded"):
        raise HubfleetError(f"course {course!r} is {status}: files are restored into a live course",
                            hint="`hubfleet list` shows which courses are ready")
    live = LiveCourse(store, course, progress)
    work = store.instance_dir(course) / "restore-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700)
    try:
        top, copy = read_student(archive, user, work)
        folder = f"restored-{top}"
        with store.lock(course, "archives restore"):
            homes = live.tell_hub({"place": [user]}).get("homes") or {}
            host = homes.get(user)
            if not host:
                raise HubfleetError(f"the hub of {course} has no host to give {user}",
                                    hint="`hubfleet status` shows the course's hosts")
            try:
                live.tell_hub({"move": {"user": user, "to": host}})
            except HubfleetError as exc:
                raise HubfleetError(f"{user}'s files cannot be restored now: {exc.message}",
                                    hint="ask them to stop their server (File > Hub Control Panel > Stop) and "
                                         "run the same command again") from None
            try:
                progress("step", f"restoring one student's files into {folder} on {host} (unpacked, then compared)")
                ran = ansible.run_playbook(
                    "restore_student.yml", workdir=store.instance_dir(course),
                    inventory=course_inventory(store, course, live.hosts, live.provider), progress=progress,
                    verbosity=verbosity,
                    variables={"restore_host": host, "restore_volume": VOLUME_PREFIX + spawner_escape(user),
                               "restore_folder": folder, "restore_archive": str(copy),
                               "restore_image": live.course.image, "restore_mount": NOTEBOOK_DIR,
                               "restore_only_new": only_new})
            except BaseException:
                _release(live, user)
                raise
            if (ran.facts.get(host) or {}).get("restore_kept"):
                _release(live, user)
                return None
            live.tell_hub({"moved": {"user": user, "to": host}})
        store.add_event(course, "ok", f"the files of 1 student restored from {archive.name} into {folder} (compared)")
        return Restored(course, user, host, folder, archive)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # students' files never stay on the controller


def _release(live, user: str) -> None:
    try:
        live.tell_hub({"unmove": {"user": user}})
    except HubfleetError:
        pass  # the hub forgot the hold already (restarted)
