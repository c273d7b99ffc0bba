"""The portal's own tables, on the state store's engine: users, requests, audit log, sign-in failures, images.

They live in their own DeclarativeBase so the core state tables stay the core's; SQLite by default,
PostgreSQL when the store is given a URL.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import JSON, DateTime, Float, TypeDecorator, ForeignKey, Integer, String, Text, delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from hubfleet.state import utcnow

TEACHER, OPERATOR = "teacher", "operator"
ROLES = (TEACHER, OPERATOR)

# A request's life; "archiving" is the short step between ready and archived.
REQUESTED, APPROVED, PROVISIONING, READY, ARCHIVING, ARCHIVED = (
    "requested", "approved", "provisioning", "ready", "archiving", "archived")
REJECTED, FAILED = "rejected", "failed"
STATES = (REQUESTED, APPROVED, PROVISIONING, READY, ARCHIVING, ARCHIVED, REJECTED, FAILED)
BUSY_STATES = (APPROVED, PROVISIONING, ARCHIVING)  # a worker is on it
CLOSED_STATES = (REJECTED, ARCHIVED)  # the course name is free again


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands datetimes back without a zone; they were written in UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


class UtcDateTime(TypeDecorator):
    """A timezone-aware datetime on every database (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value, dialect):
        return aware(value)


class PortalBase(DeclarativeBase):
    pass


class User(PortalBase):
    __tablename__ = "portal_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    login: Mapped[str] = mapped_column(String(254), unique=True)  # email (local) or directory username
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(8), default="local")  # local | ldap
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class CourseRequest(PortalBase):
    __tablename__ = "portal_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    teacher_id: Mapped[int] = mapped_column(ForeignKey("portal_users.id"), index=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)
    form: Mapped[dict] = mapped_column(JSON)  # what the teacher typed, to show it back
    descriptor: Mapped[dict] = mapped_column(JSON)  # validated by parse_course; holds no secret
    plan: Mapped[dict] = mapped_column(JSON)
    notes: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it was rejected
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    failed_step: Mapped[str | None] = mapped_column(Text, nullable=True)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    archive: Mapped[str | None] = mapped_column(Text, nullable=True)  # path of the verified archive
    events_after: Mapped[int] = mapped_column(Integer, default=0)  # state-store events before approval
    events_until: Mapped[int | None] = mapped_column(Integer, nullable=True)  # last event once archived
    decided_by: Mapped[str | None] = mapped_column(String(254), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


# A teacher's change to a live course: asked, then approved (applied by re-running create) or rejected.
CHANGE_ASKED, CHANGE_APPROVED, CHANGE_REJECTED = "asked", "approved", "rejected"


class ChangeRequest(PortalBase):
    """A teacher's change to a ready course: the new form and descriptor, and what it changes (hubfleet/changes.py)."""

    __tablename__ = "portal_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("portal_requests.id"), index=True)
    teacher_id: Mapped[int] = mapped_column(ForeignKey("portal_users.id"))
    state: Mapped[str] = mapped_column(String(16), index=True)
    form: Mapped[dict] = mapped_column(JSON)
    descriptor: Mapped[dict] = mapped_column(JSON)  # validated by parse_course; holds no secret
    plan: Mapped[dict] = mapped_column(JSON)
    changes: Mapped[list] = mapped_column(JSON)  # Change.to_dict() each: path, shown values, effect
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it was rejected
    decided_by: Mapped[str | None] = mapped_column(String(254), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class AuditEntry(PortalBase):
    __tablename__ = "portal_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class LoginFailure(PortalBase):
    __tablename__ = "portal_login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300), index=True)  # account:<login> or ip:<address>
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)


class SessionRow(PortalBase):
    """A signed-in browser. The cookie holds a random token; the table holds its hash, so signing out
    (deleting the row) makes a copied cookie worthless, and a leaked table signs nobody in."""

    __tablename__ = "portal_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("portal_users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)


class ImageRow(PortalBase):
    __tablename__ = "portal_images"

    image: Mapped[str] = mapped_column(String(255), primary_key=True)
    label: Mapped[str] = mapped_column(String(120))
    memory_per_user: Mapped[str] = mapped_column(String(16))
    cpu_per_user: Mapped[float] = mapped_column(Float)


