"""hubfleet's LTI authenticators: jupyterhub-ltiauthenticator 1.6.3 with the checks it lacks.

Installed next to jupyterhub_config.py by roles/lti and named by conf.d/auth.py. What changes
from upstream, and why (docs/authenticators.md has the long form):

LTI 1.1
- A nonce is good once per consumer, whatever timestamp it is signed with, and is remembered until
  no launch carrying it could still be accepted, on disk (hubfleet_nonces.py), so a hub restart
  does not reopen it; it is recorded only once the signature is valid: upstream keys them in a
  35-entry TTL cache by timestamp, so a launch stamped in the future could be replayed once its
  cache entry expired, and an unsigned request could burn a real launch's nonce.
- Every parameter (query and body, repeated ones too) enters the signature base string.
- The launch field that names the user must be present: upstream silently falls back to user_id,
  which would give one person two accounts when the LMS's privacy settings change.
- `custom_next` is checked like JupyterHub's own `next` (upstream redirects anywhere it says).

LTI 1.3
- The id_token must carry exp, iat, iss, aud, sub and nonce; the deployment id must be one the
  descriptor lists; a nonce is accepted once (upstream trusts a cookie the replayer also holds).
- The platform's keyset is fetched off the event loop and cached; an unknown key id refetches it once.
- A tool keyset is served at /hub/lti13/jwks (the platform asks for its URL at registration).

Both
- The hub username is hubfleet_usernames.hub_username of the identity exactly as the LMS sent it:
  readable when it can be, never merged with another identity, never the admin or the probe
  (docs/identity.md). Upstream lowercases it, so `ADMIN` became the hub's `admin`.
- Refusals are 401 (not authenticated: signature, key, time, nonce) or 403 (authenticated but
  unusable: message type, deployment, no username), with a message that names the field and
  never a secret.
- A student whose server is not running is sent through /hub/spawn, so a launch lands in a
  running JupyterLab (or the notebook the launch names) without another click.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import jwt
from jupyterhub.handlers import BaseHandler
from jupyterhub.utils import url_path_join
from ltiauthenticator.lti11.auth import LTI11Authenticator
from ltiauthenticator.lti11.handlers import LTI11AuthenticateHandler, LTI11ConfigHandler
from ltiauthenticator.lti13.auth import LTI13Authenticator
from ltiauthenticator.lti13.constants import LTI13_CUSTOM_CLAIM
from ltiauthenticator.lti13.error import ValidationError
from ltiauthenticator.lti13.handlers import (
    LTI13CallbackHandler,
    LTI13ConfigHandler,
    LTI13LoginInitHandler,
    _deserialize_state,
    _serialize_state,
    get_nonce,
)
from hubfleet_nonces import NonceStore
from hubfleet_usernames import hub_username
from ltiauthenticator.lti13.validator import LTI13LaunchValidator
from oauthlib.oauth1.rfc5849 import signature
from tornado.httputil import url_concat
from tornado.web import HTTPError
from traitlets import Dict, Int, Set, Unicode

import hubfleet_lms as lms
from hubfleet_teaching import TeachingMixin

OAUTH_REQUIRED = ("oauth_consumer_key", "oauth_signature_method", "oauth_timestamp", "oauth_nonce",
                  "oauth_signature")
LTI11_MESSAGE_TYPE = "basic-lti-launch-request"
DEPLOYMENT_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/deployment_id"
ID_TOKEN_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "nonce"]


def refuse(status: int, reason: str) -> HTTPError:
    """An HTTPError whose message is shown to the student and logged by tornado (no secrets in it)."""
    return HTTPError(status, reason.replace("%", "%%"))  # tornado %-formats log messages


def lms_user(identity: object, field: str) -> str:
    """The hub username of the identity the launch names in `field`; refused when there is none."""
    if isinstance(identity, int) and not isinstance(identity, bool):
        identity = str(identity)  # a numeric sub claim
    if not isinstance(identity, str) or not identity.strip():
        raise refuse(403, f"the launch has no {field}, so the hub cannot tell who you are: "
                          "the LMS must send it (check the tool's privacy settings)")
    return hub_username(identity)


NONCE_FILE_HELP = "SQLite file keeping launch nonces across hub restarts (in memory when empty)."


class NonceFile:
    """The authenticator's nonce store on disk (its nonce_file trait), opened at the first launch."""

    _nonce_store: NonceStore | None = None

    @property
    def nonces(self) -> NonceStore:
        if self._nonce_store is None:
            self._nonce_store = NonceStore(self.nonce_file)
        return self._nonce_store


