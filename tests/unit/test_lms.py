"""hubfleet_lms (roles/lti/files): LMS roles, the platform's keys, the tool's token, AGS, NRPS, Basic Outcomes.

Each client talks to a small HTTP server in this process that plays the platform: it checks what
the hub sends (signatures, assertions, scopes) as an LMS would, and answers right, wrong or forged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from oauthlib.oauth1 import SIGNATURE_HMAC, SIGNATURE_TYPE_AUTH_HEADER, Client
from oauthlib.oauth1.rfc5849 import signature, utils

from hubfleet.teaching import lms_role_table
from tests.support.http_stub import Stub

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "roles" / "lti" / "files"))
import hubfleet_lms as lms  # noqa: E402

V2 = "http://purl.imsglobal.org/vocab/lis/v2/"
TABLE = lms_role_table()


# --- roles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("roles, group", [
    ([V2 + "membership#Instructor"], "teachers"),
    ([V2 + "membership/Instructor#TeachingAssistant"], "teachers"),
    ([V2 + "membership#Learner"], "students"),
    ([V2 + "membership/Learner#NonCreditLearner"], "students"),
    ([V2 + "system/person#Administrator"], "teachers"),
    ([V2 + "institution/person#Administrator", V2 + "membership#Learner"], "teachers"),
    # Canvas: teaches somewhere else (institution role), a learner here.
    ([V2 + "institution/person#Instructor", V2 + "membership#Learner"], "students"),
    ([V2 + "membership#Mentor"], "students"),
    ("Instructor", "teachers"),
    ("Learner,urn:lti:instrole:ims/lis/Instructor", "students"),
    ("urn:lti:role:ims/lis/TeachingAssistant/TeachingAssistantSection", "teachers"),
    ("urn:lti:sysrole:ims/lis/Administrator", "teachers"),
    ("Student", "students"),  # edX's name for its learners
    ("instructor", "teachers"),
    ("", "students"),
    (None, "students"),
    ([], "students"),
])
def test_lms_roles_decide_the_group(roles, group):
    assert lms.group_for(roles, TABLE, "students") == group


def test_the_table_order_decides_a_person_with_both_roles():
    both = [V2 + "membership#Learner", V2 + "membership#Instructor"]
    assert lms.group_for(both, TABLE, "students") == "teachers"
    assert lms.group_for(both, list(reversed(TABLE)), "students") == "students"


# --- the platform's keys ----------------------------------------------------------------------


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key, kid: str) -> dict:
    return {**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "alg": "RS256", "use": "sig"}


class Keyset:
    def __init__(self):
        self.keys = {"k1": rsa_key()}

    def __call__(self, request):
        body = json.dumps({"keys": [jwk(k, kid) for kid, k in self.keys.items()]}).encode()
        return 200, {"Content-Type": "application/json"}, body


def test_a_rotated_key_is_fetched_at_once_and_the_old_one_stops_working():
    keyset = Keyset()
    with Stub(keyset) as stub:
        keys = lms.PlatformKeys(stub.url + "/jwks", refetch_interval=0.2)
        token = jwt.encode({"sub": "x"}, keyset.keys["k1"], algorithm="RS256", headers={"kid": "k1"})
        assert jwt.decode(token, keys.signing_key("k1"), algorithms=["RS256"])["sub"] == "x"
        keys.signing_key("k1")
        assert keys.fetches == 1, "cached"
        time.sleep(0.25)
        keyset.keys = {"k2": rsa_key()}  # the LMS rotates: a new kid, the old key gone
        rotated = jwt.encode({"sub": "y"}, keyset.keys["k2"], algorithm="RS256", headers={"kid": "k2"})
        assert jwt.decode(rotated, keys.signing_key("k2"), algorithms=["RS256"])["sub"] == "y"
        assert keys.fetches == 2, "one fetch for the new kid, well within PyJWT's 30 s cooldown"
        time.sleep(0.25)
        with pytest.raises(lms.UnknownKey):
            keys.signing_key("k1")


def test_a_key_rotated_twice_within_the_interval_is_still_found():
    keyset = Keyset()
    with Stub(keyset) as stub:
        keys = lms.PlatformKeys(stub.url + "/jwks", refetch_interval=0.5)
        keys.signing_key("k1")
        keyset.keys = {"k2": rsa_key()}
        keys.signing_key("k2")  # right after the first fetch: it waits out the interval, then looks
        assert keys.fetches == 2


def test_made_up_key_ids_cannot_make_the_hub_hammer_the_platform():
    from concurrent.futures import ThreadPoolExecutor

    with Stub(Keyset()) as stub:
        keys = lms.PlatformKeys(stub.url + "/jwks", refetch_interval=0.05)
        keys.signing_key("k1")
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(lms.UnknownKey):
                keys.signing_key(uuid.uuid4().hex)
        elapsed = time.monotonic() - started
        assert keys.fetches - 1 <= elapsed / 0.05 + 1, "one fetch per interval at most"

        def made_up(_):
            with pytest.raises(lms.UnknownKey):
                keys.signing_key(uuid.uuid4().hex)

        before = keys.fetches
        with ThreadPoolExecutor(20) as pool:
            list(pool.map(made_up, range(20)))
        assert keys.fetches - before <= 3, "requests waiting together share a fetch"


def test_an_expired_cache_is_fetched_again_and_an_unreachable_keyset_is_transient():
    keyset = Keyset()
    with Stub(keyset) as stub:
        keys = lms.PlatformKeys(stub.url + "/jwks", lifespan=0.1)
        keys.signing_key("k1")
        time.sleep(0.15)
        keys.signing_key("k1")
        assert keys.fetches == 2
    with pytest.raises(lms.LmsError) as err:
        lms.PlatformKeys("http://127.0.0.1:9/jwks", timeout=2).signing_key("k1")
    assert err.value.transient and not isinstance(err.value, lms.UnknownKey)


# --- the tool's token, AGS and NRPS -------------------------------------------------------------


@pytest.fixture(scope="module")
def tool_pem() -> str:
    return rsa_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()).decode()


class Platform:
    """Token endpoint, line items, scores and memberships, as Moodle serves them; `mode` breaks them."""

    def __init__(self, tool_pem: str):
        public = serialization.load_pem_private_key(tool_pem.encode(), None).public_key()
        self.tool_key = public
        self.tool_kid = lms.tool_kid(tool_pem)
        self.url = ""
        self.mode: set[str] = set()
        self.failures = 0
        self.items: list[dict] = []
        self.scores: list[tuple[str, dict]] = []
        self.tokens: dict[str, set[str]] = {}
        self.members = [{"user_id": f"u{i}", "roles": [V2 + "membership#Learner"], "given_name": f"G{i}"}
                        for i in range(5)] + [{"user_id": "gone", "status": "Inactive"}]

    def __call__(self, request):
        parts = urlsplit(request.path)
        path, query = parts.path, parse_qs(parts.query)
        if path == "/token":
            return self.token(dict(parse_qs(request.body.decode())))
        token = request.headers.get("Authorization", "")[len("Bearer "):]
        granted = self.tokens.get(token, set())
        if self.failures:
            self.failures -= 1
            return 503, {}, b"busy"
        if path == "/ctx/lineitems" and lms.AGS_SCOPE_LINEITEM in granted:
            if request.method == "POST":
                item = {**json.loads(request.body), "id": f"{self.url}/ctx/lineitems/{len(self.items) + 1}?tool=1"}
                if "foreign-item" in self.mode:
                    item["id"] = "https://evil.example/lineitems/1"
                self.items.append(item)
                return 201, {"Content-Type": lms.LINEITEM_TYPE}, json.dumps(item).encode()
            wanted = query.get("resource_id", [None])[0]
            found = [i for i in self.items if wanted in (None, i["resourceId"])]
            headers = {"Content-Type": lms.LINEITEMS_TYPE}
            if "foreign-next" in self.mode:
                headers["Link"] = '<https://evil.example/more>; rel="next"'
            return 200, headers, json.dumps(found).encode()
        if path.startswith("/ctx/lineitems/") and path.endswith("/scores") and lms.AGS_SCOPE_SCORE in granted:
            assert request.headers["Content-Type"] == lms.SCORE_TYPE
            self.scores.append((request.path, json.loads(request.body)))
            return 204, {}, b""
        if path == "/ctx/members" and lms.NRPS_SCOPE in granted:
            offset = int(query.get("offset", ["0"])[0])
            body = {"context": {"id": "other" if "other-context" in self.mode else "ctx"},
                    "members": self.members[offset:offset + 2]}
            headers = {"Content-Type": lms.NRPS_TYPE}
            if offset + 2 < len(self.members):
                nxt = "https://evil.example/members" if "foreign-next" in self.mode else \
                    f"{self.url}/ctx/members?offset={offset + 2}"
                headers["Link"] = f'<{nxt}>; rel="next"'
            return 200, headers, json.dumps(body).encode()
        return 401, {}, b"{}"

    def token(self, form: dict) -> tuple:
        form = {k: v[0] for k, v in form.items()}
        assertion = form["client_assertion"]
        assert jwt.get_unverified_header(assertion)["kid"] == self.tool_kid
        claims = jwt.decode(assertion, self.tool_key, algorithms=["RS256"], audience=self.url + "/token")
        assert claims["iss"] == claims["sub"] == "tool-7" and claims["jti"]
        assert form["grant_type"] == "client_credentials"
        scopes = set(form["scope"].split())
        if "no-bearer" in self.mode:
            return 200, {}, json.dumps({"access_token": "x", "token_type": "mac"}).encode()
        if "stingy" in self.mode:
            scopes -= {lms.AGS_SCOPE_SCORE}
        token = uuid.uuid4().hex
        self.tokens[token] = scopes
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"access_token": token, "token_type": "Bearer", "expires_in": 3600, "scope": " ".join(scopes)}).encode()


@pytest.fixture
def platform(tool_pem):
    served = Platform(tool_pem)
    with Stub(served) as stub:
        served.url = stub.url
        served.stub = stub
        yield served


def tool_token(platform, tool_pem) -> lms.ToolToken:
    return lms.ToolToken(client_id="tool-7", token_url=platform.url + "/token", private_pem=tool_pem)


def test_the_tool_signs_its_token_request_and_reuses_the_token(platform, tool_pem):
    token = tool_token(platform, tool_pem)
    first = token.get([lms.AGS_SCOPE_SCORE])
    assert token.get([lms.AGS_SCOPE_SCORE]) == first
    assert sum(r.path == "/token" for r in platform.stub.requests) == 1


@pytest.mark.parametrize("mode, said", [("no-bearer", "no bearer access_token"),
                                        ("stingy", "did not grant")])
def test_a_token_response_that_is_not_what_was_asked_is_refused(platform, tool_pem, mode, said):
    platform.mode.add(mode)
    with pytest.raises(lms.LmsError, match=said) as err:
        tool_token(platform, tool_pem).get([lms.AGS_SCOPE_SCORE, lms.AGS_SCOPE_LINEITEM])
    assert not err.value.transient


def test_a_line_item_is_made_once_and_scores_go_to_its_scores_url(platform, tool_pem):
    ags = lms.Ags(tool_token(platform, tool_pem))
    item = ags.line_item(platform.url + "/ctx/lineitems", resource_id="ps1", label="ps1", score_maximum=10)
    assert ags.line_item(platform.url + "/ctx/lineitems", resource_id="ps1", label="ps1", score_maximum=10) == item
    assert len(platform.items) == 1 and platform.items[0]["tag"] == "hubfleet"
    ags.post_score(item, user_id="u1", score=7.5, maximum=10)
    path, score = platform.scores[0]
    assert path == "/ctx/lineitems/1/scores?tool=1", "the line item's query is kept"
    assert (score["userId"], score["scoreGiven"], score["scoreMaximum"]) == ("u1", 7.5, 10)
    assert score["gradingProgress"] == "FullyGraded" and score["timestamp"].endswith("+00:00")


@pytest.mark.parametrize("mode", ["foreign-item", "foreign-next"])
def test_a_platform_pointing_elsewhere_gets_no_token_and_no_score(platform, tool_pem, mode):
    ags = lms.Ags(tool_token(platform, tool_pem))
    platform.items.append({"resourceId": "other", "id": platform.url + "/ctx/lineitems/9"})
    platform.mode.add(mode)
    with pytest.raises(lms.LmsError, match="another site"):
        ags.line_item(platform.url + "/ctx/lineitems", resource_id="ps1", label="ps1", score_maximum=10)
    assert not platform.scores and all("evil" not in r.path for r in platform.stub.requests)


def test_a_busy_platform_is_a_transient_failure(platform, tool_pem):
    platform.failures = 1
    with pytest.raises(lms.LmsError) as err:
        lms.Ags(tool_token(platform, tool_pem)).post_score(platform.url + "/ctx/lineitems/1", user_id="u", score=1,
                                                           maximum=1)
    assert err.value.transient and "503" in err.value.message


def test_the_roster_is_read_page_by_page_and_only_for_the_launch_course(platform, tool_pem):
    nrps = lms.Nrps(tool_token(platform, tool_pem))
    members = nrps.members(platform.url + "/ctx/members", context_id="ctx")
    assert [m["user_id"] for m in members] == ["u0", "u1", "u2", "u3", "u4"], "inactive members are left out"
    platform.mode.add("other-context")
    with pytest.raises(lms.LmsError, match="another course"):
        nrps.members(platform.url + "/ctx/members", context_id="ctx")
    platform.mode = {"foreign-next"}
    with pytest.raises(lms.LmsError, match="another site"):
        nrps.members(platform.url + "/ctx/members", context_id="ctx")


# --- LTI 1.1 Basic Outcomes -------------------------------------------------------------------------

KEY, SECRET = "edx-key", "edx-secret-0123456789abcdef"


class Consumer:
    """An LTI 1.1 outcome service (edX's, Moodle's): checks the OAuth signature and body hash, stores the score."""

    def __init__(self):
        self.url = ""
        self.results: dict[str, float] = {}
        self.mode = "honest"

    def __call__(self, request):
        params = {k: utils.unescape(v) for k, v in utils.parse_authorization_header(request.headers["Authorization"])}
        assert params["oauth_body_hash"] == base64.b64encode(hashlib.sha1(request.body).digest()).decode()
        pairs = [(k, v) for k, v in params.items() if k not in ("oauth_signature", "realm")]
        pairs += parse_qsl(urlsplit(request.path).query)
        base = signature.signature_base_string("POST", signature.base_string_uri(self.url + request.path),
                                               signature.normalize_parameters(pairs))
        assert signature.sign_hmac_sha1(base, SECRET, "") == params["oauth_signature"], "signed with the secret"
        text = request.body.decode()
        message = re.search(r"<imsx_messageIdentifier>(.*?)<", text).group(1)
        sourcedid = re.search(r"<sourcedId>(.*?)<", text).group(1)
        score = float(re.search(r"<textString>(.*?)<", text).group(1))
        major = "failure" if self.mode == "refuse" else "success"
        reference = "someone-else" if self.mode == "wrong-reference" else message
        body = (f'<?xml version="1.0"?><imsx_POXEnvelopeResponse xmlns="{lms.POX_NS}"><imsx_POXHeader>'
                f"<imsx_POXResponseHeaderInfo><imsx_version>V1.0</imsx_version><imsx_messageIdentifier>r1"
                f"</imsx_messageIdentifier><imsx_statusInfo><imsx_codeMajor>{major}</imsx_codeMajor>"
                f"<imsx_severity>status</imsx_severity><imsx_description>unknown sourcedid</imsx_description>"
                f"<imsx_messageRefIdentifier>{reference}</imsx_messageRefIdentifier>"
                f"<imsx_operationRefIdentifier>replaceResult</imsx_operationRefIdentifier></imsx_statusInfo>"
                f"</imsx_POXResponseHeaderInfo></imsx_POXHeader><imsx_POXBody><replaceResultResponse/>"
                f"</imsx_POXBody></imsx_POXEnvelopeResponse>")
        if self.mode == "dtd":
            body = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]>' + body[21:]
        if self.mode == "not-xml":
            body = "<html>oops"
        headers = {"Content-Type": "application/xml"}
        if self.mode in ("signed", "bad-signature", "tampered-body"):
            client = Client(KEY, client_secret=SECRET if self.mode != "bad-signature" else "forger",
                            signature_method=SIGNATURE_HMAC, signature_type=SIGNATURE_TYPE_AUTH_HEADER)
            _, signed, _ = client.sign(self.url + request.path, "POST", body=body,
                                       headers={"Content-Type": "application/xml"})
            headers["Authorization"] = signed["Authorization"]
            if self.mode == "tampered-body":
                body = body.replace("unknown", "UNKNOWN")
        if major == "success" and self.mode != "wrong-reference":
            self.results[sourcedid] = score
        return 200, headers, body.encode()


@pytest.fixture
def consumer():
    served = Consumer()
    with Stub(served) as stub:
        served.url = stub.url
        yield served


@pytest.mark.parametrize("mode", ["honest", "signed"])
def test_basic_outcomes_sends_a_signed_normalised_score(consumer, mode):
    consumer.mode = mode
    lms.Outcomes(KEY, SECRET).replace_result(consumer.url + "/outcomes?course=1", "src-1", 0.75)
    assert consumer.results == {"src-1": 0.75}


@pytest.mark.parametrize("mode, said", [
    ("refuse", "refused the grade (failure: unknown sourcedid)"),
    ("wrong-reference", "answers another message"),
    ("bad-signature", "signature does not verify"),
    ("tampered-body", "does not match its signed hash"),
    ("dtd", "DTD"),
    ("not-xml", "not XML"),
])
def test_a_forged_or_refused_outcome_response_is_not_taken_for_a_sent_grade(consumer, mode, said):
    consumer.mode = mode
    with pytest.raises(lms.LmsError, match=re.escape(said)) as err:
        lms.Outcomes(KEY, SECRET).replace_result(consumer.url + "/outcomes", "src-1", 0.5)
    assert not err.value.transient


def test_basic_outcomes_refuses_a_score_out_of_range():
    with pytest.raises(lms.LmsError, match="between 0 and 1"):
        lms.Outcomes(KEY, SECRET).replace_result("http://127.0.0.1:9/", "s", 1.5)


# --- the record of launches and postings, and sending each score once -------------------------------


@pytest.fixture
def book(tmp_path):
    return lms.LmsBook(str(tmp_path / "lms.sqlite"))


def test_launches_are_remembered_with_their_endpoints(book):
    claims = {"sub": "platform-user-1", lms.LTI_CLAIM + "roles": [V2 + "membership#Learner"],
              lms.LTI_CLAIM + "resource_link": {"id": "rl-1"}, lms.LTI_CLAIM + "context": {"id": "ctx"},
              lms.LTI_CLAIM + "custom": {"assignment": "ps1"},
              lms.AGS_CLAIM: {"lineitems": "https://lms/ctx/lineitems", "lineitem": "https://lms/ctx/lineitems/4"},
              lms.NRPS_CLAIM: {"context_memberships_url": "https://lms/ctx/members"}}
    book.record_launch(lms.launch_from_lti13("ana", claims, "students"))
    book.record_launch(lms.launch_from_lti11("ben", {"resource_link_id": "rl-2", "user_id": "edx-7",
                                                     "custom_assignment": "ps1", "lis_result_sourcedid": "s-7",
                                                     "lis_outcome_service_url": "https://edx/outcomes"}, "students"))
    (ana,) = book.launches("ana")
    assert (ana["assignment"], ana["lineitem"], ana["lms_user_id"]) == ("ps1", "https://lms/ctx/lineitems/4",
                                                                         "platform-user-1")
    assert book.latest_endpoint("memberships") == ("https://lms/ctx/members", "ctx")
    assert book.members()["ben"]["lms_user_id"] == "edx-7"
    assert book.launches("ben")[0]["sourcedid"] == "s-7"


def test_each_score_is_sent_once_and_a_changed_score_again(book):
    sent = []

    def target(score):
        return lambda s: sent.append((s.username, s.score)) or "https://lms/item"

    scores = [lms.Score("ana", 2.0, 2.0), lms.Score("ben", 1.0, 2.0)]
    assert {o.state for o in lms.send_scores(book, "ps1", scores, target)} == {"sent"}
    assert {o.state for o in lms.send_scores(book, "ps1", scores, target)} == {"already-sent"}
    lms.send_scores(book, "ps1", [lms.Score("ben", 1.5, 2.0)], target)
    assert sent == [("ana", 2.0), ("ben", 1.0), ("ben", 1.5)]
    assert book.posting("ps1", "ben")["score"] == 1.5 and book.posting("ps1", "ben")["state"] == "sent"


def test_transient_failures_are_retried_and_the_last_reason_is_kept(book):
    calls, slept = [], []

    def flaky(score):
        def send(s):
            calls.append(s.username)
            if len(calls) < 3:
                raise lms.LmsError("the LMS answered 503", transient=True)
            return "https://lms/item"
        return send

    (outcome,) = lms.send_scores(book, "ps1", [lms.Score("ana", 1, 1)], flaky, sleep=slept.append)
    assert outcome.state == "sent" and calls == ["ana"] * 3 and slept == [1.0, 4.0]
    assert book.posting("ps1", "ana")["attempts"] == 3


def test_a_refused_score_is_shown_not_retried_blindly_and_sent_when_asked_again(book):
    answers = [lms.LmsError("the grade response answers another message than ours: forged"), "https://lms/item"]

    def target(score):
        def send(s):
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return send

    (first,) = lms.send_scores(book, "ps1", [lms.Score("ana", 1, 1)], target, sleep=lambda s: None)
    assert first.state == "failed" and "forged" in book.posting("ps1", "ana")["error"]
    (second,) = lms.send_scores(book, "ps1", [lms.Score("ana", 1, 1)], target, sleep=lambda s: None)
    assert second.state == "sent" and book.posting("ps1", "ana")["error"] is None


def test_a_student_the_lms_never_named_has_no_target_and_says_why(book):
    (outcome,) = lms.send_scores(book, "ps1", [lms.Score("cy", 1, 1)], lambda s: "no launch from the LMS yet")
    assert outcome.state == "no-target" and book.posting("ps1", "cy")["error"] == "no launch from the LMS yet"
