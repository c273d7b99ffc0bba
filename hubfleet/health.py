"""Health: "up" means usable — the API answers, a probe user gets a server and runs code in a kernel."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import requests
import websocket

from hubfleet.errors import HubfleetError
from hubfleet.jupyter import HubClient, execute, trusting_session
from hubfleet.usernames import PROBE_USER  # no identity maps to it: a student cannot be the probe


@dataclass
class Health:
    api: bool = False
    version: str = ""
    probe: bool = False
    probe_seconds: float | None = None
    users: int = 0
    running: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.api and self.probe and not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, "api": self.api, "version": self.version, "probe": self.probe,
                "probe_seconds": None if self.probe_seconds is None else round(self.probe_seconds, 2),
                "users": self.users, "running_servers": self.running, "problems": self.problems}


def check(url: str, token: str, *, probe: bool = True, verify: bool | str = True, timeout: float = 180) -> Health:
    """Check a hub end to end; never raises for a sick hub, reports what failed instead."""
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