class LaunchRedirect(BaseHandler):
    """Where a launched student goes: the asked page, through /hub/spawn when the server is down."""

    def launch_target(self, user, asked: str | None) -> str:
        asked = self._validate_next_url(asked or "")
        hub_redirect = url_path_join(self.hub.base_url, "user-redirect/")
        if not asked:
            target = user.url
        elif asked.startswith(hub_redirect):
            target = url_path_join(user.url, asked[len(hub_redirect):])
        elif asked.startswith(user.url) or asked == user.url.rstrip("/"):
            target = asked
        else:
            return asked  # a hub page: no server needed
        if user.spawner.active:
            return target
        return url_concat(url_path_join(self.hub.base_url, "spawn", user.escaped_name), {"next": target})


# --- LTI 1.1 --------------------------------------------------------------------------------


class HubfleetLTI11LaunchHandler(LaunchRedirect, LTI11AuthenticateHandler):
    def check_xsrf_cookie(self):
        """LMS launches are cross-site POSTs by design; the OAuth 1 signature protects them instead."""
        return

    async def get(self):
        # Also where a launch ends when the browser refused the hub's cookies inside the LMS page.
        raise refuse(405, "an LTI launch is a POST from the LMS: open the activity from your course page. "
                          "If you just did, your browser blocked this hub's cookies inside that page: "
                          "open the activity in a new window, or allow this site's cookies")

    async def post(self):
        user = await self.login_user()
        if user is None:
            raise refuse(403, "the launch is valid, but this user may not use the hub")
        asked = self.get_body_argument("custom_next", None) or self.get_argument("next", None)
        self.redirect(self.launch_target(user, asked))


def signed_parameters(request) -> list[tuple[str, str]]:
    """Every query and body parameter, repeated ones included, as the consumer signed them."""
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise refuse(401, "not an LTI launch: the body must be a form (application/x-www-form-urlencoded)")
    try:
        return signature.collect_parameters(uri_query=request.query, body=request.body.decode("utf-8"),
                                            exclude_oauth_signature=False)
    except (ValueError, UnicodeDecodeError):
        raise refuse(401, "not an LTI launch: the form is not valid URL-encoded text") from None


class HubfleetLTI11Authenticator(TeachingMixin, NonceFile, LTI11Authenticator):
    """LTI 1.1 launches signed with HMAC-SHA1 by edX, Moodle and other consumers."""

    username_key = Unicode("user_id", config=True, help="Launch field that names the user.")
    nonce_file = Unicode("", config=True, help=NONCE_FILE_HELP)
    timestamp_window = Int(
        300, config=True,
        help="Seconds a launch's oauth_timestamp may differ from the hub's clock (LMS clocks drift).",
    )

    def get_handlers(self, app):
        return [("/lti/launch", HubfleetLTI11LaunchHandler), ("/lti11/config", LTI11ConfigHandler),
                *self.teaching_handlers()]

    async def authenticate(self, handler, data=None):
        request = handler.request
        params = signed_parameters(request)
        args: dict[str, str] = {}
        for key, value in params:
            args.setdefault(key, value)
        for name in OAUTH_REQUIRED:
            if not args.get(name):
                raise refuse(401, f"not a signed LTI launch: {name} is missing")
        if args["oauth_signature_method"] != "HMAC-SHA1":
            raise refuse(401, "oauth_signature_method must be HMAC-SHA1")
        secret = self.consumers.get(args["oauth_consumer_key"])
        if secret is None:
            raise refuse(401, "unknown oauth_consumer_key: check the key entered in the LMS")
        try:
            stamp = int(args["oauth_timestamp"])
        except ValueError:
            raise refuse(401, "oauth_timestamp is not a number of seconds") from None
        skew = int(time.time()) - stamp
        if abs(skew) > self.timestamp_window:
            raise refuse(401, f"oauth_timestamp is {abs(skew)} s {'old' if skew > 0 else 'in the future'} "
                              f"(more than {self.timestamp_window} s): a replayed launch or a wrong clock")
        launch_url = f"{self.get_uri_scheme(request)}://{request.host}{request.path}"
        base_string = signature.signature_base_string(
            "POST", signature.base_string_uri(launch_url),
            signature.normalize_parameters([(k, v) for k, v in params if k != "oauth_signature"]))
        expected = signature.sign_hmac_sha1(base_string, secret, "")
        if not hmac.compare_digest(expected.encode(), args["oauth_signature"].encode()):
            raise refuse(401, "oauth_signature does not match: a wrong consumer secret, or the launch "
                              "was changed on the way")
        # Keyed without the timestamp: a nonce is good once for as long as any launch carrying it could
        # be accepted, so re-signing it one second later (or a slow first launch) does not reopen it.
        nonce_key = "\0".join(("1.1", args["oauth_consumer_key"], args["oauth_nonce"]))
        if self.nonces.seen_before(nonce_key, time.time() + 2 * self.timestamp_window + 1):
            raise refuse(401, "oauth_nonce was already used: a replayed launch")
        if args.get("lti_message_type") != LTI11_MESSAGE_TYPE:
            raise refuse(403, f"lti_message_type must be {LTI11_MESSAGE_TYPE}")
        username = lms_user(args.get(self.username_key), self.username_key)
        group = self.group_of(args.get("roles"))
        return self.teaching_model(username, {k: v for k, v in args.items() if not k.startswith("oauth_")}, group,
                                   lms.launch_from_lti11(username, args, group))


