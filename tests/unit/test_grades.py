"""The grades service (roles/grading/files/hubfleet_grades.py) between a formgrader and an LMS, in process.

The formgrader's API and the LMS are small servers here (the LTI 1.3 platform and LTI 1.1 outcome
service of tests/unit/test_lms.py, which check signatures); the launches are recorded as the
authenticators record them. The hub and its OAuth are in tests/integration/test_teaching.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import pytest

from hubfleet.teaching import lms_role_table
from tests.support.http_stub import Stub
from tests.unit.test_lms import KEY, SECRET, V2, Consumer, Platform, rsa_key  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "roles" / "grading" / "files"))
sys.path.insert(0, str(ROOT / "roles" / "lti" / "files"))
import hubfleet_grades as grades_service  # noqa: E402
import hubfleet_lms as lms  # noqa: E402


class Formgrader:
    """nbgrader's formgrader API as the grader serves it: submissions of ps1, the students PUT into it."""

    def __init__(self):
        self.students: dict[str, dict] = {}
        self.submissions = [
            {"student": "ana", "submitted": True, "autograded": True, "needs_manual_grade": False,
             "score": 1.5, "max_score": 2.0},
            {"student": "ben", "submitted": True, "autograded": False, "score": 0.0, "max_score": 2.0},
            {"student": "cy", "submitted": True, "autograded": True, "needs_manual_grade": True, "score": 1.0,
             "max_score": 2.0},
            {"student": "dan", "submitted": False, "autograded": False, "score": 0.0, "max_score": 2.0},
        ]

    def __call__(self, request):
        assert request.headers["Authorization"] == "token grades-service-token"
        if request.path == "/services/grader/formgrader/api/submissions/ps1":
            return 200, {}, json.dumps(self.submissions).encode()
        if request.path == "/services/grader/formgrader/api/assignments":
            return 200, {}, json.dumps([{"name": "ps1"}]).encode()
        if request.path.startswith("/services/grader/formgrader/api/student/") and request.method == "PUT":
            self.students[request.path.rsplit("/", 1)[1]] = json.loads(request.body)
            return 200, {}, b"{}"
        return 404, {}, b"{}"


@pytest.fixture
def formgrader():
    served = Formgrader()
    with Stub(served) as stub:
        served.url = stub.url + "/services/grader"
        yield served


def service(tmp_path, formgrader, **options) -> grades_service.Grades:
    defaults = {"lms": "1.1", "book": str(tmp_path / "lms.sqlite"), "roles": json.dumps(lms_role_table()),
                "default_group": "students", "consumer_key": KEY, "client_id": "tool-7", "token_url": "",
                "key_file": "", "ca_bundle": True, "roster_interval": 900, "attempts": 3, "username_key": "sub",
                "secrets_file": str(tmp_path / "grades-secrets.json")}
    (tmp_path / "grades-secrets.json").write_text(json.dumps({"consumer_secret": SECRET}))
    args = argparse.Namespace(**{**defaults, **options})
    grader = grades_service.Grader(formgrader.url, "grades-service-token")
    return grades_service.Grades(args, grader, lambda member: member.get("user_id", "").lower() or None)


def test_lti11_scores_go_to_each_students_own_outcome_for_that_assignment(tmp_path, formgrader):
    grades = service(tmp_path, formgrader)
    consumer = Consumer()
    with Stub(consumer) as stub:
        consumer.url = stub.url
        for user, assignment in (("ana", "ps1"), ("ben", "ps1"), ("ana", "ps2")):
            grades.book.record_launch(lms.launch_from_lti11(user, {
                "resource_link_id": f"link-{assignment}", "user_id": f"edx-{user}", "custom_assignment": assignment,
                "lis_outcome_service_url": f"{stub.url}/outcomes", "lis_result_sourcedid": f"{user}:{assignment}"},
                "students"))
        result = asyncio.run(grades.send("ps1"))
        states = {o["student"]: o["state"] for o in result["outcomes"]}
        assert states == {"ana": "sent"}
        assert consumer.results == {"ana:ps1": 0.75}, "1.5 of 2 points, on ana's result for ps1"
        assert result["waiting"] == {"ben": "submitted, not autograded yet", "cy": "needs manual grading in the formgrader"}
        formgrader.submissions[1].update(autograded=True, needs_manual_grade=False, score=2.0)
        again = asyncio.run(grades.send("ps1"))
        assert {o["student"]: o["state"] for o in again["outcomes"]} == {"ana": "already-sent", "ben": "sent"}
        assert consumer.results == {"ana:ps1": 0.75, "ben:ps1": 1.0}
        consumer.mode = "wrong-reference"
        formgrader.submissions[0]["score"] = 2.0
        forged = asyncio.run(grades.send("ps1"))
        assert {o["student"]: o["state"] for o in forged["outcomes"]}["ana"] == "failed"
        assert grades.book.posting("ps1", "ana")["state"] == "failed", "a forged answer is not a sent grade"


