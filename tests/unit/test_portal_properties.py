"""No form post, URL or operator action makes the portal answer 500, and every refusal names its field.

Property tests (Hypothesis) through the request form's checker and through Flask's test client
(SQLite, a fake `create` injected into the app factory: nothing is created). Bounded: they add
seconds to the unit run.
"""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubfleet.portal.config import PortalConfig
from hubfleet.portal.forms import CHECKBOXES, FORM_ERROR, TEXT_FIELDS, validate_request
from hubfleet.portal.models import ImageRow
from tests.unit.test_portal import OPERATOR, TEACHER, Client, FakeHub, make_app, portal_of, valid_form

EXAMPLES = int(os.environ.get("HUBFLEET_PROPERTY_EXAMPLES", 150))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
IMAGES = [ImageRow(image="hubfleet/notebook:latest", label="Python", memory_per_user="256Mi", cpu_per_user=0.1)]
KIND_FIELDS = {
    "shared-password": {},
    "lti11": {"lti11_consumer_key": "queues", "lti11_username_key": "user_id",
              "lti11_lms_origin": "https://courses.edx.org"},
    "lti13": {"lti13_issuer": "https://moodle.example.edu", "lti13_client_id": "abc", "lti13_deployment_ids": "1\n2",
              "lti13_authorize_url": "https://moodle.example.edu/mod/lti/auth.php",
              "lti13_jwks_url": "https://moodle.example.edu/mod/lti/certs.php", "lti13_username_key": "sub"},
    "ldap": {"ldap_server_uri": "ldaps://ldap.example.edu",
             "ldap_bind_dn_template": "uid={username},ou=people,dc=example,dc=edu"},
}
ODD = ["", " ", "²", "³³", "٣٠", "１２", "Ⅻ", "9" * 5000, "9" * 30, "999999999", "-1", "0", "1.5", "1e3", "nan", "inf",
       "0x10", "x\n", "a\u2028b", "a\x00b", "\x1b[31m", "\t", "{{ 7 * 7 }}", "'; DROP TABLE portal_requests; --",
       "<script>alert(1)</script>", "https://a\"b.example.edu", "ldap://x y", "uid={username}{x}", "é" * 3000,
       "😀", "shared-password", "lti11", "lti13", "ldap", "kerberos", "on", "hubfleet/notebook:latest",
       "2027-02-30", "2027-01-01", "01/02/2027", "\r\n", "a,b,,c", "cn=x,dc=y\ncn=z"]
text = st.one_of(st.sampled_from(ODD), st.text(max_size=30), st.integers(-10**30, 10**30).map(str))


@st.composite
def forms(draw) -> dict[str, str]:
    kind = draw(st.sampled_from(sorted(KIND_FIELDS) + ["kerberos"]))
    form = valid_form(auth_kind=kind, **KIND_FIELDS.get(kind, {}))
    fields = list(TEXT_FIELDS) + list(CHECKBOXES)
    for name in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=4, unique=True)):
        if draw(st.booleans()) or name not in form:
            form[name] = draw(text)
        else:
            del form[name]
    if draw(st.integers(0, 4)) == 0:
        form[draw(st.text(min_size=1, max_size=12))] = draw(text)
    return form


@PROPERTY
@given(forms())
def test_every_form_is_a_course_or_errors_beside_fields_never_an_exception(form):
    started = time.monotonic()
    result = validate_request(form, PortalConfig(), IMAGES)
    assert time.monotonic() - started < 3
    if result.ok:
        assert result.course is not None and result.plan is not None
        assert result.course.tls is not None  # every hub a teacher asks for is HTTPS
        return
    assert result.errors, "a refused form says why"
    assert FORM_ERROR not in result.errors, f"a teacher's mistake must show beside its field: {result.errors}"
    for name, messages in result.errors.items():
        assert name in TEXT_FIELDS or name in CHECKBOXES, name
        assert messages and all(isinstance(m, str) and m and len(m) < 1500 for m in messages), messages


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    fake = FakeHub()
    app = make_app(tmp_path_factory.mktemp("portal-props") / "state", fake)
    teacher, operator = Client(app, TEACHER), Client(app, OPERATOR)
    first = teacher.submit(valid_form(name="first-course"))
    assert first.status_code == 302
    yield app, teacher, operator, int(first.headers["Location"].rsplit("/", 1)[1])
    portal_of(app).shutdown()


def not_a_server_error(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    assert "Traceback" not in response.text


@PROPERTY
@given(form=forms())
def test_random_form_posts_never_answer_500(portal, form):
    app, teacher, _, _ = portal
    response = teacher.submit(form)
    not_a_server_error(response)
    assert response.status_code in (302, 400)
    if response.status_code == 400:
        assert 'class="field-error"' in response.text or 'class="form-error' in response.text or \
            "aria-invalid" in response.text


number = st.one_of(st.integers(-5, 10**25).map(str), st.sampled_from(["²", "٣", "1e3", "0x1", "%00", "１", "-0", "9" * 80]))


@PROPERTY
@given(request_id=number, after=st.one_of(number, st.text(max_size=20)),
       tail=st.sampled_from(["", "/events", "/archive"]))
def test_random_request_numbers_and_cursors_never_answer_500(portal, request_id, after, tail):
    _, teacher, operator, _ = portal
    for client in (teacher, operator):
        not_a_server_error(client.http.get(f"/requests/{request_id}{tail}", query_string={"after": after}))


@PROPERTY
@given(request_id=number, action=st.sampled_from(["approve", "reject", "retry", "destroy"]),
       reason=text, without_archive=st.sampled_from(["", "on", "²"]))
def test_random_operator_actions_never_answer_500(portal, request_id, action, reason, without_archive):
    _, _, operator, _ = portal
    operator.get("/operator/")
    response = operator.post(f"/operator/requests/{request_id}/{action}",
                             {"reason": reason, "without_archive": without_archive})
    not_a_server_error(response)


@PROPERTY
@given(image=text, label=text, memory=text, cpu=text, remove=st.one_of(st.just(""), text))
def test_random_image_list_edits_never_answer_500_and_name_their_field(portal, image, label, memory, cpu, remove):
    _, _, operator, _ = portal
    operator.get("/operator/images")
    response = operator.post("/operator/images", {"image": image, "label": label, "memory_per_user": memory,
                                                  "cpu_per_user": cpu, "remove": remove})
    not_a_server_error(response)
    if response.status_code == 400:
        assert "field-error" in response.text


@settings(PROPERTY, max_examples=max(10, EXAMPLES // 5))  # each one hashes with argon2, slow on purpose
@given(login=text, password=st.one_of(text, st.text(min_size=2000, max_size=3000)),
       address=st.sampled_from(["192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1", "unknown", "fe80::1%eth0"]))
def test_random_sign_ins_never_answer_500(portal, login, password, address):
    app, _, _, _ = portal
    client = Client(app, address=address)
    response = client.sign_in(login, password)
    not_a_server_error(response)
    assert response.status_code in (302, 401, 429)
