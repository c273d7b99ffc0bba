from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from hubfleet.cli import cli
from tests.conftest import EXAMPLES


@pytest.fixture
def run(tmp_path):
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, ["--state-dir", str(tmp_path / "state"), *args], catch_exceptions=False)

    return invoke


@pytest.fixture
def descriptor(tmp_path, workshop_data):
    def write(data=None):
        path = tmp_path / "course.yaml"
        path.write_text(yaml.safe_dump(data or workshop_data))
        return str(path)

    return write


def test_help_teaches_by_example(run):
    result = run("--help")
    assert result.exit_code == 0
    assert "hubfleet create examples/workshop.yaml" in result.output
    for verb in ("validate", "plan", "list", "status", "credentials"):
        sub = run(verb, "--help")
        assert sub.exit_code == 0 and "Example" in sub.output, verb


def test_validate_ok(run, descriptor):
    result = run("validate", descriptor())
    assert result.exit_code == 0
    assert "is valid: course 'workshop'" in result.output


def test_validate_bad_exits_2_lists_every_problem(run, descriptor, workshop_data, tmp_path):
    workshop_data["load"]["memory_per_user"] = "512"
    workshop_data["name"] = "UPPER"
    result = run("validate", descriptor(workshop_data))
    assert result.exit_code == 2
    assert '- load.memory_per_user: "512" has no unit — write 512Mi or 1Gi' in result.output
    assert "- name: 'UPPER' is not DNS-safe" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "state").exists(), "validate must write nothing"


def test_validate_schema_describes_every_field(run):
    schema = json.loads(run("validate", "--schema").output)
    assert schema["additionalProperties"] is False
    for name, field in schema["properties"].items():
        assert field.get("description"), name


def test_plan_json(run, descriptor):
    result = run("plan", descriptor(), "--json")
    assert result.exit_code == 0
    plan = json.loads(result.output)
    assert plan["concurrent_users"] == 15 and len(plan["hosts"]) == 1
    assert plan["limits"] == {"memory": "512Mi", "cpu": 0.5, "disk": "1Gi"}


@pytest.mark.parametrize("example", ["mooc-queues", "moodle-course", "teaching-ldap", "workshop"])
def test_plan_every_example(run, example):
    result = run("plan", str(EXAMPLES / f"{example}.yaml"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["hosts"][0]["role"] == "hub"


def test_mooc_needs_several_hosts(run):
    plan = json.loads(run("plan", str(EXAMPLES / "mooc-queues.yaml"), "--json").output)
    assert plan["concurrent_users"] == 400 and len(plan["hosts"]) > 1
    assert plan["cost_per_day"] > 0


def test_bad_flag_is_a_usage_error(run, descriptor):
    result = run("plan", descriptor(), "--hosts", "0")
    assert result.exit_code == 2 and "--hosts" in result.output


def test_list_empty_and_unknown_status(run):
    assert "no courses yet" in run("list").output
    assert json.loads(run("list", "--json").output) == []
    result = run("status", "nope")
    assert result.exit_code == 3 and "no course named 'nope'" in result.output


def test_credentials_of_unknown_course(run):
    result = run("credentials", "nope")
    assert result.exit_code == 3


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

anything = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12)),
                        lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                        max_leaves=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["name", "load", "authenticator", "dates", "domain", "tls", "culling", "image"]),
       value=anything)
def test_cli_never_shows_a_traceback_for_a_bad_descriptor(run, descriptor, workshop_data, field, value):
    data = dict(workshop_data, **{field: value})
    result = run("validate", descriptor(data))
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert f"- {field}" in result.output, result.output


@pytest.mark.parametrize("example, server", [("workshop", "local"), ("mooc-queues", "letsencrypt")])
def test_plan_says_where_the_certificate_comes_from(run, tmp_path, example, server):
    data = yaml.safe_load((EXAMPLES / f"{example}.yaml").read_text())
    data.pop("tls")  # the provider's default
    path = tmp_path / "course.yaml"
    path.write_text(yaml.safe_dump(data))
    https = json.loads(run("plan", str(path), "--json").output)["https"]
    assert https["url"] == f"https://{data['domain']}"
    assert https["acme_directory"] == {"local": "local",
                                       "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory"}[server]
    text = run("plan", str(path)).output
    assert f"https: https://{data['domain']}, certificate from" in text and "needs:" in text


def test_validate_names_the_certificate_and_refuses_plain_http(run, descriptor, workshop_data):
    workshop_data.pop("tls")
    result = run("validate", descriptor(workshop_data))
    assert result.exit_code == 0 and "served at https://workshop.hub.localhost with a certificate from the " \
                                      "embedded ACME server" in result.output
    workshop_data["tls"] = None
    result = run("validate", descriptor(workshop_data))
    assert result.exit_code == 2 and "- tls: HTTPS cannot be turned off" in result.output


def test_a_course_recorded_before_https_was_the_default_reads_as_https(workshop_data):
    from hubfleet.descriptor import parse_recorded

    recorded = {**workshop_data, "tls": None, "dates": {"start": "2020-01-01", "end": "2020-02-01"}}
    course = parse_recorded(recorded)
    assert course.tls.acme_server == "local"
