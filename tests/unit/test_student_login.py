"""Health as a student meets it: the LTI 1.1 launch hubfleet signs, and what the check does with the
account it logs in as. The logins themselves run against real hubs: the workshop's shared password
(tests/integration/test_workshop_e2e.py, `status`) and an LTI 1.1 course (tests/integration/test_lti11.py)."""

from __future__ import annotations

import pytest
from oauthlib.oauth1 import SIGNATURE_HMAC, SIGNATURE_TYPE_BODY, Client
from urllib.parse import parse_qsl, urlencode

from hubfleet.errors import HubfleetError
from hubfleet.health import Health, login_as_a_student
from hubfleet.oauth1 import base_url, sign_form

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("url", ["https://Stats-101.hub.localhost:32774/hub/lti/launch",
                                 "https://hub.example.edu:443/hub/lti/launch", "http://127.0.0.1/hub/lti/launch"])
def test_the_launch_is_signed_exactly_as_oauthlib_signs_a_moodle_launch(url):
    fields = {"user_id": "Zoë O'Brien", "roles": "Learner", "custom_next": "/hub/user-redirect/lab?x=1 2&y=~",
              "lti_message_type": "basic-lti-launch-request", "empty": ""}
    ours = sign_form(url, "course-key", "s3cret&=+/ü", fields, nonce="abc123", timestamp=1700000000)
    client = Client("course-key", client_secret="s3cret&=+/ü", signature_method=SIGNATURE_HMAC,
                    signature_type=SIGNATURE_TYPE_BODY, nonce="abc123", timestamp="1700000000")
    _, _, body = client.sign(url, http_method="POST", body=urlencode(fields), headers=FORM)
    theirs = dict(parse_qsl(body, keep_blank_values=True))
    assert ours == theirs


def test_the_signed_url_drops_the_default_port_and_the_query():
    assert base_url("HTTPS://Hub.Example.edu:443/hub/lti/launch?x=1") == "https://hub.example.edu/hub/lti/launch"
    assert base_url("https://hub.localhost:8443/p") == "https://hub.localhost:8443/p"


class Hub:
    """The hub API as the check uses it: which accounts it was asked to remove."""

    def __init__(self, fail: bool = False):
        self.deleted: list[str] = []
        self.fail = fail

    def delete_user(self, name: str) -> None:
        if self.fail:
            raise HubfleetError("hub API DELETE answered 500")
        self.deleted.append(name)


def test_the_account_the_check_made_is_removed_and_a_real_students_never():
    hub, health = Hub(), Health(api=True)
    login_as_a_student(health, hub, lambda session: "health-check-login", True, known={"alice"})
    assert health.student_login is True and hub.deleted == ["health-check-login"] and not health.problems
    hub, health = Hub(), Health(api=True)
    login_as_a_student(health, hub, lambda session: "alice", True, known={"alice"})
    assert health.student_login is True and hub.deleted == []


def test_a_refused_login_is_a_problem_that_names_why():
    def refused(session):
        raise HubfleetError("login as health-check-login was refused (403)")

    hub, health = Hub(), Health(api=True)
    login_as_a_student(health, hub, refused, True, known=set())
    assert health.student_login is False and not health.ok
    assert health.problems == ["a student cannot log in: login as health-check-login was refused (403)"]
    assert hub.deleted == []


def test_a_kind_hubfleet_cannot_log_in_as_is_not_a_problem():
    hub, health = Hub(), Health(api=True)
    login_as_a_student(health, hub, lambda session: None, True, known=set())
    assert health.student_login is None and not health.problems
