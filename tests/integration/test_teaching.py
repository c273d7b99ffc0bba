"""Teaching on a real two-host LTI 1.3 course: roles from the LMS, nbgrader across hosts, grades back.

One course for the module (two Docker hosts, a Swarm), graded with nbgrader, logging in from the
project's test platform (tests/support/lti13_platform.py) with real token, AGS and NRPS endpoints
over HTTPS signed by a CA that only the descriptor's `ca_certificates` makes the hosts trust.
The tests run in order, as a term would: the teacher launches, the roster arrives, an assignment
goes out to students on both hosts, comes back, is autograded, and the scores reach the platform.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from urllib.parse import urlsplit

import pytest
import requests

from hubfleet.jupyter import cookie_for, start_own_server
from tests.support.courses import (
    TestCourse,
    course_env,
    create_course,
    destroy_course,
    ensure_course_network,
    error_message,
    free_port,
    hub_log,
    hubfleet,
    reaching,
    service_client,
    write_descriptor,
)
from tests.support.lti13_platform import INSTRUCTOR, LEARNER, LTI, TEACHING_ASSISTANT, Launch, LTI13Platform
from tests.support.test_ca import TestCA
from tests.integration.test_lti13 import authenticate_at_platform, hubfleet_json

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CLIENT_ID = "hubfleet-teaching-tool"
DEPLOYMENT_ID = "deployment-1"
COURSE_ID = "stats-101"
TEACHER, ASSISTANT = "prof-dee", "ta-eve"
LEARNERS = {"learner-ana": ("Ana", "Alves"), "learner-ben": ("Ben", "Bauer"), "learner-cy": ("Cy", "Chen")}
ASSIGNMENT = "ps1"


def member(user_id: str, role: str, given: str, family: str) -> dict:
    return {"user_id": user_id, "roles": [role], "status": "Active", "name": f"{given} {family}",
            "given_name": given, "family_name": family, "email": f"{user_id}@students.example.edu"}


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    """(course, platform, CA path): a two-host course that grades, and its LMS with the class list filled in."""
    name = f"t-teach-{secrets.token_hex(2)}"
    directory = tmp_path_factory.mktemp(name)
    env = course_env(directory / "state")
    gateway = ensure_course_network(name, directory)
    ca = TestCA(directory / "ca")
    platform = LTI13Platform(gateway, free_port(gateway), ca.issue("platform", gateway),
                             client_id=CLIENT_ID, deployment_id=DEPLOYMENT_ID).start()
    platform.members = [member(TEACHER, INSTRUCTOR, "Dee", "Prof"), member(ASSISTANT, TEACHING_ASSISTANT, "Eve", "Ta"),
                        *(member(uid, LEARNER, *names) for uid, names in LEARNERS.items())]
    authenticator = {"kind": "lti13", "issuer": platform.issuer, "client_id": CLIENT_ID,
                     "deployment_ids": [DEPLOYMENT_ID], "authorize_url": platform.authorize_url,
                     "jwks_url": platform.jwks_url, "token_url": platform.token_url}
    descriptor = write_descriptor(directory, name, authenticator, grading={"course_id": COURSE_ID},
                                  ca_certificates=[str(ca.path)])
    try:
        course = create_course(env, descriptor, name, "--hosts", "2", timeout=2400)
        status = hubfleet_json(env, "status", name, "--no-probe")
        course.extra.update(hubfleet_json(env, "lti-config", name), nodes=[n["host"] for n in status["nodes"]])
        platform.redirect_uris = [course.extra["redirection_uris"]]
        with reaching(course):  # every hub is HTTPS: its *.localhost name and the embedded ACME root
            platform.tool_jwks = requests.get(course.extra["public_keyset_url"], timeout=30).json()
            wait_for_grader(course)
            print(f"two-host graded LTI 1.3 course created in {course.seconds:.0f} s")
            yield course, platform, str(ca.path)
    finally:
        destroy_course(env, name)
        platform.stop()


def wait_for_grader(course: TestCourse, timeout: float = 600) -> None:
    """The grader's Jupyter server takes a while to import nbgrader on a busy machine; the proxy says 503 till then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if requests.get(f"{course.url}/services/grader/api/status", timeout=30).status_code != 503:
            return
        time.sleep(5)
    raise AssertionError(f"the grader did not answer within {timeout:.0f} s")


