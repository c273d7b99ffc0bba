"""The state store: every instance, its secrets and its lock.

Rows live in a database through SQLAlchemy (SQLite under the state dir by default, any URL for
PostgreSQL). Secrets never enter the database: they are files with mode 0600 under
`<state-dir>/instances/<name>/secrets/`, written atomically.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import secrets as pysecrets
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from platformdirs import user_data_dir
from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from hubfleet.errors import Busy, HubfleetError, NotFound

STATUSES = ("planned", "provisioning", "configuring", "ready", "degraded", "failed", "destroying", "archived")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


class Base(DeclarativeBase):
    pass


class InstanceRow(Base):
    __tablename__ = "instances"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    descriptor: Mapped[dict] = mapped_column(JSON)
    hosts: Mapped[list] = mapped_column(JSON, default=list)
    outputs: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class EventRow(Base):
    """Progress of long steps, so another process (the portal) can follow a create."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance: Mapped[str] = mapped_column(String(64), ForeignKey("instances.name", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(16))  # step | ok | changed | failed | info
    message: Mapped[str] = mapped_column(Text)


@dataclass(frozen=True)
class Instance:
    name: str
    provider: str
    status: str
    descriptor: dict
    hosts: list
    outputs: dict
    error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_row(cls, row: InstanceRow) -> "Instance":
        return cls(row.name, row.provider, row.status, dict(row.descriptor), list(row.hosts or []),
                   dict(row.outputs or {}), row.error, _aware(row.created_at), _aware(row.updated_at))

    def to_dict(self) -> dict:
        return {
            "name": self.name, "provider": self.provider, "status": self.status,
            "domain": self.descriptor.get("domain"), "url": self.outputs.get("url"),
            "hosts": self.hosts, "outputs": self.outputs, "error": self.error,
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
        }


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def default_state_dir() -> Path:
    return Path(os.environ.get("HUBFLEET_STATE_DIR") or user_data_dir("hubfleet", appauthor=False))


