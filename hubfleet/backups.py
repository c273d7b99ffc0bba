"""A live course's backup while nobody uses it, and its students' files back after its hosts vanished.

`destroy` archives a course at its end. While it is live, hosts can still be lost with their disks
(a cloud's server deleted, a Docker host removed with its volumes): `hubfleet reconcile` makes them
again, and the students' files would be gone. So reconcile also takes a backup of each live course
(the site's `term.backup_every`, a day unless set; the last two kept), in the same format and with the same checks as
destroy's archive (each student's archive compared with their volume, the whole verified), but only
while no student's server runs: archiving stops the hub for the seconds it takes, which nobody must
notice, and a volume in use could not be compared. A course that is never quiet is backed up at its
next quiet moment.

After reconcile makes vanished hosts again, each student of the session's newest backup whose volume
is on no host gets their files back (hubfleet/restores.py, into `restored-<backup>` of a new volume);
a student whose volume survived keeps it untouched.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from hubfleet import ansible
from hubfleet.archive import ArchiveSummary
from hubfleet.errors import ArchiveError, HubfleetError
from hubfleet.health import PROBE_USER
from hubfleet.lifecycle import archive_work, course_inventory, provider_for, recorder, service_client
from hubfleet.restores import Restored, restore_student, students_in
from hubfleet.state import StateStore
from hubfleet.usernames import HEALTH_LOGIN

OWN_USERS = frozenset({PROBE_USER, HEALTH_LOGIN})  # hubfleet's own logins: never "somebody on the hub"
HUB_BACK_SECONDS = 180


class NotQuiet(HubfleetError):
    """Students' servers run: the backup waits for a quiet moment (not a failure)."""


@dataclass(frozen=True)
class Backup:
    summary: ArchiveSummary
    at: str  # the moment it was taken for (reconcile's --now), ISO

    def to_dict(self) -> dict:
        return {**self.summary.to_dict(), "at": self.at}


def users_on(store: StateStore, name: str) -> list[str]:
    """The students whose servers run now (hubfleet's own logins left out)."""
    with service_client(store, name) as client:
        return [user for user in client.running_servers() if user not in OWN_USERS]


def backup_course(store: StateStore, name: str, *, at: dt.datetime, progress=None, verbosity: int = 0) -> Backup:
    """Archive every student's work of the live course while nobody is on it, verify it, start the hub again.

    Refused (NotQuiet, nothing done) while a student's server runs."""
    record = recorder(store, name, progress)
    with store.lock(name, "backup"):
        instance = store.get(name)
        if instance.status not in ("ready", "degraded"):
            raise HubfleetError(f"course {name!r} is {instance.status}: only a live course is backed up")
        on = users_on(store, name)
        if on:
            raise NotQuiet(f"{len(on)} student server(s) run: backed up when nobody is on the hub")
        provider = provider_for(store, name, instance.provider, record)
        stamp = _stamp()
        out = store.archive_dir() / f"{name}-{stamp}.tar"
        restore = store.restore_dir() / f"{name}-{stamp}.hub.tar"
        record("step", "backing up the students' work while nobody is on the hub (the hub stops for it)")
        try:
            try:
                summary = archive_work(store, instance, provider, record, verbosity, out, restore)
            except ArchiveError:
                for unfinished in (out, restore):
                    unfinished.unlink(missing_ok=True)
                raise
        finally:
            _start_hub(store, name, provider, record, verbosity)
        backup = Backup(summary, at.isoformat(timespec="seconds"))
        outputs = store.get(name).outputs
        older = outputs.get("backup_previous")
        store.update(name, outputs={**outputs, "backup": backup.to_dict(), "backup_previous": outputs.get("backup")})
        record("ok", f"backup verified: {summary.volumes} student(s), {summary.path.name}")
        if older:  # the last two are kept (the newest, and one before it should the newest be lost)
            for path in (older.get("path"), older.get("restore")):
                if path:
                    Path(path).unlink(missing_ok=True)
            record("info", f"the backup before the last two removed: {Path(older['path']).name}")
        return backup


def _stamp() -> str:
    """The backup's file name's time (as destroy's archives are named)."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _start_hub(store: StateStore, name: str, provider, record, verbosity: int) -> None:
    """The hub (and a graded course's grader) started again, then answering its API."""
    ansible.run_playbook("resume_hub.yml", workdir=store.instance_dir(name), progress=record, verbosity=verbosity,
                         inventory=course_inventory(store, name, provider.hosts(), provider))
    deadline = time.monotonic() + HUB_BACK_SECONDS
    with service_client(store, name, timeout=10) as client:
        while True:
            try:
                client.api("GET", "/")
                return
            except HubfleetError as exc:
                if time.monotonic() > deadline:
                    raise HubfleetError(f"the hub of {name} did not answer again after the backup: {exc.message}",
                                        hint=f"`hubfleet create` for {name} converges it") from None
                time.sleep(2)


def session_backups(store: StateStore, name: str) -> list[Path]:
    """The course's backups of this session still on disk, newest first (destroy forgets them)."""
    outputs = store.get(name).outputs
    found = []
    for key in ("backup", "backup_previous"):
        path = (outputs.get(key) or {}).get("path")
        if path and Path(path).is_file():
            found.append(Path(path))
    return found


def newest_backup(store: StateStore, name: str) -> Path | None:
    found = session_backups(store, name)
    return found[0] if found else None


def restore_vanished(store: StateStore, name: str, *, progress=None, verbosity: int = 0) -> list[Restored]:
    """Every student of the newest readable backup whose volume is on no host gets their files back; the
    others are left as they are. [] when the session has no backup. One student who cannot be restored
    stops no other; the error at the end counts them (names stay out of logs)."""
    record = recorder(store, name, progress)
    chosen, students = None, []
    for archive in session_backups(store, name):
        try:
            _, students = students_in(archive)
        except ArchiveError as exc:
            record("info", f"backup {archive.name} cannot be read ({exc.message}): trying the one before")
            continue
        chosen = archive
        break
    if chosen is None:
        record("info", "no readable backup of this session to restore students' files from")
        return []
    restored, failed = [], 0
    for entry in students:
        try:
            done = restore_student(store, chosen, str(entry["user"]), name, progress=progress, verbosity=verbosity,
                                   only_new=True)
        except HubfleetError as exc:
            failed += 1
            record("failed", f"one student's files could not be restored from {chosen.name}: {exc.message}")
            continue
        if done is not None:
            restored.append(done)
    record("ok", f"the files of {len(restored)} student(s) whose volume was gone restored from {chosen.name}; "
                 f"{len(students) - len(restored) - failed} kept their own")
    if failed:
        raise HubfleetError(f"{failed} student(s)' files could not be restored from {chosen.name}",
                            hint=f"`hubfleet archives students {chosen.name}` lists them; `hubfleet archives restore "
                                 f"{chosen.name} USER --into {name}` restores one (the course's events say why)")
    return restored