def launch(lms, user: str, roles: list[str], session: requests.Session | None = None) -> requests.Session:
    """A person opens the activity in the LMS: the full LTI 1.3 launch, as their browser makes it."""
    session = session or requests.Session()
    action, fields = authenticate_at_platform(lms, session, user=user,
                                              launch=Launch(claims={LTI + "roles": roles}))
    response = session.post(action, data=fields, allow_redirects=False, timeout=60)
    assert response.status_code == 302, error_message(response)
    return session


def groups(course: TestCourse, user: str) -> list[str]:
    return service_client(course).api("GET", f"/users/{user}").json()["groups"]


def open_service(course, session, service: str) -> requests.Response:
    """Open a hub service as a browser does (its OAuth round trip with the hub)."""
    return session.get(f"{course.url}/services/{service}/", timeout=60)


def api(course, session, service: str, method: str, path: str, **kwargs) -> requests.Response:
    xsrf = cookie_for(session, "_xsrf", f"/services/{service}/")
    return session.request(method, f"{course.url}/services/{service}/{path}", timeout=300,
                           headers={"X-XSRFToken": xsrf or ""}, **kwargs)


def student_api(course, session, user: str, method: str, path: str, **kwargs) -> requests.Response:
    xsrf = cookie_for(session, "_xsrf", f"/user/{user}/")
    return session.request(method, f"{course.url}/user/{user}/{path}", timeout=300,
                           headers={"X-XSRFToken": xsrf or ""}, **kwargs)


def notebook(cells: list[dict]) -> dict:
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def cell(source: str, **nbgrader) -> dict:
    meta = {"schema_version": 3, "grade": False, "solution": False, "locked": False, "task": False, **nbgrader}
    return {"cell_type": "code", "execution_count": None, "id": nbgrader["grade_id"], "outputs": [],
            "source": source, "metadata": {"nbgrader": meta}}


SOURCE = notebook([
    cell("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION", grade_id="add",
         solution=True),
    cell("assert add(1, 2) == 3\nassert add(-1, 1) == 0", grade_id="test_add", grade=True, locked=True, points=2),
])


def test_an_instructor_launch_gets_the_formgrader_and_a_learner_launch_does_not(lms):
    course = lms[0]
    teacher = launch(lms, TEACHER, [INSTRUCTOR])
    assert groups(course, TEACHER) == ["teachers"]
    page = open_service(course, teacher, "grader")
    assert page.status_code == 200 and urlsplit(page.url).path.startswith("/services/grader/"), page.url
    assert teacher.get(f"{course.url}/hub/admin", timeout=30).status_code == 200, "teachers see the students"

    student = launch(lms, "learner-ana", [LEARNER])
    assert groups(course, "learner-ana") == ["students"]
    for service in ("grader", "grades"):
        refused = open_service(course, student, service)
        assert refused.status_code == 403, f"a learner reached {service}: {refused.status_code} {refused.url}"
    assert student.get(f"{course.url}/hub/admin", timeout=30).status_code == 403
    course.extra.update(teacher=teacher, students={"learner-ana": student})


def test_the_roster_arrives_before_the_students_launch(lms):
    course, platform, _ = lms
    teacher = course.extra["teacher"]
    deadline = time.monotonic() + 240
    while True:  # the grades service reads the class list as soon as a launch names its URL
        listed = api(course, teacher, "grader", "GET", "formgrader/api/students").json()
        found = {s["id"]: s for s in listed}
        if set(LEARNERS) <= set(found) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert set(LEARNERS) <= set(found), f"roster not in the gradebook: {sorted(found)}"
    assert (found["learner-cy"]["first_name"], found["learner-cy"]["last_name"]) == ("Cy", "Chen")
    assert TEACHER not in found and ASSISTANT not in found, "teachers are not graded"
    assert platform.token_requests >= 1
    assert "learner-cy" not in [u["name"] for u in service_client(course).users()], "cy has never launched"