def test_a_student_who_never_launched_the_activity_is_shown_why(tmp_path, formgrader):
    result = asyncio.run(service(tmp_path, formgrader).send("ps1"))
    (outcome,) = result["outcomes"]
    assert outcome["state"] == "no-target" and "assignment=ps1" in outcome["detail"]


@pytest.fixture
def platform_and_key(tmp_path):
    from tests.unit.test_lms import serialization

    pem = rsa_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode()
    key_file = tmp_path / "tool.pem"
    key_file.write_text(pem)
    platform = Platform(pem)
    with Stub(platform) as stub:
        platform.url = stub.url
        platform.stub = stub
        yield platform, key_file


def launch13(user: str, platform, **custom) -> lms.Launch:
    claims = {"sub": f"lms-{user}", lms.LTI_CLAIM + "roles": [V2 + "membership#Learner"],
              lms.LTI_CLAIM + "resource_link": {"id": "rl"}, lms.LTI_CLAIM + "context": {"id": "ctx"},
              lms.LTI_CLAIM + "custom": custom, lms.AGS_CLAIM: {"lineitems": platform.url + "/ctx/lineitems"},
              lms.NRPS_CLAIM: {"context_memberships_url": platform.url + "/ctx/members"}}
    return lms.launch_from_lti13(user, claims, "students")


def test_lti13_scores_go_to_the_assignments_line_item_for_the_lms_user(tmp_path, formgrader, platform_and_key):
    platform, key_file = platform_and_key
    grades = service(tmp_path, formgrader, lms="1.3", token_url=platform.url + "/token", key_file=str(key_file))
    grades.book.record_launch(launch13("ana", platform))
    result = asyncio.run(grades.send("ps1"))
    assert {o["student"]: o["state"] for o in result["outcomes"]} == {"ana": "sent"}
    (item,) = platform.items
    assert item["resourceId"] == "ps1" and item["scoreMaximum"] == 2.0
    (path, score), = platform.scores
    assert path.startswith("/ctx/lineitems/1/scores") and (score["userId"], score["scoreGiven"]) == ("lms-ana", 1.5)


def test_the_roster_fills_the_gradebook_with_its_students_only(tmp_path, formgrader, platform_and_key):
    platform, key_file = platform_and_key
    platform.members = [{"user_id": "Ana", "roles": [V2 + "membership#Learner"], "given_name": "Ana",
                         "family_name": "Alves", "email": "ana@example.edu"},
                        {"user_id": "prof", "roles": [V2 + "membership#Instructor"], "given_name": "P"},
                        {"user_id": "Ben", "roles": [], "given_name": "Ben"}]
    grades = service(tmp_path, formgrader, lms="1.3", token_url=platform.url + "/token", key_file=str(key_file))
    assert asyncio.run(grades.sync_roster()) == {"synced": False,
                                                 "reason": "no launch has named the LMS's roster service yet"}
    grades.book.record_launch(launch13("prof", platform))
    assert asyncio.run(grades.sync_roster()) == {"synced": True, "members": 3, "students": 2, "skipped": 0}
    assert formgrader.students == {"ana": {"first_name": "Ana", "last_name": "Alves", "email": "ana@example.edu"},
                                   "ben": {"first_name": "Ben", "last_name": None, "email": None}}
    assert grades.book.members()["ana"]["lms_user_id"] == "Ana", "scores go to the platform's own id"
    assert grades.book.last_roster_sync()["students"] == 2
    platform.mode.add("other-context")
    refused = asyncio.run(grades.sync_roster())
    assert not refused["synced"] and "another course" in refused["reason"]
    assert grades.book.last_roster_sync()["error"] == refused["reason"]


def test_the_page_escapes_what_it_shows(tmp_path, formgrader):
    grades = service(tmp_path, formgrader)
    grades.book.set_posting("ps1", "<script>x</script>", state="failed", error="<b>no</b>", score=1.0, maximum=2.0)
    page = grades_service.render(grades.status(), "xsrf-token", "/services/grades/")
    assert "<script>x" not in page and "&lt;script&gt;" in page and "&lt;b&gt;no" in page
    assert "Send grades to the LMS" in page and 'value=\'xsrf-token\'' in page
