from __future__ import annotations

import datetime as dt

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubfleet.descriptor import format_bytes, load_course, parse_course, parse_quantity
from hubfleet.errors import InvalidInput
from tests.conftest import EXAMPLES


def problems(data) -> dict[str, str]:
    with pytest.raises(InvalidInput) as info:
        parse_course(data)
    return {p.path: p.message for p in info.value.problems}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_valid(path):
    course = load_course(path, today=dt.date(2026, 11, 24))
    assert course.name and course.load.students > 0


def test_memory_without_unit_names_field_and_fix(workshop_data):
    workshop_data["load"]["memory_per_user"] = "512"
    assert problems(workshop_data) == {
        "load.memory_per_user": '"512" has no unit — write 512Mi or 1Gi',
    }


def test_all_errors_are_reported_at_once(workshop_data):
    workshop_data["name"] = "Bad Name"
    workshop_data["load"]["students"] = 0
    workshop_data["domain"] = "not a domain"
    workshop_data["colour"] = "blue"
    found = problems(workshop_data)
    assert set(found) == {"name", "load.students", "domain", "colour"}
    assert "DNS-safe" in found["name"]
    assert "unknown field" in found["colour"]


def test_end_before_start(workshop_data):
    workshop_data["dates"] = {"start": "2030-05-01", "end": "2030-04-01"}
    found = problems(workshop_data)
    assert "before dates.start" in found["dates.end"]


def test_end_in_the_past(workshop_data):
    workshop_data["dates"] = {"start": "2020-01-01", "end": "2020-02-01"}
    assert "in the past" in problems(workshop_data)["dates.end"]


def test_unknown_authenticator(workshop_data):
    workshop_data["authenticator"] = {"kind": "github"}
    msg = problems(workshop_data)["authenticator"]
    assert "unknown authenticator 'github'" in msg and "lti11" in msg


def test_lti_without_secret_source(workshop_data):
    workshop_data["authenticator"] = {"kind": "lti11"}
    assert problems(workshop_data) == {"authenticator.secret": "missing — this field is required"}


def test_bad_secret_source(workshop_data):
    workshop_data["authenticator"] = {"kind": "lti11", "secret": "hunter2"}
    msg = problems(workshop_data)["authenticator.secret"]
    assert "not a secret source" in msg and "generate" in msg
    assert "hunter2" in msg  # the bad value is echoed so the user sees which it was


def test_ldap_in_clear_to_remote_host_is_refused(workshop_data):
    workshop_data["authenticator"] = {"kind": "ldap", "server_uri": "ldap://ldap.example.edu",
                                      "bind_dn_template": ["uid={username},dc=x"]}
    assert "starttls" in problems(workshop_data)["authenticator"]
    workshop_data["authenticator"]["starttls"] = True
    parse_course(workshop_data)


def test_bad_domain(workshop_data):
    workshop_data["domain"] = "localhost"
    assert "not a valid DNS name" in problems(workshop_data)["domain"]


def test_bad_date_format(workshop_data):
    workshop_data["dates"]["start"] = "next monday"
    assert "YYYY-MM-DD" in problems(workshop_data)["dates.start"]


def test_top_level_not_a_mapping():
    assert "mapping" in problems(["a", "b"])[""]


def test_yaml_syntax_error_names_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\nload: [unclosed\n")
    with pytest.raises(InvalidInput) as info:
        load_course(f)
    assert "line" in str(info.value) and "YAML" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(InvalidInput, match="no such file"):
        load_course(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text,size", [("512Mi", 512 * 2**20), ("1Gi", 2**30), ("1.5Gi", 3 * 2**29), ("2G", 2 * 10**9)])
def test_parse_quantity(text, size):
    assert parse_quantity(text) == size


def test_format_bytes_round_trip():
    assert format_bytes(512 * 2**20) == "512Mi"
    assert format_bytes(3 * 2**29) == "1.5Gi"


FIELDS = ["name", "title", "provider", "image", "authenticator", "load", "dates", "domain", "tls", "culling"]
junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS + ["load.students", "load.memory_per_user", "load.concurrent",
                                       "authenticator.kind", "dates.end", "culling.idle_timeout"]),
       value=junk)
def test_fuzzed_bad_values_give_field_named_messages(workshop_data, field, value):
    data = yaml.safe_load(yaml.safe_dump(workshop_data))
    target = data
    *parents, leaf = field.split(".")
    for p in parents:
        target = target[p]
    target[leaf] = value
    try:
        parse_course(data)
    except InvalidInput as exc:
        assert exc.exit_code == 2
        assert exc.problems, "an error must carry at least one problem"
        for p in exc.problems:
            assert p.message and isinstance(p.message, str)
        top = field.split(".")[0]
        assert any(p.path.startswith(top) for p in exc.problems), [str(p) for p in exc.problems]


@pytest.mark.parametrize("bad", ['<script>alert(1)</script>', 'a"b', "Prof Smith"])
def test_admin_usernames_are_restricted(workshop_data, bad):
    workshop_data["authenticator"]["admin_users"] = [bad]
    assert "not a username" in problems(workshop_data)["authenticator.admin_users"]


def test_a_line_break_in_a_list_item_is_named_with_its_item(workshop_data):
    workshop_data["authenticator"]["admin_users"] = ["ok", "x\ny"]
    assert problems(workshop_data)["authenticator.admin_users"].startswith(
        "item 2 contains U+000A (a line break) at position 2")


def test_lti_identifiers_are_restricted(workshop_data):
    workshop_data["authenticator"] = {"kind": "lti13", "issuer": "https://lms.example.edu", "client_id": "a b",
                                      "deployment_ids": ["1", "x'y"], "authorize_url": "https://lms.example.edu/a",
                                      "jwks_url": "https://lms.example.edu/j"}
    found = problems(workshop_data)
    assert "not a valid client id" in found["authenticator.client_id"]
    assert "not a valid deployment id" in found["authenticator.deployment_ids"]


@pytest.mark.parametrize("url", ["https://acme.example.edu/dir#x", "https://acme.example.edu/a,b",
                                 "https://acme.example.edu/dir\n", "https://acme.example.edu/d'ir"])
def test_an_acme_directory_is_a_plain_url(workshop_data, url):
    workshop_data["tls"] = {"acme_server": url}
    assert "tls.acme_server" in problems(workshop_data)


@pytest.mark.parametrize("origin", ['https://lms.example.edu";', "https://lms.example.edu/path", "https://a b.edu",
                                    "javascript:alert(1)", "https://user@lms.example.edu"])
def test_an_lms_origin_is_an_origin_and_nothing_more(workshop_data, origin):
    workshop_data["authenticator"] = {"kind": "lti11", "secret": "generate", "lms_origin": origin}
    assert "authenticator.lms_origin" in problems(workshop_data)