# --- LTI 1.3 --------------------------------------------------------------------------------


class HubfleetLTI13LoginInitHandler(LTI13LoginInitHandler):
    def post(self):
        """OIDC third-party login: only the configured platform and client may start one."""
        auth = self.authenticator
        if self.get_argument("iss", "") != auth.issuer:
            raise refuse(403, "login initiation from an unknown platform (iss): check the issuer in the descriptor")
        client_id = self.get_argument("client_id", "")
        if client_id and client_id not in auth.client_id:
            raise refuse(403, "login initiation for an unknown client_id")
        if not self.get_argument("login_hint", "") or not self.get_argument("target_link_uri", ""):
            raise refuse(400, "login initiation needs login_hint and target_link_uri")
        self.authorize_redirect(
            redirect_uri=self.get_redirect_uri(),
            login_hint=self.get_argument("login_hint"),
            nonce=self.generate_nonce(),
            client_id=client_id or sorted(auth.client_id)[0],
            state=self.generate_state(),
            lti_message_hint=self.get_argument("lti_message_hint", None),
        )

    get = post

    def get_state(self):
        """The launch's target (path and query of target_link_uri) travels in the OAuth state.

        Upstream searches the URL for the text "next", which misses /hub/user-redirect/lab/tree/next.ipynb.
        """
        if self._state is None:
            target = urlsplit(self.get_argument("next", "") or self.get_argument("target_link_uri", ""))
            next_url = urlunsplit(("", "", "/" + target.path.lstrip("/"), target.query, ""))
            self._state = _serialize_state({"state_id": uuid.uuid4().hex, "next_url": next_url})
        return self._state


class HubfleetLTI13CallbackHandler(LaunchRedirect, LTI13CallbackHandler):
    def check_xsrf_cookie(self):
        """The platform POSTs the id_token cross-site; state and nonce protect the callback instead."""
        return

    async def post(self):
        claims = await self.verified_id_token()
        user = await self.login_user(claims)
        if user is None:
            raise refuse(403, "the launch is valid, but this user may not use the hub")
        self.redirect(self.launch_target(user, self.get_next_url_from_state()))

    def get_next_url_from_state(self) -> str | None:
        return _deserialize_state(self.get_argument("state", "")).get("next_url")

    async def verified_id_token(self) -> dict:
        auth = self.authenticator
        token = self.get_body_argument("id_token", "")
        state = self.get_body_argument("state", "")
        if not token or not state:
            raise refuse(401, "not an LTI 1.3 launch: id_token and state are required")
        cookie_state = self._get_state_cookie()
        if not cookie_state or not hmac.compare_digest(cookie_state.encode(), state.encode()):
            raise refuse(403, "state does not match this browser's login: start again from the LMS")
        nonce_state = self._get_nonce_state_cookie()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise refuse(401, "id_token is not a JWT") from None
        if header.get("alg") not in auth.jwks_algorithms:
            raise refuse(401, f"id_token is signed with {header.get('alg')!s:.20}, not {', '.join(auth.jwks_algorithms)}")
        key = await auth.signing_key(token)
        try:
            claims = jwt.decode(token, key, algorithms=list(auth.jwks_algorithms), audience=sorted(auth.client_id),
                                issuer=auth.issuer, leeway=auth.time_leeway,
                                options={"require": ID_TOKEN_REQUIRED_CLAIMS})
        except jwt.ExpiredSignatureError:
            raise refuse(401, "id_token has expired: start again from the LMS") from None
        except jwt.InvalidIssuerError:
            raise refuse(401, "id_token comes from another issuer (iss) than the descriptor's") from None
        except jwt.InvalidAudienceError:
            raise refuse(401, "id_token is meant for another client id (aud)") from None
        except jwt.InvalidSignatureError:
            raise refuse(401, "id_token signature does not verify against the platform's keyset") from None
        except jwt.MissingRequiredClaimError as exc:
            raise refuse(401, f"id_token has no {exc.claim} claim") from None
        except jwt.PyJWTError as exc:
            raise refuse(401, f"id_token is not valid ({type(exc).__name__})") from None
        try:
            validator = LTI13LaunchValidator(parent=self.app)
            validator.validate_id_token(claims)
            validator.validate_azp_claim(claims, auth.client_id)
        except ValidationError as exc:
            raise refuse(403, f"not a usable LTI 1.3 launch: {exc}") from None
        if auth.deployment_ids and claims.get(DEPLOYMENT_CLAIM) not in auth.deployment_ids:
            raise refuse(403, "unknown deployment_id: add it to the descriptor's deployment_ids")
        if not nonce_state or not hmac.compare_digest(get_nonce(nonce_state).encode(), str(claims["nonce"]).encode()):
            raise refuse(401, "nonce does not match this browser's login: start again from the LMS")
        nonce_key = "\0".join(("1.3", str(claims["nonce"])))
        if auth.nonces.seen_before(nonce_key, float(claims["exp"]) + auth.time_leeway + 1):
            raise refuse(401, "nonce was already used: a replayed launch")
        return claims


