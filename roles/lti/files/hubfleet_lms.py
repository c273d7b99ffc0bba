"""hubfleet's side of the LMS services: roles, the platform's keys, grades and rosters.

Installed beside hubfleet_lti.py by roles/lti. The LTI authenticators use it for what a launch
says (which hub group the person's LMS roles make them, the platform's signing keys, the grade
and roster endpoints to remember); the grades service (roles/grading) uses it to send scores
(LTI 1.3 Assignment and Grade Services, LTI 1.1 Basic Outcomes) and read the class list (LTI 1.3
Names and Role Provisioning Services). It needs only requests, PyJWT, cryptography and oauthlib.

Nothing a platform answers is trusted beyond what it proves: URLs it hands back must stay on the
origin the signed launch named (a bearer token or a student's score never goes elsewhere), an
Outcomes response must answer our own message (and carry a valid signature when it is signed),
a token must be a bearer token with the scopes asked for, a roster must be for the launch's course.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from xml.etree import ElementTree

import jwt
import requests

LIS_V2 = "http://purl.imsglobal.org/vocab/lis/v2/"
LTI_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
AGS_SCOPE_LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
AGS_SCOPE_SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
LINEITEM_TYPE = "application/vnd.ims.lis.v2.lineitem+json"
LINEITEMS_TYPE = "application/vnd.ims.lis.v2.lineitemcontainer+json"
SCORE_TYPE = "application/vnd.ims.lis.v1.score+json"
NRPS_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
POX_NS = "http://www.imsglobal.org/services/ltiv1p1/xsd/imsoms_v1p0"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_PAGES = 200


class LmsError(Exception):
    """The LMS could not be used, said so, or answered something the hub will not trust.

    `transient` errors (unreachable, 429, 5xx) are worth retrying; the others need a person.
    """

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.message = message
        self.transient = transient


# --- roles ---------------------------------------------------------------------------------


def parse_role(role: str) -> tuple[str, tuple[str, ...]]:
    """(where, names) of one LIS role: where is course, institution, system or other.

    names holds the role and, for a sub-role, its principal role after it: membership/Instructor#
    TeachingAssistant gives ("TeachingAssistant", "Instructor"). LTI 1.3 sends full URIs, LTI 1.1
    short names ("Instructor") or URNs (urn:lti:role:ims/lis/Learner, urn:lti:sysrole:...).
    """
    text = role.strip()
    if text.startswith(LIS_V2):
        path, _, name = text[len(LIS_V2):].partition("#")
        parts = [p for p in path.split("/") if p]
        if not parts or not name:
            return "other", (name or path,)
        if parts[0] == "membership":
            return "course", (name, *parts[1:2])
        if parts[0] in ("institution", "system"):
            return parts[0], (name,)
        return "other", (name,)
    if text.startswith("urn:lti:"):
        kind, _, path = text[len("urn:lti:"):].partition(":")
        parts = [p for p in path.split("/") if p][2:]  # after ims/lis
        where = {"role": "course", "instrole": "institution", "sysrole": "system"}.get(kind, "other")
        return where, tuple(reversed(parts)) or ("",)
    return "course", (text,)  # LTI 1.1 short names are roles in the course


def split_roles(roles: str | Iterable[str] | None) -> list[str]:
    """LTI 1.1 sends one comma-separated string, LTI 1.3 a list."""
    if roles is None:
        return []
    if isinstance(roles, str):
        return [r for r in (part.strip() for part in roles.split(",")) if r]
    return [str(r).strip() for r in roles if str(r).strip()]


def group_for(roles: str | Iterable[str] | None, table: list, default: str) -> str:
    """The hub group a person's LMS roles make them: the first group of `table` any role matches.

    table is [[group, {where: [role names]}], ...] in precedence order (teachers before students).
    """
    parsed = [parse_role(r) for r in split_roles(roles)]
    for group, places in table:
        for where, names in places.items():
            wanted = {n.casefold() for n in names}
            if any(w == where and any(n.casefold() in wanted for n in found) for w, found in parsed):
                return group
    return default


# --- the platform's signing keys (LTI 1.3) ---------------------------------------------------


class UnknownKey(LmsError):
    pass


class PlatformKeys:
    """The platform's public keys from its JWKS URL: cached, and fetched again for a key id it lacks.

    A platform rotating its key signs the next launch with a kid the cache has never seen: the keyset
    is fetched again (not after a 30 s cooldown), at most once per `refetch_interval` (a request waits
    out the rest of it), and requests waiting together share one fetch, so tokens with made-up kids
    cannot make the hub hammer the platform. A kid missing from a keyset fetched after the request
    arrived is unknown for sure. Keys the platform drops stop working when the cache expires
    (`lifespan`) or at the next fetch.
    """

    def __init__(self, url: str, *, verify: bool | str = True, lifespan: float = 300, refetch_interval: float = 1.0,
                 timeout: float = 10, session: requests.Session | None = None):
        self.url = url
        self.verify = verify
        self.lifespan = lifespan
        self.refetch_interval = refetch_interval
        self.timeout = timeout
        self.session = session or requests.Session()
        self.fetches = 0
        self._keys: dict[str | None, object] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def _fetch(self) -> None:
        try:
            response = self.session.get(self.url, timeout=self.timeout, verify=self.verify,
                                        headers={"Accept": "application/json"}, allow_redirects=False)
        except requests.RequestException as exc:
            raise LmsError(f"the platform's keyset at {self.url} cannot be reached ({type(exc).__name__})",
                           transient=True) from None
        self.fetches += 1
        if response.status_code != 200:
            raise LmsError(f"the platform's keyset answered {response.status_code}", transient=response.status_code >= 500)
        try:
            keyset = jwt.PyJWKSet.from_dict(response.json())
        except (ValueError, jwt.PyJWTError):
            raise LmsError("the platform's keyset is not a JSON Web Key Set with a usable key") from None
        self._keys = {key.key_id: key.key for key in keyset.keys
                      if key.public_key_use in (None, "sig")}
        self._fetched_at = time.monotonic()

    def signing_key(self, kid: str | None):
        """The public key for kid; UnknownKey when the platform's current keyset does not have it."""
        arrived = time.monotonic()
        with self._lock:
            if time.monotonic() - self._fetched_at > self.lifespan:
                self._fetch()
            key = self._pick(kid)
            if key is None and self._fetched_at < arrived:  # a keyset older than this request: look again
                wait = self.refetch_interval - (time.monotonic() - self._fetched_at)
                if wait > 0:
                    time.sleep(wait)  # at most one fetch per interval, whoever asks
                self._fetch()  # a key id we have not seen: the platform may just have rotated its key
                key = self._pick(kid)
            if key is None:
                raise UnknownKey("the id_token is signed with a key (kid) the platform's keyset does not have")
            return key

    def _pick(self, kid: str | None):
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)


