"""`hubfleet lti-config` and `hubfleet.lti.lti_config`: what an LMS administrator types in."""

from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner

from hubfleet.authenticators import kind_of
from hubfleet.cli import cli
from hubfleet.descriptor import parse_course
from hubfleet.errors import HubfleetError
from hubfleet.lti import lti_config
from hubfleet.state import StateStore

URL = "https://queues.hub.example.edu"
LTI11 = {"kind": "lti11", "secret": "generate", "lms_origin": "https://courses.edx.org"}
LTI13 = {"kind": "lti13", "issuer": "https://moodle.example.edu", "client_id": "tool-7", "deployment_ids": ["1"],
         "authorize_url": "https://moodle.example.edu/mod/lti/auth.php",
         "jwks_url": "https://moodle.example.edu/mod/lti/certs.php"}


@pytest.fixture
def state(tmp_path, workshop_data):
    store = StateStore(tmp_path / "state")

    def add(authenticator: dict, *, url: str | None = URL, name: str = "queues", **extra) -> StateStore:
        data = copy.deepcopy(workshop_data)
        data.update(name=name, authenticator=authenticator, **extra)
        course = parse_course(data)
        store.upsert(name, provider="docker", descriptor=course.model_dump(mode="json"))
        kind_of(course).ensure_secrets(store, course)
        if url:
            store.update(name, outputs={"url": url})
        return store

    return add


def run(store: StateStore, *args: str):
    return CliRunner().invoke(cli, ["--state-dir", str(store.dir), *args], catch_exceptions=False)


def test_lti11_config_has_the_edx_passport_and_moodle_fields(state):
    store = state(LTI11)
    secret = store.get_secret("queues", "lti11-secret")
    cfg = lti_config(store, "queues")
    assert cfg["launch_url"] == f"{URL}/hub/lti/launch"
    assert (cfg["consumer_key"], cfg["consumer_secret"]) == ("queues", secret)
    assert cfg["edx_lti_passport"] == f"queues:queues:{secret}"
    assert cfg["custom_parameter_to_open_a_notebook"] == "next=/hub/user-redirect/lab/tree/intro.ipynb"
    assert all(isinstance(v, str) for v in cfg.values()), "the portal shows a flat mapping of text"


def test_lti13_config_has_the_four_moodle_urls(state):
    cfg = lti_config(state(LTI13), "queues")
    assert cfg["tool_url"] == f"{URL}/hub/user-redirect/lab"
    assert cfg["initiate_login_url"] == f"{URL}/hub/lti13/oauth_login"
    assert cfg["redirection_uris"] == f"{URL}/hub/lti13/oauth_callback"
    assert cfg["public_keyset_url"] == f"{URL}/hub/lti13/jwks"
    assert cfg["client_id"] == "tool-7" and cfg["deployment_ids"] == "1"
    assert not any("secret" in key for key in cfg)


def test_not_lti_or_not_created_is_said_plainly(state, workshop_data):
    store = state({"kind": "shared-password"}, name="shared")
    with pytest.raises(HubfleetError, match="logs in with shared-password, not LTI"):
        lti_config(store, "shared")
    state(LTI11, url=None, name="fresh")
    with pytest.raises(HubfleetError, match="no URL yet"):
        lti_config(store, "fresh")


def test_cli_prints_what_to_type_and_warns_about_the_secret(state):
    store = state(LTI11)
    secret = store.get_secret("queues", "lti11-secret")
    result = run(store, "lti-config", "queues")
    assert result.exit_code == 0
    assert f"  LTI passport:        queues:queues:{secret}\n" in result.stdout
    assert f"  LTI URL:             {URL}/hub/lti/launch\n" in result.stdout
    assert f"  Shared secret:       {secret}\n" in result.stdout
    assert "paste it only into the LMS" in result.stderr
    as_json = run(store, "lti-config", "queues", "--json")
    assert json.loads(as_json.stdout)["consumer_secret"] == secret and as_json.stderr == ""


def test_cli_lti13_lines(state):
    result = run(state(LTI13), "lti-config", "queues")
    assert result.exit_code == 0
    assert f"  Initiate login URL:  {URL}/hub/lti13/oauth_login\n" in result.stdout
    assert f"  Redirection URI(s):  {URL}/hub/lti13/oauth_callback\n" in result.stdout
    assert f"  Public keyset:       {URL}/hub/lti13/jwks\n" in result.stdout
    assert "  LTI version:         LTI 1.3\n" in result.stdout


def test_cli_errors_exit_non_zero(state):
    store = state({"kind": "shared-password"})
    assert run(store, "lti-config", "nope").exit_code == 3
    refused = run(store, "lti-config", "queues")
    assert refused.exit_code == 1 and "not LTI" in refused.stderr


def test_help_teaches_by_example(state):
    result = run(state(LTI11), "lti-config", "--help")
    assert result.exit_code == 0 and "Example" in result.output


def test_a_graded_course_tells_the_lms_administrator_about_grades_and_the_class_list(state):
    graded = {**LTI13, "token_url": "https://moodle.example.edu/mod/lti/token.php"}
    store = state(graded, grading="nbgrader")
    text = run(store, "lti-config", "queues").output
    assert "Access token URL:      https://moodle.example.edu/mod/lti/token.php" in text
    assert "Assignment and Grade Services" in text and "Names and Role Provisioning" in text
    assert "assignment=<nbgrader assignment>" in text
    plain = lti_config(state(LTI13, name="plain"), "plain")
    assert plain["services"] == "" and plain["platform_token_url"] == ""
    edx = run(state(LTI11, grading="nbgrader", name="edx"), "lti-config", "edx").output
    assert 'custom parameter assignment=<nbgrader assignment> (edX: ["assignment=ps1"])' in edx