class HubfleetLTI13KeysetHandler(BaseHandler):
    """The tool's public keyset, for the platform's registration form."""

    def get(self):
        self.set_header("Content-Type", "application/json")
        self.write(self.authenticator.tool_jwks)


class HubfleetLTI13Authenticator(TeachingMixin, NonceFile, LTI13Authenticator):
    """LTI 1.3 launches: OIDC login initiation, then an RS256 id_token checked against the platform's JWKS."""

    login_handler = HubfleetLTI13LoginInitHandler
    callback_handler = HubfleetLTI13CallbackHandler
    config_handler = LTI13ConfigHandler

    username_key = Unicode("sub", config=True, help="id_token claim (or custom_NAME) that names the user.")
    deployment_ids = Set(Unicode(), config=True, help="Accepted deployment ids; any when empty.")
    nonce_file = Unicode("", config=True, help=NONCE_FILE_HELP)
    time_leeway = Int(30, config=True, help="Seconds of clock drift allowed on exp, iat and nbf.")
    jwks_cache_seconds = Int(300, config=True, help="How long the platform's keyset is cached.")
    ca_bundle = Unicode("/etc/ssl/certs/ca-certificates.crt", config=True,
                        help="The host's one trust store, which the platform's certificate must chain to.")
    tool_jwks = Dict(config=True, help="The tool's public keyset, served at /hub/lti13/jwks.")

    _platform_keys: lms.PlatformKeys | None = None

    def get_handlers(self, app):
        return [*super().get_handlers(app), ("/lti13/jwks", HubfleetLTI13KeysetHandler), *self.teaching_handlers()]

    async def signing_key(self, token: str):
        """The platform's key for this token, from its JWKS (fetched in a thread, cached; fetched again at
        once for a key id it lacks, so a launch right after the platform rotates its key is accepted)."""
        if self._platform_keys is None:
            self._platform_keys = lms.PlatformKeys(self.jwks_endpoint, verify=self.ca_bundle,
                                                   lifespan=self.jwks_cache_seconds)
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            return await asyncio.to_thread(self._platform_keys.signing_key, kid)
        except jwt.PyJWTError:
            raise refuse(401, "id_token header cannot be read") from None
        except lms.UnknownKey:
            raise refuse(401, "id_token is signed with a key (kid) the platform's keyset does not have") from None
        except lms.LmsError as exc:
            self.log.error("cannot fetch the platform's keyset from %s: %s", self.jwks_endpoint, exc.message)
            raise refuse(503, "the hub cannot reach the platform's keyset (JWKS) right now: try again") from None

    async def authenticate(self, handler, data=None):
        claims = data or {}
        source, key = claims, self.username_key
        if key.startswith("custom_"):
            source, key = claims.get(LTI13_CUSTOM_CLAIM) or {}, key[len("custom_"):]
        username = lms_user(source.get(key), self.username_key)
        group = self.group_of(claims.get(lms.LTI_CLAIM + "roles"))
        return self.teaching_model(username, claims, group, lms.launch_from_lti13(username, claims, group))
