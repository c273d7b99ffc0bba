"""A small LTI 1.3 platform (the LMS's side of a launch) for the tests, over HTTPS.

It does what Moodle 4 does for a resource link: starts the OIDC third-party login at the tool,
answers the tool's authentication request with an auto-submitted form carrying an RS256
id_token, and publishes its public key at a JWKS URL. Its own RSA key signs the tokens; a second
"rogue" key, never published, makes tokens that must fail. `next_launch` bends the next id_token
(wrong issuer, audience, expiry, key...) so each refusal can be shown on the real hub; `rotate_key`
replaces the platform's key the way an LMS rotates it.

LTI Advantage services, as Moodle serves them: an OAuth 2 token endpoint that checks the tool's
signed client assertion against the tool's own keyset, Assignment and Grade Services (line items,
scores) and Names and Role Provisioning Services (the course's members, paged). `tamper` makes
the services answer what a forged or broken platform would, so the hub's handling can be seen.
"""

from __future__ import annotations

import itertools
import json
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, urlsplit

import jwt
from jwt.algorithms import RSAAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.test_ca import ServerCertificate

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
AGS = "https://purl.imsglobal.org/spec/lti-ags/"
NRPS = "https://purl.imsglobal.org/spec/lti-nrps/"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
TEACHING_ASSISTANT = "http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"
CONTEXT_ID = "course-1"
SCOPES = {AGS + "scope/lineitem", AGS + "scope/score", AGS + "scope/result.readonly",
          NRPS + "scope/contextmembership.readonly"}


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
        # LTI Advantage
        self.tool_jwks: dict | None = None  # the tool's public keyset, to check its client assertions
        self.members: list[dict] = []  # the course's roster, as NRPS lists it
        self.page_size = 2
        self.line_items: dict[str, dict] = {}  # id -> line item
        self.scores: list[dict] = []  # every score posted, with the line item it went to
        self.tokens: dict[str, set[str]] = {}  # access token -> granted scopes
        self.token_requests = 0
        self.tamper: dict[str, object] = {}  # token | lineitem_id | roster_context | scores_status: how to misbehave
        self._jtis: set[str] = set()
        self._ids = itertools.count(1)

    # --- URLs the descriptor names ------------------------------------------------------

    @property
    def authorize_url(self) -> str:
        return f"{self.issuer}/auth"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/token"

    @property
    def lineitems_url(self) -> str:
        return f"{self.issuer}/contexts/{CONTEXT_ID}/lineitems"

    @property
    def memberships_url(self) -> str:
        return f"{self.issuer}/contexts/{CONTEXT_ID}/memberships"

    def jwks(self) -> dict:
        public = json.loads(RSAAlgorithm.to_jwk(self._keys["platform"].public_key()))
        return {"keys": [{**public, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def rotate_key(self) -> None:
        """A new signing key under a new kid; the old one leaves the keyset at once."""
        self._keys["platform"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "platform-" + secrets.token_hex(4)

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
            LTI + "roles": [LEARNER],
            LTI + "context": {"id": CONTEXT_ID, "label": "STATS101", "title": "Statistics 101"},
            AGS + "claim/endpoint": {"scope": sorted(s for s in SCOPES if "/lti-ags/" in s),
                                     "lineitems": self.lineitems_url},
            NRPS + "claim/namesroleservice": {"context_memberships_url": self.memberships_url,
                                              "service_versions": ["2.0"]},
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

    # --- LTI Advantage services -------------------------------------------------------

    def issue_token(self, params: dict[str, str]) -> tuple[int, dict]:
        """The OAuth 2 token endpoint: a client assertion signed with the tool's published key."""
        self.token_requests += 1
        if params.get("grant_type") != "client_credentials" or \
                params.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return 400, {"error": "unsupported_grant_type"}
        try:
            header = jwt.get_unverified_header(params.get("client_assertion", ""))
            keys = {k["kid"]: k for k in (self.tool_jwks or {}).get("keys", [])}
            key = RSAAlgorithm.from_jwk(json.dumps(keys[header["kid"]]))
            claims = jwt.decode(params["client_assertion"], key, algorithms=["RS256"], audience=self.token_url,
                                options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]})
        except (KeyError, jwt.PyJWTError) as exc:
            return 401, {"error": "invalid_client", "error_description": type(exc).__name__}
        if claims["iss"] != self.client_id or claims["sub"] != self.client_id or claims["jti"] in self._jtis:
            return 401, {"error": "invalid_client"}
        self._jtis.add(claims["jti"])
        granted = set(params.get("scope", "").split()) & SCOPES
        token = secrets.token_urlsafe(24)
        self.tokens[token] = granted
        if self.tamper.get("token") == "no-bearer":
            return 200, {"access_token": token, "token_type": "mac", "expires_in": 3600}
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600, "scope": " ".join(granted)}

    def _granted(self, authorization: str, scope: str) -> bool:
        token = authorization[len("Bearer "):] if authorization.startswith("Bearer ") else ""
        return AGS + scope in self.tokens.get(token, set()) or NRPS + scope in self.tokens.get(token, set())

    def line_items_get(self, query: dict) -> tuple[int, object]:
        wanted = query.get("resource_id", [None])[0]
        return 200, [i for i in self.line_items.values() if wanted in (None, i.get("resourceId"))]

    def line_item_create(self, body: dict) -> tuple[int, dict]:
        number = next(self._ids)
        item = {**body, "id": f"{self.lineitems_url}/{number}"}
        if self.tamper.get("lineitem_id"):
            item["id"] = str(self.tamper["lineitem_id"]) + f"/lineitems/{number}"
        self.line_items[item["id"]] = item
        return 201, item

    def score_post(self, lineitem: str, body: dict) -> tuple[int, dict | None]:
        failing = int(self.tamper.get("scores_status_times", 0) or 0)
        if failing > 0:
            self.tamper["scores_status_times"] = failing - 1
            return int(self.tamper.get("scores_status", 503)), {"error": "try later"}
        if lineitem not in self.line_items:
            return 404, {"error": "no such line item"}
        self.scores.append({"lineitem": lineitem, **body})
        return 204, None

    def memberships(self, offset: int) -> tuple[int, dict, str | None]:
        page = self.members[offset: offset + self.page_size]
        context = str(self.tamper.get("roster_context") or CONTEXT_ID)
        body = {"id": self.memberships_url, "context": {"id": context, "label": "STATS101", "title": "Statistics 101"},
                "members": page}
        more = offset + self.page_size < len(self.members)
        return 200, body, f"{self.memberships_url}?offset={offset + self.page_size}" if more else None

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

            def _json(self, status: int, value, content_type: str = "application/json", link: str | None = None):
                data = b"" if value is None else json.dumps(value).encode()
                self.send_response(status)
                if value is not None:
                    self.send_header("Content-Type", content_type)
                if link:
                    self.send_header("Link", f'<{link}>; rel="next"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                path, query = parts.path, parse_qs(parts.query)
                auth = self.headers.get("Authorization", "")
                prefix = f"/contexts/{CONTEXT_ID}"
                if path == "/jwks":
                    platform.jwks_requests += 1
                    self._reply(200, json.dumps(platform.jwks()), "application/json")
                elif path == "/auth":
                    self._reply(*platform.authenticate(self._params()), "text/html; charset=utf-8")
                elif path == "/token" and self.command == "POST":
                    self._json(*platform.issue_token(self._params()))
                elif path == prefix + "/lineitems" and platform._granted(auth, "scope/lineitem"):
                    if self.command == "POST":
                        self._json(*platform.line_item_create(self._body()), "application/vnd.ims.lis.v2.lineitem+json")
                    else:
                        self._json(*platform.line_items_get(query), "application/vnd.ims.lis.v2.lineitemcontainer+json")
                elif path.startswith(prefix + "/lineitems/") and path.endswith("/scores") and self.command == "POST" \
                        and platform._granted(auth, "scope/score"):
                    lineitem = platform.issuer + path[: -len("/scores")]
                    self._json(*platform.score_post(lineitem, self._body()))
                elif path == prefix + "/memberships" and platform._granted(auth, "scope/contextmembership.readonly"):
                    status, body, link = platform.memberships(int(query.get("offset", ["0"])[0]))
                    self._json(status, body, "application/vnd.ims.lti-nrps.v2.membershipcontainer+json", link)
                elif path.startswith(prefix):
                    self._json(401, {"error": "a bearer token with the right scope is needed"})
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
