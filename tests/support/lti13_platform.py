"""A small LTI 1.3 platform (the LMS's side of a launch) for the tests, over HTTPS.

It does what Moodle 4 does for a resource link: starts the OIDC third-party login at the tool,
answers the tool's authentication request with an auto-submitted form carrying an RS256
id_token, and publishes its public key at a JWKS URL. Its own RSA key signs the tokens; a second
"rogue" key, never published, makes tokens that must fail. `next_launch` bends the next id_token
(wrong issuer, audience, expiry, key...) so each refusal can be shown on the real hub.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import jwt
from jwt.algorithms import RSAAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.test_ca import ServerCertificate

LTI = "https://purl.imsglobal.org/spec/lti/claim/"


@dataclass
class Launch:
    """What the next id_token should carry differently from a correct one."""

    claims: dict = field(default_factory=dict)
    sign_with: str = "platform"  # platform | rogue
    kid: str | None = None


class LTI13Platform:
    def __init__(self, address: str, port: int, certificate: ServerCertificate, *, client_id: str,
                 deployment_id: str):
        self.address, self.port = address, port
        self.issuer = f"https://{address}:{port}"
        self.client_id, self.deployment_id = client_id, deployment_id
        self.redirect_uris: list[str] = []  # registered once the tool's URL is known
        self._certificate = certificate
        self._keys = {"platform": rsa.generate_private_key(public_exponent=65537, key_size=2048),
                      "rogue": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
        self.kid = "platform-" + secrets.token_hex(4)
        self.next_launch = Launch()
        self.issued: list[str] = []  # every id_token handed out
        self.jwks_requests = 0
        self._hints: dict[str, str] = {}  # lti_message_hint -> target_link_uri
        self._server: ThreadingHTTPServer | None = None

    # --- URLs the descriptor names ------------------------------------------------------

    @property
    def authorize_url(self) -> str:
        return f"{self.issuer}/auth"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    def jwks(self) -> dict:
        public = json.loads(RSAAlgorithm.to_jwk(self._keys["platform"].public_key()))
        return {"keys": [{**public, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    # --- the launch ---------------------------------------------------------------------

    def login_initiation(self, *, login_hint: str, target_link_uri: str) -> dict[str, str]:
        """Fields of the third-party login request the platform sends the tool (step 1)."""
        message_hint = uuid.uuid4().hex
        self._hints[message_hint] = target_link_uri
        return {"iss": self.issuer, "login_hint": login_hint, "target_link_uri": target_link_uri,
                "lti_message_hint": message_hint, "client_id": self.client_id,
                "lti_deployment_id": self.deployment_id}

    def id_token(self, *, login_hint: str, nonce: str, target_link_uri: str) -> str:
        launch, self.next_launch = self.next_launch, Launch()
        now = int(time.time())
        claims = {
            "iss": self.issuer, "aud": self.client_id, "sub": login_hint, "iat": now, "exp": now + 300,
            "nonce": nonce, "name": f"Student {login_hint}", "email": f"{login_hint}@students.example.edu",
            LTI + "message_type": "LtiResourceLinkRequest", LTI + "version": "1.3.0",
            LTI + "deployment_id": self.deployment_id, LTI + "target_link_uri": target_link_uri,
            LTI + "resource_link": {"id": "resource-link-1", "title": "Week 1 notebook"},
            LTI + "roles": ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"],
            LTI + "context": {"id": "course-1", "label": "STATS101", "title": "Statistics 101"},
        }
        claims.update(launch.claims)
        token = jwt.encode({k: v for k, v in claims.items() if v is not None}, self._keys[launch.sign_with],
                           algorithm="RS256", headers={"kid": launch.kid or self.kid})
        self.issued.append(token)
        return token

    def authenticate(self, params: dict[str, str]) -> tuple[int, str]:
        """The OIDC authentication request (step 2): an auto-submitting form back to the tool, or an error."""
        expected = {"response_type": "id_token", "scope": "openid", "response_mode": "form_post", "prompt": "none",
                    "client_id": self.client_id}
        wrong = [k for k, v in expected.items() if params.get(k) != v]
        if wrong or params.get("redirect_uri") not in self.redirect_uris:
            return 400, f"bad authentication request: {', '.join(wrong) or 'redirect_uri not registered'}"
        target = self._hints.pop(params.get("lti_message_hint", ""), None)
        if not params.get("nonce") or not params.get("state") or target is None:
            return 400, "bad authentication request: nonce, state or a known lti_message_hint missing"
        token = self.id_token(login_hint=params["login_hint"], nonce=params["nonce"], target_link_uri=target)
        inputs = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                         for k, v in (("id_token", token), ("state", params["state"])))
        page = (f'<!doctype html><html><body onload="document.forms[0].submit()">'
                f'<form method="post" action="{escape(params["redirect_uri"])}">{inputs}</form></body></html>')
        return 200, page

    # --- serving ------------------------------------------------------------------------

    def start(self) -> "LTI13Platform":
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: str, content_type: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _params(self) -> dict[str, str]:
                query = urlsplit(self.path).query
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                return dict(parse_qsl(query + "&" + body, keep_blank_values=True))

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == "/jwks":
                    platform.jwks_requests += 1
                    self._reply(200, json.dumps(platform.jwks()), "application/json")
                elif path == "/auth":
                    self._reply(*platform.authenticate(self._params()), "text/html; charset=utf-8")
                else:
                    self._reply(404, "not found", "text/plain")

            do_POST = do_GET

            def log_message(self, format: str, *args) -> None:
                return  # quiet: pytest shows failures, not traffic

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self._certificate.certificate, self._certificate.key)
        server = ThreadingHTTPServer((self.address, self.port), Handler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, name="lti13-platform", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
