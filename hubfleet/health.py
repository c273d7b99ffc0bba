"""Health: "up" means usable — the API answers, a probe user gets a server and runs code in a kernel."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import requests
import websocket

from hubfleet.errors import HubfleetError
from hubfleet.jupyter import HubClient, execute, trusting_session
from hubfleet.usernames import PROBE_USER  # no identity maps to it: a student cannot be the probe


StudentLogin = Callable[[requests.Session], "str | None"]  # AuthKind.student_login, bound to a course and URL


@dataclass
class Health:
    api: bool = False
    version: str = ""
    student_login: bool | None = None  # logged in as a student would; None: not tried (see login_note)
    login_note: str = ""
    probe: bool = False
    probe_seconds: float | None = None
    users: int = 0
    running: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.api and self.probe and not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, "api": self.api, "version": self.version, "student_login": self.student_login,
                "login_note": self.login_note, "probe": self.probe,
                "probe_seconds": None if self.probe_seconds is None else round(self.probe_seconds, 2),
                "users": self.users, "running_servers": self.running, "problems": self.problems}


def check(url: str, token: str, *, probe: bool = True, verify: bool | str = True, timeout: float = 180,
          student: StudentLogin | None = None, login_note: str = "") -> Health:
    """Check a hub end to end; never raises for a sick hub, reports what failed instead.

    `student` logs in the way the course's students do (the shared password, a launch signed with the
    course's LTI key): "healthy" then means a student gets in, not only that the API answers.
    """
    health = Health()
    client = HubClient(url, token, verify=verify)
    try:
        health.version = client.version()
        health.api = True
        users = client.users()
        health.users = len([u for u in users if u["name"] != PROBE_USER])
        health.running = [u["name"] for u in users if u.get("servers") and u["name"] != PROBE_USER]
    except HubfleetError as exc:
        health.problems.append(str(exc))
        return health
    if student is not None:
        login_as_a_student(health, client, student, verify, {u["name"] for u in users})
    if health.student_login is None:
        health.login_note = login_note or "not tried"
    if not probe:
        return health
    started = time.monotonic()
    try:
        client.ensure_user(PROBE_USER)
        client.start_server(PROBE_USER, timeout=timeout)
        token_for_probe = client.user_token(PROBE_USER)
        session = trusting_session(verify)
        result = execute(f"{client.base}/user/{PROBE_USER}", "1+1", session=session,
                         headers={"Authorization": f"token {token_for_probe}"})
        if result.status != "ok" or result.output.strip() != "2":
            health.problems.append(f"the probe kernel answered {result.output!r} {result.error}".strip())
        else:
            health.probe = True
            health.probe_seconds = time.monotonic() - started
    except (HubfleetError, requests.RequestException, websocket.WebSocketException, OSError) as exc:
        health.problems.append(f"probe: {exc}")
    finally:
        try:
            client.stop_server(PROBE_USER)
        except (HubfleetError, requests.RequestException):
            pass
    return health


def login_as_a_student(health: Health, client: HubClient, student: StudentLogin, verify: bool | str,
                       known: set[str]) -> None:
    """Log in as a student; the account it made is removed again (a real student's never: `known`)."""
    session = trusting_session(verify)
    name = None
    try:
        name = student(session)
        health.student_login = True if name is not None else None
    except (HubfleetError, requests.RequestException) as exc:
        health.student_login = False
        reason = exc.message if isinstance(exc, HubfleetError) else type(exc).__name__
        health.problems.append(f"a student cannot log in: {reason}")
    finally:
        session.close()
    if name and name not in known:
        try:
            client.delete_user(name)
        except HubfleetError as exc:
            health.problems.append(f"the health check's login {name} could not be removed: {exc.message}")
