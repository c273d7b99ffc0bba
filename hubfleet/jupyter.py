"""Talking to a hub and to a student's server: the hub REST API, and code run in a real kernel.

Used by the health check ("up" means a user can run code) and by the tests, which log in the
way a student does.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import requests
import websocket

from hubfleet.errors import HubfleetError


class HubUnavailable(HubfleetError):
    exit_code = 7


@dataclass
class ExecResult:
    status: str  # ok | error
    output: str  # execute_result text/plain and stream output
    error: str = ""


def trusting_session(verify: bool | str = True) -> requests.Session:
    """A session that trusts exactly `verify` (a CA bundle path, or True for the defaults).

    requests lets REQUESTS_CA_BUNDLE override a session's own verify; a course's CA must win.
    """
    session = requests.Session()
    session.verify = verify
    if isinstance(verify, str):
        session.trust_env = False
    return session


class HubClient:
    """The hub's REST API with a service token."""

    def __init__(self, base_url: str, token: str, *, verify: bool | str = True, timeout: float = 15):
        self.base = base_url.rstrip("/")
        self.session = trusting_session(verify)
        self.session.headers["Authorization"] = f"token {token}"
        self.timeout = timeout

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            response = self.session.request(method, f"{self.base}/hub/api{path}", timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise HubUnavailable(f"the hub at {self.base} does not answer: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise HubUnavailable(f"hub API {method} {path} answered {response.status_code}: {response.text[:200]}")
        return response

    def version(self) -> str:
        return self.api("GET", "/").json().get("version", "?")

    def users(self) -> list[dict]:
        return self.api("GET", "/users").json()

    def ensure_user(self, name: str) -> dict:
        got = self.session.get(f"{self.base}/hub/api/users/{name}", timeout=self.timeout)
        if got.status_code == 200:
            return got.json()
        return self.api("POST", f"/users/{name}").json()

    def start_server(self, name: str, timeout: float = 180) -> float:
        """Start the user's server and wait until it is ready; returns the seconds it took."""
        started = time.monotonic()
        self.api("POST", f"/users/{name}/server")
        while time.monotonic() - started < timeout:
            server = self.api("GET", f"/users/{name}").json().get("servers", {}).get("", {})
            if server.get("ready"):
                return time.monotonic() - started
            time.sleep(0.5)
        raise HubUnavailable(f"{name}'s server did not become ready within {timeout:.0f} s")

    def stop_server(self, name: str, timeout: float = 60) -> None:
        response = self.session.delete(f"{self.base}/hub/api/users/{name}/server", timeout=self.timeout)
        if response.status_code not in (202, 204, 400, 404):
            raise HubUnavailable(f"stopping {name}'s server answered {response.status_code}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.api("GET", f"/users/{name}").json().get("servers"):
                return
            time.sleep(0.5)
        raise HubUnavailable(f"{name}'s server did not stop within {timeout:.0f} s")

    def user_token(self, name: str, note: str = "hubfleet probe", expires_in: int = 600) -> str:
        return self.api("POST", f"/users/{name}/tokens", json={"note": note, "expires_in": expires_in}).json()["token"]

    def delete_user(self, name: str) -> None:
        self.api("DELETE", f"/users/{quote(name, safe='')}")

    def running_servers(self) -> list[str]:
        return [u["name"] for u in self.users() if u.get("servers")]


def cookie_for(session: requests.Session, name: str, path: str) -> str | None:
    """The cookie `name` that a browser would send to `path` (hub and servers each set their own)."""
    best = None
    for cookie in session.cookies:
        if cookie.name == name and path.rstrip("/").startswith(cookie.path.rstrip("/")):
            if best is None or len(cookie.path) > len(best.path):
                best = cookie
    return best.value if best else None


def _ws_url(http_url: str) -> str:
    parts = urlsplit(http_url)
    return urlunsplit(("wss" if parts.scheme == "https" else "ws", parts.netloc, parts.path, parts.query, ""))


def open_websocket(session: requests.Session, http_url: str, *, headers: dict | None = None,
                   timeout: float = 60) -> websocket.WebSocket:
    """A websocket to http_url (its ws:// or wss:// twin) as the session's browser opens it: its cookies, its trust."""
    cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    ws_headers = [f"{k}: {v}" for k, v in (headers or {}).items()] + ([f"Cookie: {cookie}"] if cookie else [])
    sslopt = {"cert_reqs": 0} if session.verify is False else (
        {"ca_certs": session.verify} if isinstance(session.verify, str) else {})
    return websocket.create_connection(_ws_url(http_url), header=ws_headers, timeout=timeout, sslopt=sslopt)


def execute(server_url: str, code: str, *, session: requests.Session, headers: dict | None = None,
            timeout: float = 60, kernel_id: str | None = None) -> ExecResult:
    """Run `code` in a kernel of the server at server_url (…/user/NAME) over the kernel websocket.

    Starts a kernel unless kernel_id is given; the session carries the authentication (a token
    header or the cookies of a logged-in student).
    """
    headers = dict(headers or {})
    xsrf = cookie_for(session, "_xsrf", urlsplit(server_url).path)
    if xsrf:
        headers["X-XSRFToken"] = xsrf
    own_kernel = kernel_id is None
    if own_kernel:
        response = session.post(f"{server_url}/api/kernels", json={"name": "python3"}, headers=headers, timeout=30)
        if response.status_code >= 400:
            raise HubUnavailable(f"starting a kernel answered {response.status_code}: {response.text[:200]}")
        kernel_id = response.json()["id"]
    try:
        ws = open_websocket(session, f"{server_url}/api/kernels/{kernel_id}/channels", headers=headers,
                            timeout=timeout)
        try:
            return _run_on_channel(ws, code, timeout)
        finally:
            ws.close()
    finally:
        if own_kernel:
            session.delete(f"{server_url}/api/kernels/{kernel_id}", headers=headers, timeout=30)


def execute_request(code: str) -> tuple[str, str]:
    """(msg_id, the kernel-protocol execute_request for `code` as sent over a kernel's websocket)."""
    msg_id = uuid.uuid4().hex
    return msg_id, json.dumps({
        "header": {"msg_id": msg_id, "username": "hubfleet", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    })


def _run_on_channel(ws: websocket.WebSocket, code: str, timeout: float) -> ExecResult:
    msg_id, request = execute_request(code)
    ws.send(request)
    output, error, status = [], "", "ok"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg.get("content", {})
        if kind == "stream":
            output.append(content.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            output.append(content.get("data", {}).get("text/plain", ""))
        elif kind == "error":
            status, error = "error", f"{content.get('ename')}: {content.get('evalue')}"
        elif kind == "status" and content.get("execution_state") == "idle":
            return ExecResult(status, "".join(output), error)
    raise HubUnavailable(f"the kernel did not finish running code within {timeout:.0f} s")


def login_with_password(base_url: str, username: str, password: str, *, verify: bool | str = True,
                        session: requests.Session | None = None) -> requests.Session:
    """Log in through the hub's login form, as a student's browser does."""
    session = session or trusting_session(verify)
    base = base_url.rstrip("/")
    page = session.get(f"{base}/hub/login", timeout=30)
    page.raise_for_status()
    xsrf = cookie_for(session, "_xsrf", "/hub/login")
    response = session.post(f"{base}/hub/login", data={"username": username, "password": password, "_xsrf": xsrf or ""},
                            allow_redirects=False, timeout=30)
    if response.status_code not in (302, 303):
        raise HubUnavailable(f"login as {username} was refused ({response.status_code})")
    return session


def start_own_server(session: requests.Session, base_url: str, username: str, timeout: float = 180) -> float:
    """As a logged-in user: start my server, wait for it, and open it (OAuth with the hub). Seconds taken."""
    base = base_url.rstrip("/")
    started = time.monotonic()
    headers = {"X-XSRFToken": cookie_for(session, "_xsrf", "/hub/api") or ""}
    response = session.post(f"{base}/hub/api/users/{username}/server", headers=headers, timeout=30)
    if response.status_code not in (201, 202, 400):  # 400: already running
        raise HubUnavailable(f"starting {username}'s server answered {response.status_code}: {response.text[:200]}")
    while time.monotonic() - started < timeout:
        info = session.get(f"{base}/hub/api/users/{username}", headers=headers, timeout=30).json()
        if info.get("servers", {}).get("", {}).get("ready"):
            break
        time.sleep(0.3)
    else:
        raise HubUnavailable(f"{username}'s server did not become ready within {timeout:.0f} s")
    # A page (not an API URL) goes through the OAuth redirects with the hub and sets the server's cookies.
    opened = session.get(f"{base}/user/{username}/lab", timeout=60)
    if opened.status_code != 200:
        raise HubUnavailable(f"{username}'s server answered {opened.status_code} after login")
    return time.monotonic() - started


def stop_own_server(session: requests.Session, base_url: str, username: str, timeout: float = 60) -> None:
    base = base_url.rstrip("/")
    headers = {"X-XSRFToken": cookie_for(session, "_xsrf", "/hub/api") or ""}
    session.delete(f"{base}/hub/api/users/{username}/server", headers=headers, timeout=30)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not session.get(f"{base}/hub/api/users/{username}", headers=headers, timeout=30).json().get("servers"):
            return
        time.sleep(0.3)
    raise HubUnavailable(f"{username}'s server did not stop within {timeout:.0f} s")
