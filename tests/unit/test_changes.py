"""`hubfleet plan --diff`: what a re-run of create would change on a live course, and whom it affects."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from click.testing import CliRunner

from hubfleet.changes import GENERIC, compare, differences
from hubfleet.cli import cli
from hubfleet.descriptor import parse_course
from hubfleet.sizing import load_catalogue, plan_course
from hubfleet.state import StateStore
from tests.conftest import future

LDAP_PASSWORD = "file:/etc/hubfleet/very-secret-bind-password"
NEW_LDAP_PASSWORD = "env:NUMERICS_BIND_PASSWORD_2027"


def diff(old_data: dict, new_data: dict) -> list:
    old, new = parse_course(old_data), parse_course(new_data)
    catalogue = load_catalogue(old.provider)
    return compare(old, new, plan_course(old, catalogue), plan_course(new, catalogue))


def by_path(changes: list) -> dict:
    return {c.path: c for c in changes}


def ldap_data(workshop_data: dict) -> dict:
    data = copy.deepcopy(workshop_data)
    data["authenticator"] = {
        "kind": "ldap", "server_uri": "ldaps://ldap.example.edu",
        "search": {"bind_dn": "cn=hub,ou=services,dc=example,dc=edu", "bind_password": LDAP_PASSWORD,
                   "base_dn": "ou=people,dc=example,dc=edu"},
    }
    return data


def test_unchanged_descriptor_changes_nothing(workshop_data):
    assert diff(workshop_data, copy.deepcopy(workshop_data)) == []


def test_image_change_says_when_students_get_it(workshop_data):
    new = copy.deepcopy(workshop_data)
    new["image"] = "hubfleet/notebook:2027.1"
    changes = diff(workshop_data, new)
    assert [c.path for c in changes] == ["image"]
    image = changes[0]
    assert (image.old, image.new) == ("hubfleet/notebook:latest", "hubfleet/notebook:2027.1")
    assert image.effect.startswith("placed on every host first; each student gets it at their next server start")
    assert "running servers keep the old one" in image.effect


def test_new_contacts_change_who_is_mailed_and_nothing_on_the_hub(workshop_data):
    new = copy.deepcopy(workshop_data)
    new["contacts"] = ["ada@example.edu"]
    [change] = diff(workshop_data, new)
    assert change.path == "contacts" and "ada@example.edu" in change.new
    assert change.effect.startswith("who reconcile mails about the course") and "nothing on the hub" in change.effect


def test_limit_change_applies_at_each_students_next_start(workshop_data):
    new = copy.deepcopy(workshop_data)
    new["load"]["memory_per_user"] = "1Gi"
    found = by_path(diff(workshop_data, new))
    memory = found["load.memory_per_user"]
    assert (memory.old, memory.new) == ("512Mi", "1Gi")
    assert memory.effect.startswith("at each student's next server start")


def test_more_students_more_hosts_in_the_plan(workshop_data):
    new = copy.deepcopy(workshop_data)
    new["load"]["students"] = 300  # 150 at once: more than one docker host carries
    found = by_path(diff(workshop_data, new))
    assert (found["load.students"].old, found["load.students"].new) == ("30", "300")
    hosts = found["plan.hosts"]
    assert int(hosts.new) > int(hosts.old) == 1
    added = int(hosts.new) - int(hosts.old)
    assert f"hosts per the new plan: 1 → {hosts.new} ({added} added" in found["load.students"].effect
    assert hosts.effect.startswith(f"{added} host(s) added at the next `hubfleet create`")
    assert int(found["plan.servers_at_once"].new) > int(found["plan.servers_at_once"].old)


def test_fewer_students_say_create_removes_no_host(workshop_data):
    big = copy.deepcopy(workshop_data)
    big["load"]["students"] = 300
    hosts = by_path(diff(big, workshop_data))["plan.hosts"]
    assert hosts.new == "1"
    assert "`hubfleet create` removes no host" in hosts.effect
    assert "hubfleet scale workshop --hosts 1" in hosts.effect


def test_authenticator_change_says_who_logs_in_how(workshop_data):
    new = copy.deepcopy(workshop_data)
    new["authenticator"] = {"kind": "lti11", "secret": "generate", "lms_origin": "https://courses.edx.org"}
    changes = diff(workshop_data, new)
    # One change: the old kind's fields (the shared password among them) mean nothing beside the new kind's.
    assert [c.path for c in changes] == ["authenticator.kind"]
    kind = changes[0]
    assert (kind.old, kind.new) == ("shared-password", "lti11")
    assert "students log in the new way" in kind.effect
    assert "volumes keyed by hub username" in kind.effect and "empty notebook" in kind.effect
    assert "`hubfleet lti-config workshop`" in kind.effect  # an LMS login needs the tool's settings there


def test_a_secret_is_never_shown(workshop_data):
    old = ldap_data(workshop_data)
    new = copy.deepcopy(old)
    new["authenticator"]["search"]["bind_password"] = NEW_LDAP_PASSWORD
    changes = diff(old, new)
    assert [c.path for c in changes] == ["authenticator.search.bind_password"]
    change = changes[0]
    assert change.secret and change.old is None and change.new is None and change.shown == "(changed)"
    text = json.dumps([c.to_dict() for c in changes]) + change.shown + change.effect
    assert LDAP_PASSWORD not in text and NEW_LDAP_PASSWORD not in text


def test_a_secret_inside_a_new_section_is_hidden_too(workshop_data):
    old = ldap_data(workshop_data)
    del old["authenticator"]["search"]
    old["authenticator"]["bind_dn_template"] = ["uid={username},ou=people,dc=example,dc=edu"]
    changes = by_path(diff(old, ldap_data(workshop_data)))
    search = changes["authenticator.search"]
    assert (search.old, search.new) == ("(none)", '{"bind_dn": "cn=hub,ou=services,dc=example,dc=edu", '
                                        '"bind_password": "(secret)", "base_dn": "ou=people,dc=example,dc=edu", '
                                        '"user_attribute": "uid"}')
    assert LDAP_PASSWORD not in json.dumps([c.to_dict() for c in changes.values()])


@pytest.mark.parametrize(("path", "value", "says"), [
    ("domain", "python.hub.localhost", "the old URL stops working"),
    ("provider", "openstack", "refused: `hubfleet create` does not move a course from docker to openstack"),
    ("dates.end", future(20), "the term's timers (`hubfleet reconcile`) follow the new end"),
    ("title", "Python again", "shown on the hub's login page"),
])
def test_fields_that_matter_have_their_own_sentence(workshop_data, path, value, says):
    new = copy.deepcopy(workshop_data)
    *parents, leaf = path.split(".")
    target = new
    for key in parents:
        target = target[key]
    target[leaf] = value
    old, changed = parse_course(workshop_data), parse_course(new)
    found = by_path(compare(old, changed, plan_course(old, load_catalogue(old.provider)),
                            plan_course(changed, load_catalogue(changed.provider))))
    assert says in found[path].effect
    assert found[path].new == value


def test_a_field_without_its_own_sentence_is_still_reported(workshop_data):
    new = copy.deepcopy(workshop_data)
    new["culling"]["idle_timeout"] = 900
    change = by_path(diff(workshop_data, new))["culling.idle_timeout"]
    assert (change.old, change.new, change.effect) == ("1800", "900", GENERIC)


def test_differences_walk_any_mapping():
    # A field the model gains later is reported without a line of code for it; absent and null are one.
    old = {"a": 1, "later": {"x": [1, 2], "y": {"z": 1}}, "gone": None, "section": None}
    new = {"a": 1, "later": {"x": [1, 3], "y": {"z": 2}}, "added": None, "section": {"on": True}}
    assert differences(old, new) == [("later.x", [1, 2], [1, 3]), ("later.y.z", 1, 2),
                                     ("section", None, {"on": True})]


# --- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def live(tmp_path, workshop_data):
    """A store in tmp_path holding the workshop as its last create recorded it."""
    store = StateStore(tmp_path / "state")
    course = parse_course(ldap_data(workshop_data))
    store.upsert(course.name, provider=course.provider, descriptor=course.model_dump(mode="json"))
    store.update(course.name, status="ready", outputs={"flavor": "d.xlarge", "flavors": None, "hosts_wanted": None})
    return store


def plan_diff(tmp_path, data: dict, *args: str):
    path = tmp_path / "course.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return CliRunner().invoke(cli, ["--state-dir", str(tmp_path / "state"), "plan", str(path), "--diff", *args],
                              catch_exceptions=False), str(path)


def test_cli_diff_lists_changes_and_how_to_apply(tmp_path, workshop_data, live):
    new = ldap_data(workshop_data)
    new["image"] = "hubfleet/notebook:2027.1"
    new["load"]["students"] = 300
    new["authenticator"]["search"]["bind_password"] = NEW_LDAP_PASSWORD
    result, path = plan_diff(tmp_path, new)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "workshop (ready):" in out
    assert "  image: hubfleet/notebook:latest → hubfleet/notebook:2027.1\n" in out
    assert "      placed on every host first; each student gets it at their next server start" in out
    assert "  load.students: 30 → 300\n" in out
    assert "  plan.hosts: 1 → " in out
    assert "  authenticator.search.bind_password: (changed)\n" in out
    assert out.rstrip().endswith(f"apply with: hubfleet create {path}")
    assert LDAP_PASSWORD not in result.output and NEW_LDAP_PASSWORD not in result.output


def test_cli_diff_json(tmp_path, workshop_data, live):
    new = ldap_data(workshop_data)
    new["image"] = "hubfleet/notebook:2027.1"
    new["authenticator"]["search"]["bind_password"] = NEW_LDAP_PASSWORD
    result, _ = plan_diff(tmp_path, new, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["course"] == "workshop"
    assert [c["path"] for c in data["changes"]] == ["image", "authenticator.search.bind_password"]
    assert data["changes"][1] == {"path": "authenticator.search.bind_password", "old": None, "new": None,
                                  "effect": data["changes"][1]["effect"], "secret": True}
    assert data["plan"]["old"]["hosts"] == data["plan"]["new"]["hosts"]
    assert LDAP_PASSWORD not in result.output and NEW_LDAP_PASSWORD not in result.output


def test_cli_diff_unchanged(tmp_path, workshop_data, live):
    result, path = plan_diff(tmp_path, ldap_data(workshop_data))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"workshop (ready): nothing would change\napply with: hubfleet create {path}\n"
    json_result, _ = plan_diff(tmp_path, ldap_data(workshop_data), "--json")
    assert json.loads(json_result.stdout)["changes"] == []


def test_cli_diff_keeps_the_recorded_host_count(tmp_path, workshop_data, live):
    # `create --hosts 2` (or `scale`) chose two hosts: a re-run keeps them, so the diff does too.
    live.update("workshop", outputs={"hosts_wanted": 2})
    new = ldap_data(workshop_data)
    new["image"] = "hubfleet/notebook:2027.1"
    result, _ = plan_diff(tmp_path, new, "--json")
    data = json.loads(result.stdout)
    assert len(data["plan"]["old"]["hosts"]) == len(data["plan"]["new"]["hosts"]) == 2
    assert [c["path"] for c in data["changes"]] == ["image"]


def test_cli_diff_unknown_course_exits_3(tmp_path, workshop_data):
    result, path = plan_diff(tmp_path, workshop_data)
    assert result.exit_code == 3
    assert "no live course named 'workshop' to compare with" in result.stderr
    assert f"`hubfleet plan {path}` without --diff sizes a new one" in result.stderr


def test_cli_diff_archived_course_exits_3(tmp_path, workshop_data, live):
    live.update("workshop", status="archived")
    result, _ = plan_diff(tmp_path, workshop_data)
    assert result.exit_code == 3
    assert "no live course named 'workshop'" in result.stderr


def test_cli_plan_without_diff_unchanged(tmp_path, workshop_data, live):
    path = tmp_path / "course.yaml"
    path.write_text(yaml.safe_dump(workshop_data, allow_unicode=True))
    result = CliRunner().invoke(cli, ["--state-dir", str(tmp_path / "state"), "plan", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert "changes" not in json.loads(result.stdout) and json.loads(result.stdout)["course"] == "workshop"