# --- the tool's access token (LTI 1.3 services) ---------------------------------------------


def tool_kid(private_pem: str) -> str:
    """The tool key's id as hubfleet publishes it at /hub/lti13/jwks (first 16 hex of the SPKI's sha256)."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def same_origin(url: str, reference: str) -> bool:
    a, b = urlsplit(url), urlsplit(reference)
    return (a.scheme.lower(), (a.hostname or "").lower(), a.port) == (b.scheme.lower(), (b.hostname or "").lower(),
                                                                       b.port) and a.scheme in ("https", "http")


def _describe(response: requests.Response) -> str:
    text = " ".join(response.text.split())[:160]
    return f"{response.status_code} {text}".strip()


def _check_status(response: requests.Response, what: str, ok=(200,)) -> None:
    if response.status_code in ok:
        return
    transient = response.status_code == 429 or response.status_code >= 500
    raise LmsError(f"{what} answered {_describe(response)}", transient=transient)


class ToolToken:
    """OAuth 2 client credentials with a JWT signed by the tool's key (LTI 1.3 Security Framework)."""

    def __init__(self, *, client_id: str, token_url: str, private_pem: str, audience: str | None = None,
                 verify: bool | str = True, timeout: float = 30, session: requests.Session | None = None):
        self.client_id = client_id
        self.token_url = token_url
        self.audience = audience or token_url
        self.private_pem = private_pem
        self.kid = tool_kid(private_pem)
        self.verify = verify
        self.timeout = timeout
        self.session = session or requests.Session()
        self._cache: dict[tuple[str, ...], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def assertion(self) -> str:
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.audience, "iat": now, "exp": now + 300,
                  "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self.private_pem, algorithm="RS256", headers={"kid": self.kid})

    def get(self, scopes: Iterable[str]) -> str:
        wanted = tuple(sorted(set(scopes)))
        with self._lock:
            cached = self._cache.get(wanted)
            if cached and cached[1] > time.time() + 60:
                return cached[0]
            try:
                response = self.session.post(self.token_url, timeout=self.timeout, verify=self.verify,
                                             allow_redirects=False,
                                             data={"grant_type": "client_credentials", "client_assertion_type":
                                                   ASSERTION_TYPE, "client_assertion": self.assertion(),
                                                   "scope": " ".join(wanted)})
            except requests.RequestException as exc:
                raise LmsError(f"the platform's token URL cannot be reached ({type(exc).__name__})",
                               transient=True) from None
            _check_status(response, "the platform's token URL")
            try:
                body = response.json()
            except ValueError:
                raise LmsError("the platform's token URL answered something that is not JSON") from None
            token = body.get("access_token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token or str(body.get("token_type", "")).lower() != "bearer":
                raise LmsError("the platform's token response has no bearer access_token")
            granted = body.get("scope")
            if isinstance(granted, str) and not set(wanted) <= set(granted.split()):
                missing = sorted(set(wanted) - set(granted.split()))
                raise LmsError(f"the platform did not grant {', '.join(missing)}: enable the tool's grade and "
                               "roster services in the LMS")
            try:
                lifetime = max(60, min(int(body.get("expires_in", 3600)), 86400))
            except (TypeError, ValueError):
                lifetime = 3600
            self._cache[wanted] = (token, time.time() + lifetime)
            return token


# --- Assignment and Grade Services (LTI 1.3) -----------------------------------------------


def scores_url(lineitem: str) -> str:
    """A line item's scores endpoint: its path + /scores, its query kept (AGS 2.0 §3.4)."""
    parts = urlsplit(lineitem)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/scores", parts.query, ""))


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def next_link(response: requests.Response) -> str | None:
    for part in response.headers.get("Link", "").split(","):
        match = re.match(r'\s*<([^>]+)>\s*;(.*)', part)
        if match and re.search(r'rel\s*=\s*"?next"?', match.group(2)):
            return match.group(1)
    return None


class Ags:
    """Line items and scores on the platform, with the tool's token."""

    def __init__(self, token: ToolToken, *, timeout: float = 30):
        self.token = token
        self.timeout = timeout

    def _call(self, method: str, url: str, scopes: tuple[str, ...], what: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token.get(scopes)}", **kwargs.pop("headers", {})}
        try:
            return self.token.session.request(method, url, headers=headers, timeout=self.timeout,
                                              verify=self.token.verify, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise LmsError(f"{what} cannot be reached ({type(exc).__name__})", transient=True) from None

    def line_item(self, lineitems_url: str, *, resource_id: str, label: str, score_maximum: float) -> str:
        """The URL of the line item for resource_id, made when the platform has none."""
        url: str | None = with_query(lineitems_url, resource_id=resource_id)
        for _ in range(MAX_PAGES):
            if url is None:
                break
            response = self._call("GET", url, (AGS_SCOPE_LINEITEM,), "the platform's line items",
                                  headers={"Accept": LINEITEMS_TYPE})
            _check_status(response, "the platform's line items")
            try:
                items = response.json()
            except ValueError:
                raise LmsError("the platform's line items are not JSON") from None
            if not isinstance(items, list):
                raise LmsError("the platform's line items are not a list")
            for item in items:
                if isinstance(item, dict) and item.get("resourceId") == resource_id:
                    return self._checked_id(item, lineitems_url)
            url = next_link(response)
            if url is not None and not same_origin(url, lineitems_url):
                raise LmsError("the platform's line items point to another site for their next page: not followed")
        response = self._call("POST", lineitems_url, (AGS_SCOPE_LINEITEM,), "the platform's line items",
                              headers={"Content-Type": LINEITEM_TYPE, "Accept": LINEITEM_TYPE},
                              data=json.dumps({"scoreMaximum": score_maximum, "label": label,
                                               "resourceId": resource_id, "tag": "hubfleet"}))
        _check_status(response, "creating a line item", ok=(200, 201))
        try:
            return self._checked_id(response.json(), lineitems_url)
        except ValueError:
            raise LmsError("the platform's new line item is not JSON") from None

    @staticmethod
    def _checked_id(item, lineitems_url: str) -> str:
        item_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(item_id, str) or not same_origin(item_id, lineitems_url):
            raise LmsError("the platform's line item lives on another site than its line items: scores are not "
                           "sent there")
        return item_id

    def post_score(self, lineitem: str, *, user_id: str, score: float, maximum: float,
                   timestamp: dt.datetime | None = None) -> None:
        stamp = (timestamp or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="milliseconds")
        payload = {"userId": user_id, "scoreGiven": score, "scoreMaximum": maximum, "activityProgress": "Completed",
                   "gradingProgress": "FullyGraded", "timestamp": stamp}
        response = self._call("POST", scores_url(lineitem), (AGS_SCOPE_SCORE,), "the platform's scores",
                              headers={"Content-Type": SCORE_TYPE}, data=json.dumps(payload))
        _check_status(response, "posting a score", ok=(200, 201, 202, 204))


# --- Names and Role Provisioning Services (LTI 1.3) ----------------------------------------


class Nrps:
    """The course's members as the platform lists them."""

    def __init__(self, token: ToolToken, *, timeout: float = 30):
        self.token = token
        self.timeout = timeout

    def members(self, memberships_url: str, *, context_id: str | None) -> list[dict]:
        found: list[dict] = []
        url: str | None = memberships_url
        for _ in range(MAX_PAGES):
            if url is None:
                return found
            try:
                response = self.token.session.get(
                    url, timeout=self.timeout, verify=self.token.verify, allow_redirects=False,
                    headers={"Authorization": f"Bearer {self.token.get((NRPS_SCOPE,))}", "Accept": NRPS_TYPE})
            except requests.RequestException as exc:
                raise LmsError(f"the platform's roster cannot be reached ({type(exc).__name__})",
                               transient=True) from None
            _check_status(response, "the platform's roster")
            try:
                body = response.json()
            except ValueError:
                raise LmsError("the platform's roster is not JSON") from None
            members = body.get("members") if isinstance(body, dict) else None
            if not isinstance(members, list):
                raise LmsError("the platform's roster has no list of members")
            listed = (body.get("context") or {}).get("id") if isinstance(body.get("context"), dict) else None
            if context_id is not None and listed is not None and str(listed) != str(context_id):
                raise LmsError("the platform's roster is for another course than the launch's: not used")
            for member in members:
                if isinstance(member, dict) and isinstance(member.get("user_id"), str) and member["user_id"]:
                    if str(member.get("status", "Active")).lower() == "active":
                        found.append(member)
            url = next_link(response)
            if url is not None and not same_origin(url, memberships_url):
                raise LmsError("the platform's roster points to another site for its next page: not followed")
        raise LmsError(f"the platform's roster has more than {MAX_PAGES} pages")


# --- Basic Outcomes (LTI 1.1, edX and Moodle) ------------------------------------------------


def outcome_request(message_id: str, sourcedid: str, score: float) -> str:
    """A replaceResult POX request (LTI 1.1 Basic Outcomes): score normalised to 0.0-1.0."""
    from xml.sax.saxutils import escape

    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<imsx_POXEnvelopeRequest xmlns="{POX_NS}">'
            '<imsx_POXHeader><imsx_POXRequestHeaderInfo><imsx_version>V1.0</imsx_version>'
            f'<imsx_messageIdentifier>{escape(message_id)}</imsx_messageIdentifier>'
            '</imsx_POXRequestHeaderInfo></imsx_POXHeader>'
            '<imsx_POXBody><replaceResultRequest><resultRecord>'
            f'<sourcedGUID><sourcedId>{escape(sourcedid)}</sourcedId></sourcedGUID>'
            f'<result><resultScore><language>en</language><textString>{score:.4f}</textString></resultScore></result>'
            '</resultRecord></replaceResultRequest></imsx_POXBody></imsx_POXEnvelopeRequest>')


def _oauth_params(header: str) -> dict[str, str]:
    from oauthlib.oauth1.rfc5849 import utils

    try:
        return {k: utils.unescape(v) for k, v in utils.parse_authorization_header(header)}
    except ValueError:
        raise LmsError("the grade response's Authorization header is not an OAuth signature: not trusted") from None


def verify_oauth_body(method: str, url: str, headers: dict, body: bytes, key: str, secret: str) -> None:
    """A message signed with OAuth 1 HMAC-SHA1 and oauth_body_hash: raises LmsError unless it verifies."""
    from oauthlib.oauth1.rfc5849 import signature

    params = _oauth_params(headers.get("Authorization", ""))
    if params.get("oauth_consumer_key") != key or params.get("oauth_signature_method") != "HMAC-SHA1":
        raise LmsError("the grade response is signed for another consumer key or method: not trusted")
    expected_hash = base64.b64encode(hashlib.sha1(body).digest()).decode()
    if not hmac.compare_digest(params.get("oauth_body_hash", ""), expected_hash):
        raise LmsError("the grade response's body does not match its signed hash: tampered, not trusted")
    pairs = [(k, v) for k, v in params.items() if k not in ("oauth_signature", "realm")]
    pairs += parse_qsl(urlsplit(url).query, keep_blank_values=True)  # the URL's query is signed too
    base = signature.signature_base_string(method, signature.base_string_uri(url),
                                           signature.normalize_parameters(pairs))
    if not hmac.compare_digest(signature.sign_hmac_sha1(base, secret, ""), params.get("oauth_signature", "")):
        raise LmsError("the grade response's signature does not verify: tampered, not trusted")


def parse_outcome_response(body: bytes, message_id: str) -> None:
    """Raise LmsError unless body is a success answer to our message message_id."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise LmsError("the grade response declares a DTD or entities: not parsed")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise LmsError("the grade response is not XML") from None
    ns = {"x": POX_NS}
    info = root.find("x:imsx_POXHeader/x:imsx_POXResponseHeaderInfo", ns)
    if info is None:
        raise LmsError("the grade response is not an LTI outcomes response")
    major = (info.findtext("x:imsx_statusInfo/x:imsx_codeMajor", "", ns) or "").strip()
    ref = (info.findtext("x:imsx_statusInfo/x:imsx_messageRefIdentifier", "", ns) or "").strip()
    if ref != message_id:
        raise LmsError("the grade response answers another message than ours: forged or mixed up, not trusted")
    if major != "success":
        detail = (info.findtext("x:imsx_statusInfo/x:imsx_description", "", ns) or "").strip()[:160]
        raise LmsError(f"the LMS refused the grade ({major or 'no status'}{': ' + detail if detail else ''})")


class Outcomes:
    """LTI 1.1 Basic Outcomes: replaceResult, signed with the consumer's key and secret."""

    def __init__(self, consumer_key: str, secret: str, *, verify: bool | str = True, timeout: float = 30,
                 session: requests.Session | None = None):
        self.key, self.secret = consumer_key, secret
        self.verify = verify
        self.timeout = timeout
        self.session = session or requests.Session()

    def replace_result(self, url: str, sourcedid: str, score: float) -> None:
        from oauthlib.oauth1 import SIGNATURE_HMAC, SIGNATURE_TYPE_AUTH_HEADER, Client

        if not 0.0 <= score <= 1.0:
            raise LmsError(f"a Basic Outcomes score is between 0 and 1, not {score}")
        message_id = uuid.uuid4().hex
        body = outcome_request(message_id, sourcedid, score)
        client = Client(self.key, client_secret=self.secret, signature_method=SIGNATURE_HMAC,
                        signature_type=SIGNATURE_TYPE_AUTH_HEADER)
        signed_url, headers, signed_body = client.sign(url, http_method="POST", body=body,
                                                       headers={"Content-Type": "application/xml"})
        try:
            response = self.session.post(signed_url, data=signed_body.encode(), headers=headers, timeout=self.timeout,
                                         verify=self.verify, allow_redirects=False)
        except requests.RequestException as exc:
            raise LmsError(f"the LMS's outcome service cannot be reached ({type(exc).__name__})",
                           transient=True) from None
        _check_status(response, "the LMS's outcome service")
        if response.headers.get("Authorization", "").startswith("OAuth "):
            verify_oauth_body("POST", url, dict(response.headers), response.content, self.key, self.secret)
        parse_outcome_response(response.content, message_id)


# --- what launches said, and every grade posted -----------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS launches (
    username TEXT NOT NULL, resource_link TEXT NOT NULL, context_id TEXT, assignment TEXT,
    lms_user_id TEXT, grade_group TEXT, roles TEXT, outcome_url TEXT, sourcedid TEXT,
    lineitems TEXT, lineitem TEXT, memberships TEXT, at REAL NOT NULL,
    PRIMARY KEY (username, resource_link));
CREATE TABLE IF NOT EXISTS members (
    username TEXT PRIMARY KEY, lms_user_id TEXT NOT NULL, grade_group TEXT NOT NULL, name TEXT,
    given_name TEXT, family_name TEXT, email TEXT, source TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS postings (
    assignment TEXT NOT NULL, username TEXT NOT NULL, target TEXT, score REAL, maximum REAL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, error TEXT, sent_at REAL, at REAL NOT NULL,
    PRIMARY KEY (assignment, username));
CREATE TABLE IF NOT EXISTS roster_syncs (
    at REAL NOT NULL, url TEXT, members INTEGER, students INTEGER, error TEXT);
"""


@dataclass
class Launch:
    username: str
    resource_link: str
    context_id: str | None = None
    assignment: str | None = None
    lms_user_id: str | None = None
    grade_group: str | None = None
    roles: str | None = None
    outcome_url: str | None = None
    sourcedid: str | None = None
    lineitems: str | None = None
    lineitem: str | None = None
    memberships: str | None = None
    at: float = field(default_factory=time.time)


def launch_from_lti11(username: str, args: dict[str, str], group: str) -> Launch:
    """What an LTI 1.1 launch tells the grades service (the outcome service and this person's result id)."""
    return Launch(username=username, resource_link=args.get("resource_link_id") or "", context_id=args.get("context_id"),
                  assignment=args.get("custom_assignment") or None, lms_user_id=args.get("user_id"),
                  grade_group=group, roles=args.get("roles"), outcome_url=args.get("lis_outcome_service_url") or None,
                  sourcedid=args.get("lis_result_sourcedid") or None)


def launch_from_lti13(username: str, claims: dict, group: str) -> Launch:
    """What an LTI 1.3 launch tells the grades service (the AGS and NRPS endpoints, the platform's user id)."""
    ags = claims.get(AGS_CLAIM) if isinstance(claims.get(AGS_CLAIM), dict) else {}
    nrps = claims.get(NRPS_CLAIM) if isinstance(claims.get(NRPS_CLAIM), dict) else {}
    custom = claims.get(LTI_CLAIM + "custom") if isinstance(claims.get(LTI_CLAIM + "custom"), dict) else {}
    link = claims.get(LTI_CLAIM + "resource_link") if isinstance(claims.get(LTI_CLAIM + "resource_link"), dict) else {}
    context = claims.get(LTI_CLAIM + "context") if isinstance(claims.get(LTI_CLAIM + "context"), dict) else {}
    roles = claims.get(LTI_CLAIM + "roles")
    return Launch(username=username, resource_link=str(link.get("id") or ""), context_id=context.get("id"),
                  assignment=custom.get("assignment") or None, lms_user_id=str(claims.get("sub") or "") or None,
                  grade_group=group, roles=",".join(split_roles(roles)),
                  lineitems=_str_or_none(ags.get("lineitems")), lineitem=_str_or_none(ags.get("lineitem")),
                  memberships=_str_or_none(nrps.get("context_memberships_url")))


def _str_or_none(value) -> str | None:
    return value if isinstance(value, str) and value else None


class LmsBook:
    """The hub's record of launches, of the roster and of every grade posting (one SQLite file)."""

    def __init__(self, path: str):
        self.path = path
        with self._db() as db:
            db.executescript(SCHEMA)

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            with db:
                yield db
        finally:
            db.close()

    # launches
    def record_launch(self, launch: Launch) -> None:
        columns = list(launch.__dict__)
        with self._db() as db:
            db.execute(f"INSERT OR REPLACE INTO launches ({', '.join(columns)}) VALUES "
                       f"({', '.join('?' for _ in columns)})", [getattr(launch, c) for c in columns])
            if launch.lms_user_id:
                db.execute("INSERT INTO members (username, lms_user_id, grade_group, source, at) VALUES (?, ?, ?, ?, ?) "
                           "ON CONFLICT(username) DO UPDATE SET lms_user_id=excluded.lms_user_id, "
                           "grade_group=excluded.grade_group, at=excluded.at",
                           (launch.username, launch.lms_user_id, launch.grade_group or "", "launch", launch.at))

    def launches(self, username: str | None = None) -> list[dict]:
        with self._db() as db:
            query = "SELECT * FROM launches" + (" WHERE username = ?" if username else "") + " ORDER BY at DESC"
            return [dict(r) for r in db.execute(query, (username,) if username else ())]

    def latest_endpoint(self, column: str) -> tuple[str, str | None] | None:
        """(url, context id) of the newest launch that named this service endpoint."""
        if column not in ("lineitems", "memberships"):
            raise ValueError(column)
        with self._db() as db:
            row = db.execute(f"SELECT {column}, context_id FROM launches WHERE {column} IS NOT NULL "
                             "ORDER BY at DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else None

    # roster
    def upsert_member(self, username: str, member: dict, group: str) -> None:
        with self._db() as db:
            db.execute("INSERT INTO members (username, lms_user_id, grade_group, name, given_name, family_name, "
                       "email, source, at) VALUES (?, ?, ?, ?, ?, ?, ?, 'roster', ?) ON CONFLICT(username) DO UPDATE "
                       "SET lms_user_id=excluded.lms_user_id, grade_group=excluded.grade_group, name=excluded.name, "
                       "given_name=excluded.given_name, family_name=excluded.family_name, email=excluded.email, "
                       "at=excluded.at",
                       (username, member["user_id"], group, member.get("name"), member.get("given_name"),
                        member.get("family_name"), member.get("email"), time.time()))

    def members(self) -> dict[str, dict]:
        with self._db() as db:
            return {r["username"]: dict(r) for r in db.execute("SELECT * FROM members ORDER BY username")}

    def record_roster_sync(self, url: str | None, members: int, students: int, error: str | None) -> None:
        with self._db() as db:
            db.execute("INSERT INTO roster_syncs VALUES (?, ?, ?, ?, ?)", (time.time(), url, members, students, error))

    def last_roster_sync(self) -> dict | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM roster_syncs ORDER BY at DESC LIMIT 1").fetchone()
        return dict(row) if row else None

    # postings
    def posting(self, assignment: str, username: str) -> dict | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM postings WHERE assignment = ? AND username = ?",
                             (assignment, username)).fetchone()
        return dict(row) if row else None

    def postings(self, assignment: str | None = None) -> list[dict]:
        with self._db() as db:
            query = "SELECT * FROM postings" + (" WHERE assignment = ?" if assignment else "") + \
                    " ORDER BY assignment, username"
            return [dict(r) for r in db.execute(query, (assignment,) if assignment else ())]

    def set_posting(self, assignment: str, username: str, **values) -> None:
        values["at"] = time.time()
        current = self.posting(assignment, username) or {"attempts": 0}
        merged = {**current, **values, "assignment": assignment, "username": username}
        columns = ["assignment", "username", "target", "score", "maximum", "state", "attempts", "error", "sent_at",
                   "at"]
        with self._db() as db:
            db.execute(f"INSERT OR REPLACE INTO postings ({', '.join(columns)}) VALUES "
                       f"({', '.join('?' for _ in columns)})", [merged.get(c) for c in columns])


# --- sending one assignment's scores ------------------------------------------------------------


@dataclass
class Score:
    username: str
    score: float
    maximum: float


@dataclass
class Outcome:
    username: str
    state: str  # sent | already-sent | failed | no-target
    detail: str = ""


Sender = Callable[[Score], str]  # sends one score; returns the target it went to; raises LmsError


def send_scores(book: LmsBook, assignment: str, scores: Iterable[Score], target_of: Callable[[Score], Sender | str],
                *, attempts: int = 3, backoff: tuple[float, ...] = (1.0, 4.0),
                sleep: Callable[[float], None] = time.sleep) -> list[Outcome]:
    """Send each student's score once: a score already confirmed is not sent again; failures are retried,
    then recorded with their reason for the teacher.

    target_of(score) gives a sender, or a sentence saying why this student's score has nowhere to go.
    """
    outcomes = []
    for score in scores:
        previous = book.posting(assignment, score.username)
        if previous and previous["state"] == "sent" and previous["score"] == score.score \
                and previous["maximum"] == score.maximum:
            outcomes.append(Outcome(score.username, "already-sent"))
            continue
        sender = target_of(score)
        if isinstance(sender, str):
            book.set_posting(assignment, score.username, state="no-target", error=sender, score=score.score,
                             maximum=score.maximum)
            outcomes.append(Outcome(score.username, "no-target", sender))
            continue
        book.set_posting(assignment, score.username, state="sending", error=None, score=score.score,
                         maximum=score.maximum)
        tries = (previous or {}).get("attempts") or 0
        for attempt in range(attempts):
            tries += 1
            try:
                target = sender(score)
            except LmsError as exc:
                book.set_posting(assignment, score.username, state="failed", error=exc.message, attempts=tries)
                if exc.transient and attempt + 1 < attempts:
                    sleep(backoff[min(attempt, len(backoff) - 1)])
                    continue
                outcomes.append(Outcome(score.username, "failed", exc.message))
                break
            book.set_posting(assignment, score.username, state="sent", error=None, target=target, attempts=tries,
                             sent_at=time.time())
            outcomes.append(Outcome(score.username, "sent", target))
            break
    return outcomes
