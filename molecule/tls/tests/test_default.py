"""testinfra: the host got its certificate from pebble over HTTP-01, nginx serves it, renewals are scheduled."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
from pathlib import Path

import requests

DOMAIN = "molecule-tls.hub.localhost"
HOST = "molecule-tls-hub"
ACME = json.loads((Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "acme.json").read_text())


def published(port: int) -> int:
    out = subprocess.run(["docker", "port", HOST, f"{port}/tcp"], capture_output=True, text=True, check=True).stdout
    return int(out.splitlines()[0].rsplit(":", 1)[1])


def test_certificate_is_from_pebble_and_names_the_domain(host):
    text = host.check_output(f"openssl x509 -in /etc/letsencrypt/live/{DOMAIN}/cert.pem -noout -issuer -ext subjectAltName")
    assert "Pebble Intermediate CA" in text
    assert f"DNS:{DOMAIN}" in text


def test_nginx_serves_it_and_it_chains_to_pebbles_root(host):
    context = ssl.create_default_context(cafile=ACME["root_ca"])
    with socket.create_connection(("127.0.0.1", published(443)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=DOMAIN) as tls:  # verifies the chain and the name
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_http_redirects_to_https_except_acme_challenges(host):
    http = f"http://127.0.0.1:{published(80)}"
    moved = requests.get(f"{http}/hub/", headers={"Host": DOMAIN}, allow_redirects=False, timeout=10)
    assert moved.status_code == 301
    assert moved.headers["Location"] == f"https://{DOMAIN}/hub/"
    challenge = requests.get(f"{http}/.well-known/acme-challenge/none", headers={"Host": DOMAIN},
                             allow_redirects=False, timeout=10)
    assert challenge.status_code == 404


def test_https_sends_hsts_and_tls_1_1_is_refused(host):
    site = host.file("/etc/nginx/sites-available/hub.conf").content_string
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in site
    assert 'Strict-Transport-Security "max-age=63072000" always' in site
    old = host.run(f"openssl s_client -connect 127.0.0.1:443 -servername {DOMAIN} -tls1_1 </dev/null")
    assert old.rc != 0


def test_renewal_timer_is_scheduled_and_reloads_nginx(host):
    assert host.service("hubfleet-tls-renew.timer").is_enabled
    assert host.service("hubfleet-tls-renew.timer").is_running
    assert not host.service("certbot.timer").is_enabled
    hook = host.file("/etc/letsencrypt/renewal-hooks/deploy/50-hubfleet-reload-nginx")
    assert hook.mode == 0o755 and "systemctl reload nginx" in hook.content_string
    conf = host.file(f"/etc/letsencrypt/renewal/{DOMAIN}.conf").content_string
    assert "renew_before_expiry = 30 days" in conf and f"server = {ACME['directory_url']}" in conf
    unit = host.file("/etc/systemd/system/hubfleet-tls-renew.service").content_string
    assert "REQUESTS_CA_BUNDLE=/etc/hubfleet/tls/acme-server-ca.pem" in unit
