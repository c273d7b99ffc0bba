"""`hubfleet portal serve` as a real process on 127.0.0.1: it answers, signs in, signs out for real (a copied
cookie is worthless after sign-out), and stops on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_answers_on_loopback_and_stops_on_ctrl_c(tmp_path):
    env = {**os.environ, "HUBFLEET_STATE_DIR": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1"}
    hubfleet = [sys.executable, "-m", "hubfleet"]
    password = tmp_path / "pw"
    password.write_text("operator-password-9\n")
    subprocess.run([*hubfleet, "portal", "add-operator", "ops@example.edu", "--password-file", str(password)],
                   env=env, check=True, capture_output=True, timeout=60)
    port = free_port()
    server = subprocess.Popen([*hubfleet, "portal", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                page = requests.get(f"{base}/login", timeout=2)
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
                time.sleep(0.2)
        assert page.status_code == 200 and "HttpOnly" in page.headers["Set-Cookie"]
        session = requests.Session()
        token = re.search(r'name="csrf_token" value="([^"]+)"', session.get(f"{base}/login").text).group(1)
        signed_in = session.post(f"{base}/login", data={"csrf_token": token, "login": "ops@example.edu",
                                                        "password": "operator-password-9"})
        assert signed_in.url == f"{base}/operator/" and "Waiting for approval" in signed_in.text
        assert requests.post(f"{base}/login", data={"login": "x"}).status_code == 403  # no CSRF token

        # A copied session cookie (a shared computer, a proxy's log) works only until sign-out.
        copied = requests.Session()
        copied.cookies.set("hubfleet_portal", session.cookies["hubfleet_portal"], domain="127.0.0.1")
        assert copied.get(f"{base}/operator/", allow_redirects=False).status_code == 200
        token = re.search(r'name="csrf_token" value="([^"]+)"', signed_in.text).group(1)
        assert session.post(f"{base}/logout", data={"csrf_token": token}).url == f"{base}/login"
        after = copied.get(f"{base}/operator/", allow_redirects=False)
        assert after.status_code == 302 and after.headers["Location"].startswith("/login")
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert f"portal at http://127.0.0.1:{port}" in err and "operator-password-9" not in out + err