def write_private(path: Path, data: str | bytes) -> None:
    """Write a file readable by its owner only, atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _describe_holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"`{info['action']}` has been running since {info['since']} (pid {info['pid']})"
    except (ValueError, KeyError, TypeError):
        return "another hubfleet process holds its lock"


class StateStore:
    def __init__(self, state_dir: Path | None = None, database_url: str | None = None):
        self.dir = Path(state_dir) if state_dir else default_state_dir()
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        url = database_url or os.environ.get("HUBFLEET_DATABASE_URL") or f"sqlite:///{self.dir / 'state.db'}"
        self.engine = create_engine(url, future=True)
        Base.metadata.create_all(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    # --- rows ---------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """One transaction: everything in it is written, or nothing is."""
        with self._session.begin() as session:
            yield session

    def get(self, name: str) -> Instance:
        with self._tx() as s:
            row = s.get(InstanceRow, name)
            if row is None:
                known = [r for r in s.scalars(select(InstanceRow.name)).all()]
                hint = f"known courses: {', '.join(sorted(known))}" if known else "no course exists yet; see `hubfleet create --help`"
                raise NotFound(f"no course named {name!r}", hint=hint)
            return Instance.from_row(row)

    def find(self, name: str) -> Instance | None:
        with self._tx() as s:
            row = s.get(InstanceRow, name)
            return Instance.from_row(row) if row else None

    def all(self) -> list[Instance]:
        with self._tx() as s:
            return [Instance.from_row(r) for r in s.scalars(select(InstanceRow).order_by(InstanceRow.name))]

    def upsert(self, name: str, *, provider: str, descriptor: dict, status: str = "planned") -> Instance:
        now = utcnow()
        with self._tx() as s:
            row = s.get(InstanceRow, name)
            if row is None or row.status == "archived":
                if row is not None:
                    s.delete(row)
                    s.flush()
                row = InstanceRow(name=name, provider=provider, status=status, descriptor=descriptor, hosts=[],
                                  outputs={}, error=None, created_at=now, updated_at=now)
                s.add(row)
            else:
                row.descriptor, row.provider, row.updated_at = descriptor, provider, now
            s.flush()
            return Instance.from_row(row)

    def update(self, name: str, **fields) -> Instance:
        unknown = set(fields) - {"status", "hosts", "outputs", "error", "descriptor"}
        if unknown:
            raise ValueError(f"cannot update {unknown}")
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"unknown status {fields['status']!r}")
        with self._tx() as s:
            row = s.get(InstanceRow, name)
            if row is None:
                raise NotFound(f"no course named {name!r}")
            for key, value in fields.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            s.flush()
            return Instance.from_row(row)

    def delete(self, name: str) -> None:
        with self._tx() as s:
            for ev in s.scalars(select(EventRow).where(EventRow.instance == name)):
                s.delete(ev)
            row = s.get(InstanceRow, name)
            if row is not None:
                s.delete(row)

    def add_event(self, name: str, kind: str, message: str) -> None:
        with self._tx() as s:
            s.add(EventRow(instance=name, at=utcnow(), kind=kind, message=message))

    def events(self, name: str, after_id: int = 0) -> list[tuple[int, dt.datetime, str, str]]:
        with self._tx() as s:
            rows = s.scalars(select(EventRow).where(EventRow.instance == name, EventRow.id > after_id)
                             .order_by(EventRow.id))
            return [(r.id, _aware(r.at), r.kind, r.message) for r in rows]

    # --- files: per-instance dir, secrets, lock ------------------------------------------

    def instance_dir(self, name: str) -> Path:
        path = self.dir / "instances" / name
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def archive_dir(self) -> Path:
        path = self.dir / "archives"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def restore_dir(self) -> Path:
        """What restoring a hub needs (its database, cookie secret): the operator's only, never the teacher's."""
        path = self.dir / "restore"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
        return path

    def secret_path(self, name: str, key: str) -> Path:
        return self.instance_dir(name) / "secrets" / key

    def set_secret(self, name: str, key: str, value: str) -> None:
        write_private(self.secret_path(name, key), value)

    def get_secret(self, name: str, key: str) -> str | None:
        path = self.secret_path(name, key)
        return path.read_text() if path.exists() else None

    def ensure_secret(self, name: str, key: str, source: str = "generate", *, nbytes: int = 24) -> str:
        """The secret from its source (generate / env:VAR / file:PATH), stored once, kept on re-runs."""
        if source.startswith("env:"):
            value = os.environ.get(source[4:])
            if not value:
                raise HubfleetError(f"secret {key}: environment variable {source[4:]} is empty or unset",
                                    hint=f"export {source[4:]}=... before running hubfleet")
        elif source.startswith("file:"):
            try:
                value = Path(source[5:]).expanduser().read_text().strip()
            except OSError as exc:
                raise HubfleetError(f"secret {key}: cannot read {source[5:]} ({exc.strerror})") from None
        else:
            existing = self.get_secret(name, key)
            if existing:
                return existing
            value = pysecrets.token_urlsafe(nbytes)
        if self.get_secret(name, key) != value:
            self.set_secret(name, key, value)
        return value

    def secrets(self, name: str) -> dict[str, str]:
        folder = self.instance_dir(name) / "secrets"
        if not folder.exists():
            return {}
        return {p.name: p.read_text() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}

    def remove_instance_files(self, name: str) -> None:
        shutil.rmtree(self.dir / "instances" / name, ignore_errors=True)

    @contextmanager
    def lock(self, name: str, action: str) -> Iterator[None]:
        """Hold the course's lock for `action`; a second holder is refused, never queued."""
        locks = self.dir / "locks"
        locks.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = locks / f"{name}.lock"
        handle = open(path, "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                raise Busy(f"course {name!r} is busy: {_describe_holder(handle.read())}",
                           hint="wait for it to finish (or stop that process) and run this again") from None
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"action": action, "pid": os.getpid(), "since": utcnow().isoformat()}))
            handle.flush()
            yield
        finally:
            handle.close()