class PortalStore:
    """Every read and write of the portal's tables; one short transaction each."""

    def __init__(self, engine: Engine):
        self.engine = engine
        PortalBase.metadata.create_all(engine)
        self._session = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def tx(self) -> Iterator[Session]:
        with self._session.begin() as session:
            yield session

    # --- users ---------------------------------------------------------------------------

    def user(self, user_id: int) -> User | None:
        with self.tx() as s:
            return s.get(User, user_id)

    def user_by_login(self, login: str) -> User | None:
        with self.tx() as s:
            return s.scalars(select(User).where(User.login == login.strip().lower())).first()

    def ensure_user(self, login: str, *, email: str, role: str, source: str = "local",
                    password_hash: str | None = None) -> User:
        """Create the account, or update its role (and password when one is given)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        login = login.strip().lower()
        with self.tx() as s:
            user = s.scalars(select(User).where(User.login == login)).first()
            if user is None:
                user = User(login=login, email=email, role=role, source=source, password_hash=password_hash,
                            created_at=utcnow())
                s.add(user)
            else:
                user.role, user.email = role, email
                if password_hash:
                    user.password_hash, user.source = password_hash, "local"
            s.flush()
            return user

    def operators(self) -> list[User]:
        with self.tx() as s:
            return list(s.scalars(select(User).where(User.role == OPERATOR).order_by(User.login)))

    # --- requests --------------------------------------------------------------------------

    def add_request(self, teacher: User, *, name: str, title: str, form: dict, descriptor: dict, plan: dict,
                    notes: str) -> CourseRequest:
        now = utcnow()
        with self.tx() as s:
            row = CourseRequest(teacher_id=teacher.id, name=name, title=title, state=REQUESTED, form=form,
                                descriptor=descriptor, plan=plan, notes=notes, events_after=0,
                                created_at=now, updated_at=now)
            s.add(row)
            s.flush()
            return row

    def request(self, request_id: int) -> CourseRequest | None:
        with self.tx() as s:
            return s.get(CourseRequest, request_id)

    def requests(self, *, teacher_id: int | None = None, states: tuple[str, ...] | None = None) -> list[CourseRequest]:
        query = select(CourseRequest).order_by(CourseRequest.id.desc())
        if teacher_id is not None:
            query = query.where(CourseRequest.teacher_id == teacher_id)
        if states:
            query = query.where(CourseRequest.state.in_(states))
        with self.tx() as s:
            return list(s.scalars(query))

    def name_taken_by(self, name: str, *, except_id: int | None = None) -> CourseRequest | None:
        """An open request that holds this course name."""
        query = select(CourseRequest).where(CourseRequest.name == name,
                                            CourseRequest.state.not_in(CLOSED_STATES))
        if except_id is not None:
            query = query.where(CourseRequest.id != except_id)
        with self.tx() as s:
            return s.scalars(query).first()

    def update_request(self, request_id: int, *, expect: tuple[str, ...] | None = None, **fields) -> CourseRequest | None:
        """Change a request; with `expect`, only from those states (None when it was elsewhere).

        One conditional UPDATE, so two operators clicking at once cannot both win, on any database.
        """
        if "state" in fields and fields["state"] not in STATES:
            raise ValueError(f"unknown state {fields['state']!r}")
        statement = update(CourseRequest).where(CourseRequest.id == request_id).values(**fields, updated_at=utcnow())
        if expect is not None:
            statement = statement.where(CourseRequest.state.in_(expect))
        with self.tx() as s:
            if s.execute(statement.execution_options(synchronize_session=False)).rowcount == 0:
                return None
            return s.get(CourseRequest, request_id, populate_existing=True)

    # --- changes to live courses -----------------------------------------------------------

    def add_change(self, request: CourseRequest, teacher: User, *, form: dict, descriptor: dict, plan: dict,
                   changes: list[dict]) -> ChangeRequest:
        now = utcnow()
        with self.tx() as s:
            row = ChangeRequest(request_id=request.id, teacher_id=teacher.id, state=CHANGE_ASKED, form=form,
                                descriptor=descriptor, plan=plan, changes=changes, created_at=now, updated_at=now)
            s.add(row)
            s.flush()
            return row

    def change(self, change_id: int) -> ChangeRequest | None:
        with self.tx() as s:
            return s.get(ChangeRequest, change_id)

    def changes(self, *, request_id: int | None = None, states: tuple[str, ...] | None = None) -> list[ChangeRequest]:
        query = select(ChangeRequest).order_by(ChangeRequest.id.desc())
        if request_id is not None:
            query = query.where(ChangeRequest.request_id == request_id)
        if states:
            query = query.where(ChangeRequest.state.in_(states))
        with self.tx() as s:
            return list(s.scalars(query))

    def decide_change(self, change_id: int, state: str, *, by: str, reason: str | None = None) -> ChangeRequest | None:
        """An asked change approved or rejected, once: None when it was no longer asked."""
        statement = (update(ChangeRequest).where(ChangeRequest.id == change_id, ChangeRequest.state == CHANGE_ASKED)
                     .values(state=state, decided_by=by, reason=reason, updated_at=utcnow()))
        with self.tx() as s:
            if s.execute(statement.execution_options(synchronize_session=False)).rowcount == 0:
                return None
            return s.get(ChangeRequest, change_id, populate_existing=True)

    # --- audit ---------------------------------------------------------------------------

    def audit(self, actor: str, action: str, *, request_id: int | None = None, detail: str = "") -> None:
        with self.tx() as s:
            s.add(AuditEntry(at=utcnow(), actor=actor, action=action, request_id=request_id, detail=detail))

    def audit_log(self, *, request_id: int | None = None, limit: int = 500) -> list[AuditEntry]:
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if request_id is not None:
            query = query.where(AuditEntry.request_id == request_id)
        with self.tx() as s:
            return list(s.scalars(query))

    # --- sign-in failures ------------------------------------------------------------------

    def record_failure(self, *keys: str) -> None:
        now = utcnow()
        with self.tx() as s:
            s.add_all(LoginFailure(key=key, at=now) for key in keys)

    def failures_since(self, key: str, since: dt.datetime) -> int:
        with self.tx() as s:
            return s.scalar(select(func.count()).select_from(LoginFailure)
                            .where(LoginFailure.key == key, LoginFailure.at >= since)) or 0

    def clear_failures(self, key: str) -> None:
        with self.tx() as s:
            s.execute(delete(LoginFailure).where(LoginFailure.key == key))

    def forget_failures_before(self, before: dt.datetime) -> None:
        with self.tx() as s:
            s.execute(delete(LoginFailure).where(LoginFailure.at < before))

    # --- sessions --------------------------------------------------------------------------

    def add_session(self, token_hash: str, user_id: int) -> None:
        with self.tx() as s:
            s.add(SessionRow(token_hash=token_hash, user_id=user_id, created_at=utcnow()))

    def session_user(self, token_hash: str, since: dt.datetime) -> User | None:
        """The user of a live session (made after `since`), or None."""
        with self.tx() as s:
            row = s.get(SessionRow, token_hash)
            if row is None or row.created_at < since:
                return None
            return s.get(User, row.user_id)

    def end_session(self, token_hash: str) -> None:
        with self.tx() as s:
            s.execute(delete(SessionRow).where(SessionRow.token_hash == token_hash))

    def end_sessions_of(self, user_id: int) -> int:
        """Sign a user out everywhere (their password changed)."""
        with self.tx() as s:
            return s.execute(delete(SessionRow).where(SessionRow.user_id == user_id)).rowcount

    def forget_sessions_before(self, before: dt.datetime) -> None:
        with self.tx() as s:
            s.execute(delete(SessionRow).where(SessionRow.created_at < before))

    # --- images ----------------------------------------------------------------------------

    def images(self) -> list[ImageRow]:
        with self.tx() as s:
            return list(s.scalars(select(ImageRow).order_by(ImageRow.label)))

    def image(self, ref: str) -> ImageRow | None:
        with self.tx() as s:
            return s.get(ImageRow, ref)

    def put_image(self, *, image: str, label: str, memory_per_user: str, cpu_per_user: float) -> None:
        with self.tx() as s:
            row = s.get(ImageRow, image)
            if row is None:
                s.add(ImageRow(image=image, label=label, memory_per_user=memory_per_user, cpu_per_user=cpu_per_user))
            else:
                row.label, row.memory_per_user, row.cpu_per_user = label, memory_per_user, cpu_per_user

    def remove_image(self, ref: str) -> bool:
        with self.tx() as s:
            row = s.get(ImageRow, ref)
            if row is not None:
                s.delete(row)
            return row is not None

    def seed_images(self, choices) -> None:
        """Fill the curated list from the settings file, only while it is empty (operators own it after)."""
        if self.images():
            return
        for choice in choices:
            self.put_image(image=choice.image, label=choice.label, memory_per_user=choice.memory_per_user,
                           cpu_per_user=choice.cpu_per_user)