def test_a_released_assignment_reaches_students_on_both_hosts_and_comes_back_autograded(lms):
    course = lms[0]
    teacher = course.extra["teacher"]
    for folder in ("source", f"source/{ASSIGNMENT}"):
        assert api(course, teacher, "grader", "PUT", f"api/contents/{folder}",
                   json={"type": "directory"}).status_code in (200, 201)
    put = api(course, teacher, "grader", "PUT", f"api/contents/source/{ASSIGNMENT}/{ASSIGNMENT}.ipynb",
              json={"type": "notebook", "format": "json", "content": SOURCE})
    assert put.status_code in (200, 201), put.text
    for step in ("assign", "release"):
        done = api(course, teacher, "grader", "POST", f"formgrader/api/assignment/{ASSIGNMENT}/{step}").json()
        assert done["success"], f"{step}: {done}"

    students = course.extra["students"]
    students["learner-ben"] = launch(lms, "learner-ben", [LEARNER])
    answers = {"learner-ana": "return a + b", "learner-ben": "return a - b"}
    for user, session in students.items():
        start_own_server(session, course.url, user, timeout=900)
    nodes = {n["host"]: n["servers"] for n in hubfleet_json(course.env, "status", course.name, "--no-probe")["nodes"]}
    assert sorted(nodes.values()) == [1, 1], f"the two students should run on different hosts: {nodes}"

    for user, session in students.items():
        fetched = student_api(course, session, user, "POST", "assignments/fetch",
                              data={"course_id": COURSE_ID, "assignment_id": ASSIGNMENT})
        assert fetched.status_code == 200, fetched.text
        path = f"api/contents/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
        released = student_api(course, session, user, "GET", path).json()["content"]
        solution = released["cells"][0]
        assert "raise NotImplementedError" in "".join(solution["source"]), "the released copy has no solution"
        solution["source"] = f"def add(a, b):\n    {answers[user]}"
        saved = student_api(course, session, user, "PUT", path,
                            json={"type": "notebook", "format": "json", "content": released})
        assert saved.status_code == 200, saved.text
        submitted = student_api(course, session, user, "POST", "assignments/submit",
                                data={"course_id": COURSE_ID, "assignment_id": ASSIGNMENT}).json()
        assert submitted["success"], submitted

    collected = api(course, teacher, "grader", "POST", f"formgrader/api/assignment/{ASSIGNMENT}/collect").json()
    assert collected["success"], collected
    for user in students:
        graded = api(course, teacher, "grader", "POST", f"formgrader/api/submission/{ASSIGNMENT}/{user}/autograde")
        assert graded.json()["success"], graded.text
    scores = {s["student"]: (s["score"], s["max_score"])
              for s in api(course, teacher, "grader", "GET", f"formgrader/api/submissions/{ASSIGNMENT}").json()
              if s["autograded"]}
    assert scores == {"learner-ana": (2.0, 2.0), "learner-ben": (0.0, 2.0)}

    for step in ("generate_feedback", "release_feedback"):
        done = api(course, teacher, "grader", "POST", f"formgrader/api/assignment/{ASSIGNMENT}/{step}").json()
        assert done["success"], f"{step}: {done}"
    ana = students["learner-ana"]
    assert student_api(course, ana, "learner-ana", "POST", "assignments/fetch_feedback",
                       data={"course_id": COURSE_ID, "assignment_id": ASSIGNMENT}).status_code == 200
    feedback = student_api(course, ana, "learner-ana", "GET", f"api/contents/{ASSIGNMENT}/feedback").json()
    stamps = [item["path"] for item in feedback["content"]]
    assert len(stamps) == 1
    html = student_api(course, ana, "learner-ana", "GET", f"api/contents/{stamps[0]}/{ASSIGNMENT}.html").json()
    assert "test_add" in html["content"] or "add(1, 2)" in html["content"]
    ben = students["learner-ben"]
    spy = student_api(course, ben, "learner-ben", "GET", "assignments?course_id=" + COURSE_ID)
    assert "learner-ana" not in spy.text, "a student sees only their own submissions"


def test_a_forged_or_broken_platform_answer_is_not_taken_for_a_sent_grade(lms):
    course, platform, _ = lms
    teacher = course.extra["teacher"]
    assert open_service(course, teacher, "grades").status_code == 200

    platform.tamper = {"token": "no-bearer"}
    sent = api(course, teacher, "grades", "POST", f"api/assignments/{ASSIGNMENT}/send").json()
    assert {o["state"] for o in sent["outcomes"]} == {"failed"}, sent
    assert "bearer" in sent["outcomes"][0]["detail"] and not platform.scores

    platform.tamper = {"lineitem_id": "https://grades.evil.example"}
    sent = api(course, teacher, "grades", "POST", f"api/assignments/{ASSIGNMENT}/send").json()
    assert {o["state"] for o in sent["outcomes"]} == {"failed"}, sent
    assert "another site" in sent["outcomes"][0]["detail"] and not platform.scores
    platform.line_items.clear()

    platform.tamper = {"roster_context": "course-of-someone-else"}
    roster = api(course, teacher, "grades", "POST", "api/roster/sync").json()
    assert not roster["synced"] and "another course" in roster["reason"]
    platform.tamper = {}

    status = api(course, teacher, "grades", "GET", "api/status").json()
    shown = {(p["username"], p["state"]) for p in status["postings"]}
    assert shown == {("learner-ana", "failed"), ("learner-ben", "failed")}, "failures are shown to the teacher"


