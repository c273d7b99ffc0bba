"""No descriptor breaks hubfleet: mutated valid ones and random YAML give a Course or an InvalidInput.

Property tests (Hypothesis), bounded so they add seconds to the unit run. Every refusal carries
field paths and messages; nothing else is ever raised; nothing takes long; and whatever is accepted
is usable downstream (planned, turned into role variables, written back and read again unchanged).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubfleet import tls
from hubfleet.authenticators import kind_of
from hubfleet.descriptor import Course, parse_course
from hubfleet.errors import InvalidInput
from hubfleet.inputs import MAX_DEPTH, MAX_NODES, load_yaml, read_yaml, text_problem
from hubfleet.providers import Host
from hubfleet.sizing import load_catalogue, plan_course

TOO_SLOW = 3.0  # seconds for one descriptor, on a busy shared machine; honest ones take milliseconds
TODAY = dt.date.today()
DATES = {"start": (TODAY + dt.timedelta(days=1)).isoformat(), "end": (TODAY + dt.timedelta(days=60)).isoformat()}
LOAD = {"students": 30, "concurrent": 0.5, "memory_per_user": "512Mi", "cpu_per_user": 0.5, "disk_per_user": "1Gi"}
AUTHENTICATORS = [
    {"kind": "shared-password", "password": "generate", "admin_users": ["teacher"]},
    {"kind": "lti11", "secret": "generate", "username_key": "user_id", "lms_origin": "https://courses.edx.org"},
    {"kind": "lti13", "issuer": "https://moodle.example.edu", "client_id": "tool-7", "deployment_ids": ["1"],
     "authorize_url": "https://moodle.example.edu/mod/lti/auth.php",
     "jwks_url": "https://moodle.example.edu/mod/lti/certs.php", "lms_origin": "https://moodle.example.edu"},
    {"kind": "ldap", "server_uri": "ldaps://ldap.example.edu",
     "bind_dn_template": ["uid={username},ou=people,dc=example,dc=edu"],
     "search": {"bind_dn": "cn=hub,dc=example,dc=edu", "bind_password": "env:LDAP_PW", "base_dn": "dc=example,dc=edu"},
     "allowed_groups": ["cn=numerics,ou=groups,dc=example,dc=edu"], "admin_users": ["prof.smith"]},
]
TLS = [None, {"acme_server": "local", "email": "ops@example.edu"}, {"acme_server": "letsencrypt"},
       {"acme_server": "https://acme.example.edu/directory"}, {"email": "ops@example.edu"}]


def valid(auth: int, provider: str, tls_settings: int) -> dict:
    data = {"name": "stats-101", "title": "Statistics 101 — Ünïcödé ✓", "provider": provider,
            "image": "hubfleet/notebook:latest", "authenticator": copy.deepcopy(AUTHENTICATORS[auth]),
            "load": dict(LOAD), "dates": dict(DATES), "domain": "stats-101.hub.example.edu",
            "culling": {"idle_timeout": 1800, "max_age": 0}}
    if TLS[tls_settings] is not None:
        data["tls"] = dict(TLS[tls_settings])
    return data


ODD_TEXT = ["", " ", "²", "٣٠", "１２", "Ⅻ", "9" * 5000, "9" * 40, "1e309", "-1", "0", "nan", "inf", "0x10", "1_000",
            "x\n", "\n", "a\u2028b", "a\x00b", "\x1b[31m", "\t", "{{ lookup('pipe', 'id') }}", "{% raw %}",
            "'; DROP TABLE instances; --", "<script>alert(1)</script>", "\"quoted\"", "back\\slash", "512Mi\n",
            "512 Mi", "512mi", "1.5Gi", "99999999999999Gi", "0.0000001Mi", "https://a\"b.example.edu", "ldap://x y",
            "uid={username}{x}", "custom_", "env:", "file:", "generate\n", "ok.example.edu.", "-bad.example.edu",
            "a" * 300, "é" * 70, "😀", "\ud800" if False else "\ufffd"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**20, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(ODD_TEXT), st.text(max_size=40),
    st.dates(), st.datetimes(),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


def paths(data, prefix=()):
    """Every place in the mapping a value sits, as key tuples."""
    out = []
    if isinstance(data, dict):
        for key, value in data.items():
            out.append(prefix + (key,))
            out += paths(value, prefix + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out.append(prefix + (i,))
            out += paths(value, prefix + (i,))
    return out


@st.composite
def mutated(draw) -> tuple[dict, str]:
    """A valid descriptor with one to three things changed; also returns the first changed top-level field."""
    data = valid(draw(st.integers(0, len(AUTHENTICATORS) - 1)), draw(st.sampled_from(["docker", "openstack"])),
                 draw(st.integers(0, len(TLS) - 1)))
    touched = ""
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(data)))
        parent = data
        for key in where[:-1]:
            parent = parent[key]
        leaf = where[-1]
        action = draw(st.sampled_from(["replace", "replace", "delete", "extra", "append"]))
        if action == "replace":
            parent[leaf] = draw(values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[leaf]
        elif action == "extra" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(values)
        elif action == "append" and isinstance(parent[leaf], str):
            parent[leaf] += draw(st.sampled_from(["\n", "\r", "\x00", "\u2028", "\x7f", " ", "\t"]))
        touched = touched or str(where[0])
    return data, touched


def judge(load) -> Course | InvalidInput:
    """Run one descriptor: a Course or an InvalidInput with field paths and messages, quickly; nothing else."""
    started = time.monotonic()
    try:
        result = load()
    except InvalidInput as exc:
        result = exc
        assert exc.exit_code == 2 and exc.problems
        for problem in exc.problems:
            assert isinstance(problem.path, str) and isinstance(problem.message, str) and problem.message
            assert len(str(problem)) < 2000, "a message must stay readable"
    seconds = time.monotonic() - started
    assert seconds < TOO_SLOW, f"{seconds:.1f} s"
    return result


def usable(course: Course) -> None:
    """An accepted course works downstream: HTTPS, role variables, a plan, and the same course when written back."""
    assert course.tls is not None and tls.summary(course)["url"].startswith("https://")
    hub = Host("c-hub", "hub", "203.0.113.7", 22, private_address="10.0.0.5")
    variables = {**kind_of(course).role_variables(course), **tls.role_variables(course, [hub])}
    json.dumps(variables)
    try:
        plan_course(course, load_catalogue(course.provider))
    except InvalidInput as exc:
        assert all(p.message for p in exc.problems)
    again = parse_course(yaml.safe_load(course.to_yaml()), today=dt.date.min)
    assert again == course
    for text in _strings(course.model_dump(mode="json")):
        assert text_problem(text) is None, text


def _strings(data):
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for value in data.values():
            yield from _strings(value)
    elif isinstance(data, list):
        for value in data:
            yield from _strings(value)


PROPERTY = settings(max_examples=int(__import__("os").environ.get("HUBFLEET_PROPERTY_EXAMPLES", 250)), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(mutated())
def test_a_mutated_descriptor_is_a_course_or_problems_naming_fields(case):
    data, touched = case
    result = judge(lambda: parse_course(copy.deepcopy(data)))
    if isinstance(result, Course):
        usable(result)
    else:
        known = set(Course.model_fields) | {str(k) for k in data}
        for problem in result.problems:
            top = problem.path.split(".")[0].split("[")[0]
            assert problem.path == "" or top in known or top[:1] in "'\"", problem  # odd keys are shown quoted


@PROPERTY
@given(mutated())
def test_the_same_descriptor_read_from_yaml_gives_the_same_answer(case):
    data, _ = case
    try:
        text = yaml.safe_dump(data, allow_unicode=True)
    except yaml.YAMLError:
        return
    result = judge(lambda: parse_course(load_yaml(text, source="course.yaml")))
    if isinstance(result, Course):
        usable(result)


YAML_TOKENS = ["name: ", "title: ", "load:", "tls:", "authenticator:", "  ", "    ", "\n", "- ", "[", "]", "{", "}",
               ", ", ": ", "&a ", "&b ", "*a", "*b", "<<: *a", "? ", "!!binary ", "!!python/object:os.system ",
               "!!str ", "!!int ", "'", '"', "#", "|", ">", "---", "...", "%YAML 1.1", "null", "~", "true", "1e999",
               "9" * 60, "2027-02-30", "2027-01-01", "0x1F", "0o17", ".nan", "é", "\t", "\x00", "\ufeff"]


@settings(max_examples=int(__import__("os").environ.get("HUBFLEET_PROPERTY_EXAMPLES", 250)), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(YAML_TOKENS), st.text(max_size=6)), max_size=60).map("".join))
def test_random_yaml_is_read_or_refused_with_its_line(text):
    def load():
        data = load_yaml(text, source="random.yaml")
        return parse_course(data, source="random.yaml")

    result = judge(load)
    if isinstance(result, Course):
        usable(result)


# --- the shapes that used to crash or eat memory ----------------------------------------------------


def refused(text: str) -> InvalidInput:
    started = time.monotonic()
    with pytest.raises(InvalidInput) as info:
        parse_course(load_yaml(text, source="bad.yaml"))
    assert time.monotonic() - started < TOO_SLOW
    return info.value


def test_a_billion_laughs_file_is_refused_at_once():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * 9) + "]")
    problem = refused("\n".join(lines)).problems[0]
    assert f"more than {MAX_NODES} values" in problem.message and problem.path


def test_deep_nesting_is_refused_naming_where():
    problem = refused("name: x\nload: " + "[" * 30_000 + "]" * 30_000).problems[0]
    assert problem.path.startswith("load") and f"more than {MAX_DEPTH} levels" in problem.message


def test_a_recursive_alias_is_refused():
    problem = refused("load: &a\n  students: [*a]\n").problems[0]
    assert "refers to a value that contains it" in problem.message


def test_a_huge_number_and_an_impossible_date_are_refused_not_raised():
    assert "out of range" in str(refused("load: {students: " + "9" * 4000 + "}\n"))
    assert "2027-02-30" in str(refused("dates: {start: 2027-02-30}\n")) or "cannot be read" in \
        str(refused("dates: {start: 2027-02-30}\n"))


def test_a_duplicate_key_is_refused_rather_than_silently_replaced():
    problem = refused("name: stats\nname: other\n").problems[0]
    assert problem.path == "name" and "appears twice" in problem.message


def test_a_file_larger_than_a_descriptor_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("title: " + "x" * 200_000 + "\n")
    with pytest.raises(InvalidInput, match="larger than 64 kB"):
        read_yaml(path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(InvalidInput, match="is not UTF-8"):
        read_yaml(binary)


def test_a_trailing_newline_never_reaches_the_hub(workshop_data):
    for path in (("name",), ("domain",), ("title",), ("image",), ("authenticator", "admin_users", 0),
                 ("tls", "email"), ("load", "memory_per_user")):
        data = copy.deepcopy(workshop_data)
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = str(target[path[-1]]) + "\n"
        with pytest.raises(InvalidInput) as info:
            parse_course(data)
        assert info.value.problems[0].path.startswith(path[0]), (path, info.value.problems)
