"""Seats under pressure: a hub service that stops idle servers sooner while students wait in line.

jupyterhub-idle-culler stops servers idle for the course's idle_timeout, whatever the load. While
the course is full and students wait (the hub's line, hubfleet_seats), this service stops servers
idle for the shorter pressure timeout instead, the longest idle first and only as many as wait
for a seat; a server with a kernel running code is never stopped for a newcomer, however long
ago its student last typed, and teachers' servers are spared. Each round it also tells the hub
when the other idle servers will become stoppable: those are the seats a waiting student's
estimate can honestly count on.

Idle is the later of the hub's record of the server's activity and what the server itself says
(/api/status), so a student typing right now is not taken for idle between activity reports.
Whether a kernel is running code is asked (/api/kernels) only of the servers about to be stopped:
Jupyter Server counts that request as the student's activity (unlike /api/status), so asking every
server every round would keep every server busy-looking for ever and no seat would ever free up.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
from dataclasses import dataclass
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

log = logging.getLogger("hubfleet-pressure")
PAGE = "application/jupyterhub-pagination+json"


@dataclass
class Server:
    user: str
    idle_since: float  # epoch seconds of the last activity known
    busy: bool  # a kernel is running code now (False until asked: see one_round)
    spared: bool  # a teacher's or an admin's: never stopped for the line


def parse_time(text: str | None) -> float:
    if not text:
        return 0.0
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def choose(servers: list[Server], short: int, timeout: float, now: float) -> tuple[list[str], list[float]]:
    """Which servers to stop for `short` waiting students, and when the rest become stoppable.

    Returns (users to stop, longest idle first; release times of the other stoppable servers).
    """
    candidates = sorted((s for s in servers if not s.busy and not s.spared), key=lambda s: (s.idle_since, s.user))
    ready = [s for s in candidates if now - s.idle_since >= timeout]
    stop = [s.user for s in ready[:max(0, short)]]
    releases = [s.idle_since + timeout for s in candidates if s.user not in stop]
    return stop, releases


class Hub:
    def __init__(self, api_url: str, proxy_url: str, token: str):
        self.api = api_url.rstrip("/")
        self.proxy = proxy_url.rstrip("/")
        self.headers = {"Authorization": f"token {token}"}
        self.http = AsyncHTTPClient()

    async def call(self, method: str, url: str, body: object = None, accept: str | None = None):
        headers = dict(self.headers)
        if accept:
            headers["Accept"] = accept
        request = HTTPRequest(url, method=method, headers=headers, request_timeout=20,
                              body=None if body is None else json.dumps(body),
                              allow_nonstandard_methods=True)
        response = await self.http.fetch(request, raise_error=False)
        if response.code >= 400 or response.code == 599:
            raise RuntimeError(f"{method} {url.split('?')[0]} answered {response.code}")
        return json.loads(response.body) if response.body else None

    async def seats(self) -> dict:
        return await self.call("GET", f"{self.api}/hubfleet/seats")

    async def ready_users(self) -> list[dict]:
        users, offset = [], 0
        while True:
            page = await self.call("GET", f"{self.api}/users?state=ready&offset={offset}&limit=200", accept=PAGE)
            users += page["items"]
            following = (page.get("_pagination") or {}).get("next")
            if not following:
                return users
            offset = following["offset"]

    async def last_activity(self, user: str) -> float:
        """The server's own last activity (/api/status: asking it is not activity)."""
        status = await self.call("GET", f"{self.proxy}/user/{quote(user, safe='')}/api/status")
        return parse_time((status or {}).get("last_activity"))

    async def computing(self, user: str) -> bool:
        """Whether one of the server's kernels is running code (the server counts this request as activity)."""
        kernels = await self.call("GET", f"{self.proxy}/user/{quote(user, safe='')}/api/kernels")
        return any(k.get("execution_state") == "busy" for k in kernels or [])


async def look(hub: Hub, user: dict, spared_groups: set[str]) -> Server:
    server = user["servers"][""]
    hub_idle = parse_time(server.get("last_activity"))
    spared = bool(user.get("admin")) or bool(set(user.get("groups") or []) & spared_groups)
    try:
        own_idle = await hub.last_activity(user["name"])
    except Exception as exc:  # unreadable: never stop it for the line on a guess
        log.warning("cannot read %s's server status (%s): not stopping it", user["name"], exc)
        return Server(user["name"], hub_idle, busy=True, spared=spared)
    return Server(user["name"], max(hub_idle, own_idle), busy=False, spared=spared)


async def settle(hub: Hub, servers: list[Server], short: int, timeout: float, now: float) -> tuple[list[str], list[float]]:
    """choose(), asking about kernels only the servers it would stop; a busy one gives way to the next."""
    asked: set[str] = set()
    while True:
        stop, releases = choose(servers, short, timeout, now)
        unasked = [s for s in servers if s.user in stop and s.user not in asked]
        if not unasked:
            return stop, releases
        for server in unasked:
            asked.add(server.user)
            try:
                server.busy = await hub.computing(server.user)
            except Exception as exc:  # unreadable: never stop it for the line on a guess
                log.warning("cannot read %s's kernels (%s): not stopping it", server.user, exc)
                server.busy = True


async def one_round(hub: Hub, timeout: float, spared_groups: set[str], now: float) -> dict:
    seats = await hub.seats()
    if not seats.get("waiting"):
        if seats.get("expected_releases"):
            await hub.call("POST", f"{hub.api}/hubfleet/seats", {"releases": []})
        return {"waiting": 0, "stopped": []}
    users = [u for u in await hub.ready_users() if "" in (u.get("servers") or {})]
    servers = list(await asyncio.gather(*(look(hub, u, spared_groups) for u in users)))
    stop, releases = await settle(hub, servers, int(seats.get("short", 0)), timeout, now)
    for name in stop:
        idle = next(s for s in servers if s.user == name).idle_since
        log.info("stopping %s's server, idle %.0f s, for a student waiting in line", name, now - idle)
        await hub.call("DELETE", f"{hub.api}/users/{quote(name, safe='')}/server")
    await hub.call("POST", f"{hub.api}/hubfleet/seats", {"releases": releases})
    return {"waiting": seats["waiting"], "stopped": stop}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, required=True, help="idle seconds before a server is stopped for the line")
    parser.add_argument("--interval", type=float, default=15, help="seconds between rounds")
    parser.add_argument("--proxy-url", required=True, help="where the hub's proxy reaches the servers (/user/NAME)")
    parser.add_argument("--spare-group", action="append", default=[], help="a group whose servers are never stopped")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    hub = Hub(os.environ["JUPYTERHUB_API_URL"], args.proxy_url, os.environ["JUPYTERHUB_API_TOKEN"])
    while True:
        try:
            await one_round(hub, args.timeout, set(args.spare_group), dt.datetime.now(dt.timezone.utc).timestamp())
        except Exception as exc:  # the hub restarting: try again next round
            log.warning("round failed: %s", exc)
        await asyncio.sleep(args.interval)


if __name__ == "__main__":
    asyncio.run(main())
