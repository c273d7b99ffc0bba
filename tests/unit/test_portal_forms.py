"""The request form as data: every problem the descriptor model finds lands beside the field it came from."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubfleet.portal.config import PortalConfig
from hubfleet.portal.forms import FORM_ERROR, share_at_once, validate_request
from hubfleet.portal.models import ImageRow
from tests.unit.test_portal import future, valid_form

IMAGES = [ImageRow(image="hubfleet/notebook:latest", label="Python", memory_per_user="256Mi", cpu_per_user=0.1),
          ImageRow(image="hubfleet/big:1", label="Huge", memory_per_user="64Gi", cpu_per_user=32)]
LTI13 = dict(auth_kind="lti13", lti13_issuer="https://moodle.example.edu", lti13_client_id="abc",
             lti13_authorize_url="https://moodle.example.edu/mod/lti/auth.php",
             lti13_jwks_url="https://moodle.example.edu/mod/lti/certs.php")
LDAP = dict(auth_kind="ldap", ldap_server_uri="ldaps://ldap.example.edu",
            ldap_bind_dn_template="uid={username},ou=people,dc=example,dc=edu")


def check(form: dict, config: PortalConfig | None = None, **kwargs):
    return validate_request(form, config or PortalConfig(), IMAGES, **kwargs)


@pytest.mark.parametrize("changes, field, words", [
    ({"name": "Python 101"}, "name", "is not DNS-safe"),
    ({"name": ""}, "name", "missing — this field is required"),
    ({"title": ""}, "title", "missing"),
    ({"students": "lots"}, "students", "is not a number"),
    ({"students": "0"}, "students", "out of range"),
    ({"at_once": ""}, "at_once", "how many students work at the same time"),
    ({"at_once": "1.5"}, "at_once", "not a whole number"),
    ({"at_once": "9"}, "at_once", "more than the 5 students expected"),
    ({"start": "01/02/2027"}, "start", "is not a date — write YYYY-MM-DD"),
    ({"end": "2020-01-01"}, "end", "is in the past"),
    ({"start": future(20), "end": future(10)}, "end", "is before the first day"),
    ({"image": "evil/image:1"}, "image", "that one is not offered"),
    ({"image": "hubfleet/big:1", "students": "200", "at_once": "200"}, "at_once", "do not fit"),
    ({"auth_kind": "kerberos"}, "auth_kind", "choose how students log in"),
    ({**LTI13, "lti13_issuer": "http://moodle.example.edu"}, "lti13_issuer", "must use https://"),
    ({**LTI13, "lti13_client_id": ""}, "lti13_client_id", "missing"),
    ({"auth_kind": "lti11", "lti11_lms_origin": "not a url"}, "lti11_lms_origin", "is not an origin"),
    ({"auth_kind": "lti11", "lti11_lms_origin": "https://lms.example.edu/\";x"}, "lti11_lms_origin", "is not an origin"),
    ({"auth_kind": "lti11", "lti11_username_key": "shoe_size"}, "lti11_username_key", "is not a launch field"),
    ({**LDAP, "ldap_server_uri": "ldap://ldap.example.edu"}, "ldap_server_uri", "would send passwords in clear"),
    ({**LDAP, "ldap_bind_dn_template": "uid=fixed,dc=example"}, "ldap_bind_dn_template", "no {username} placeholder"),
    ({"notes": "x" * 2001}, "notes", "keep it under 2000"),
])
def test_each_problem_is_reported_beside_its_field(changes, field, words):
    result = check(valid_form(**changes))
    assert not result.ok
    assert any(words in message for message in result.errors.get(field, [])), result.errors


def test_a_valid_form_becomes_the_descriptor_the_cli_would_accept():
    result = check(valid_form(**LDAP, admin_users="ada, bob", ldap_allowed_groups="cn=staff,ou=groups,dc=x\n"))
    assert result.ok, result.errors
    course = result.course
    assert course.domain == "python-101.hub.localhost" and course.provider == "docker"
    assert course.authenticator.bind_dn_template == ["uid={username},ou=people,dc=example,dc=edu"]
    assert course.authenticator.allowed_groups == ["cn=staff,ou=groups,dc=x"]  # DNs keep their commas
    assert course.authenticator.admin_users == ["ada", "bob"]
    assert result.plan.concurrent_users == 2


def test_secrets_are_generated_by_hubfleet_never_typed_into_the_form():
    for kind in ("shared-password", "lti11"):
        auth = check(valid_form(auth_kind=kind)).course.authenticator
        assert (getattr(auth, "password", None) or getattr(auth, "secret")) == "generate"


def test_the_domain_follows_the_settings():
    config = PortalConfig(base_domain="hubs.example.edu", teachers_choose_domain=True, provider="openstack")
    assert check(valid_form(), config).course.domain == "python-101.hubs.example.edu"
    assert check(valid_form(domain="python.cs.example.edu"), config).course.domain == "python.cs.example.edu"
    assert "is not a valid DNS name" in check(valid_form(domain="no_dots"), config).errors["domain"][0]
    assert check(valid_form(domain="ignored.example.edu")).course.domain == "python-101.hub.localhost"


def test_a_taken_name_is_refused_and_settings_problems_go_above_the_form():
    result = check(valid_form(), name_problem=lambda name: f"{name} is taken")
    assert result.errors == {"name": ["python-101 is taken"]}
    assert result.course is None


def test_problems_from_the_portal_settings_are_form_level():
    config = PortalConfig.model_construct(**{**PortalConfig().__dict__, "provider": "azure"})
    result = check(valid_form(), config)
    assert any("provider" in message for message in result.errors[FORM_ERROR])


@given(students=st.integers(1, 200_000), data=st.data())
def test_at_once_round_trips_through_the_share_sizing_uses(students, data):
    at_once = data.draw(st.integers(1, students))
    share = share_at_once(at_once, students)
    assert 0 < share <= 1 and max(1, math.ceil(students * share)) == at_once


@pytest.mark.parametrize("field", ["title", "name", "lti13_client_id"])
def test_a_value_past_every_bound_gets_one_message_the_fields_own(field):
    """A 5000-character title was told both "keep it under 4000" and "at most 200": only the second stays."""
    result = check(valid_form(**{**LTI13, field: "x" * 5000}))
    messages = result.errors[field]
    assert len(messages) == 1 and "4000" not in messages[0], messages


def test_messages_name_fields_by_their_labels_never_by_descriptor_paths():
    result = check(valid_form(start=future(20), end=future(10)))
    text = " ".join(m for messages in result.errors.values() for m in messages)
    assert "dates." not in text and "load." not in text and "the first day" in text