def test_the_scores_arrive_at_the_platform_once_with_the_right_user_and_line_item(lms):
    course, platform, _ = lms
    teacher = course.extra["teacher"]
    platform.tamper = {"scores_status": 503, "scores_status_times": 1}  # the platform stumbles once: retried
    sent = api(course, teacher, "grades", "POST", f"api/assignments/{ASSIGNMENT}/send").json()
    assert {o["student"]: o["state"] for o in sent["outcomes"]} == {"learner-ana": "sent", "learner-ben": "sent"}
    items = [i for i in platform.line_items.values() if i["resourceId"] == ASSIGNMENT]
    assert len(items) == 1 and items[0]["scoreMaximum"] == 2.0
    got = {s["userId"]: (s["scoreGiven"], s["scoreMaximum"], s["lineitem"]) for s in platform.scores}
    assert got == {"learner-ana": (2.0, 2.0, items[0]["id"]), "learner-ben": (0.0, 2.0, items[0]["id"])}

    again = api(course, teacher, "grades", "POST", f"api/assignments/{ASSIGNMENT}/send").json()
    assert {o["state"] for o in again["outcomes"]} == {"already-sent"}
    assert len(platform.scores) == 2, "nothing is sent twice"
    page = api(course, teacher, "grades", "GET", "")
    assert page.status_code == 200 and "learner-ben" in page.text and "sent" in page.text


def test_a_key_rotated_right_after_a_launch_is_accepted_at_once(lms):
    course, platform, _ = lms
    platform.rotate_key()
    launch(lms, "learner-ana", [LEARNER])  # a key id the hub has not seen: it fetches the keyset now
    fetched, at = platform.jwks_requests, time.monotonic()
    platform.rotate_key()  # and the LMS rotates again, seconds after that fetch
    launch(lms, "learner-ana", [LEARNER])
    assert time.monotonic() - at < 30, "within PyJWT's cooldown, which refused such launches"
    assert platform.jwks_requests == fetched + 1, "one more fetch for the new key id"
    assert "keyset does not have" not in hub_log(course)


def test_a_teacher_demoted_in_the_lms_loses_the_formgrader_at_the_next_launch(lms):
    course = lms[0]
    assistant = launch(lms, ASSISTANT, [TEACHING_ASSISTANT])
    assert groups(course, ASSISTANT) == ["teachers"]
    assert open_service(course, assistant, "grader").status_code == 200
    launch(lms, ASSISTANT, [LEARNER], session=assistant)
    assert groups(course, ASSISTANT) == ["students"]
    deadline = time.monotonic() + 120  # the grader caches what the hub said about a token for 30 s
    while time.monotonic() < deadline:
        status = api(course, assistant, "grader", "GET", "formgrader/api/assignments").status_code
        if status == 403:
            break
        time.sleep(5)
    assert status == 403, "a demoted teacher keeps the formgrader"


def test_the_operator_logs_in_apart_from_the_lms_and_no_secret_reaches_the_log(lms):
    course, platform, _ = lms
    password = hubfleet_json(course.env, "credentials", course.name)["admin-password"]
    operator = requests.Session()
    form = operator.get(f"{course.url}/hub/operator-login", timeout=30)
    xsrf = cookie_for(operator, "_xsrf", "/hub/")
    wrong = operator.post(f"{course.url}/hub/operator-login", data={"username": "admin", "password": "nope",
                                                                    "_xsrf": xsrf}, timeout=30)
    assert form.status_code == 200 and wrong.status_code == 403
    right = operator.post(f"{course.url}/hub/operator-login", data={"username": "admin", "password": password,
                                                                    "_xsrf": xsrf}, timeout=30)
    assert right.status_code == 200 and urlsplit(right.url).path == "/hub/admin"
    assert operator.get(f"{course.url}/hub/api/user", timeout=30).json()["admin"] is True
    log = hub_log(course)
    assert password not in log and not [t for t in platform.tokens if t in log]
    assert not [t for t in platform.issued if t in log]
