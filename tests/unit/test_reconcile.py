"""`hubfleet reconcile`: a course's phase at a moment, the decision it brings, and a run over many courses.

`create_course`, `destroy_course` and the health check are replaced here by recorders that change the
state store as the real ones do (named fakes: the real ones run in tests/integration/test_term.py, which
drives a whole term on the Docker provider with `reconcile --now`).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hubfleet import reconcile as rec
from hubfleet.cli import cli
from hubfleet.descriptor import load_course, parse_course
from hubfleet.errors import Busy, InvalidInput, ProvisionError
from hubfleet.site import TermSite, parse_site_wide
from hubfleet.state import StateStore
from hubfleet.term import parse_now, term_of
from tests.conftest import EXAMPLES

UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    return parse_now(text)


def course_data(name: str = "stats", start: str = "2027-01-10", end: str = "2027-01-31", **dates) -> dict:
    data = yaml.safe_load((EXAMPLES / "workshop.yaml").read_text())
    data.update(name=name, domain=f"{name}.hub.localhost", dates={"start": start, "end": end, **dates})
    return data


def course(name: str = "stats", **kw):
    return parse_course(course_data(name, **kw), today=dt.date.min)


# --- the term on the clock ------------------------------------------------------------------------


def test_the_phases_follow_the_dates_and_the_site_defaults():
    term = term_of(course(), TermSite())
    assert term.phase(at("2027-01-07T23:59")) == "waiting"
    assert term.phase(at("2027-01-08")) == "live"  # warm_before 2d
    assert term.phase(at("2027-01-31T23:59")) == "live"  # the end day is a day of class
    assert term.phase(at("2027-02-01")) == "grace"
    assert term.phase(at("2027-02-14T23:59")) == "grace"  # grace_after 14d
    assert term.phase(at("2027-02-15")) == "over"


def test_the_descriptor_overrides_the_site_and_the_site_file_sets_its_own():
    term = term_of(course(warm_before="12h", grace_after="1d"), TermSite())
    assert term.warm_at == at("2027-01-09T12:00") and term.remove_at == at("2027-02-02")
    site = parse_site_wide({"term": {"warm_before": "1w", "grace_after": "30d", "notice_before": "2d"}}).term
    term = term_of(course(), site)
    assert term.warm_at == at("2027-01-03") and term.remove_at == at("2027-03-03") and term.notice_at == at("2027-01-30")


def test_the_banner_tells_students_from_the_notice_to_the_removal_in_one_text():
    term = term_of(course(), TermSite())
    assert term.banner(at("2027-01-24T23:00")) == ""
    before = term.banner(at("2027-01-25"))
    assert "last day is 2027-01-31" in before and "before 2027-02-15 00:00 UTC" in before
    assert term.banner(at("2027-02-03")) == before  # the end itself restarts no hub
    assert term.banner(at("2027-02-15")) == ""


@pytest.mark.parametrize("value, fix", [
    (2, "a number and a unit in quotes"), ("2x", "one of m, h, d, w"), ("400d", "at most \"366d\""),
    ("-1d", "one of m, h, d, w"), ("١d", "one of m, h, d, w"),
])
def test_a_bad_duration_names_the_field_and_the_fix(value, fix):
    with pytest.raises(InvalidInput) as err:
        parse_course(course_data(grace_after=value), today=dt.date.min)
    assert "dates.grace_after" in str(err.value) and fix in str(err.value)
    with pytest.raises(InvalidInput) as err:
        parse_site_wide({"term": {"notice_before": value}})
    assert "term.notice_before" in str(err.value)


@pytest.mark.parametrize("text, expected", [
    ("2027-01-31", "2027-01-31T00:00:00+00:00"), ("2027-01-31T08:30", "2027-01-31T08:30:00+00:00"),
    ("2027-01-31T08:30Z", "2027-01-31T08:30:00+00:00"), ("2027-01-31T09:30+01:00", "2027-01-31T08:30:00+00:00"),
])
def test_now_is_a_date_or_a_moment_in_utc_unless_zoned(text, expected):
    assert parse_now(text).isoformat() == expected


@pytest.mark.parametrize("text", ["tomorrow", "2027-13-01", "31/01/2027", "", "2027-01-31T25:00"])
def test_now_refuses_what_is_not_a_moment(text):
    with pytest.raises(ValueError, match="write 2027-01-31"):
        parse_now(text)


# --- decisions and a run ---------------------------------------------------------------------------


class Fleet:
    """Stands in for create_course / destroy_course / the health check, changing the store as they do."""

    def __init__(self, store: StateStore):
        self.store = store
        self.calls: list[tuple[str, str]] = []
        self.problems: dict[str, list[str]] = {}
        self.fail: dict[str, Exception] = {}

    def create(self, store, course, *, progress=None, verbosity=0, announcement=None):
        self.calls.append(("create", course.name))
        if course.name in self.fail:
            store.upsert(course.name, provider="docker", descriptor=course.model_dump(mode="json"))
            store.update(course.name, status="failed")
            raise self.fail[course.name]
        store.upsert(course.name, provider="docker", descriptor=course.model_dump(mode="json"))
        outputs = {**store.get(course.name).outputs, "announcement": announcement or "",
                   "configured_at": f"2027-01-{len(self.calls):02d}T00:00:00+00:00"}
        store.update(course.name, status="ready", outputs=outputs)
        self.problems.pop(course.name, None)  # converging mends it

    def destroy(self, store, name, *, archive=True, progress=None, verbosity=0):
        self.calls.append(("destroy", name))
        if name in self.fail:
            raise self.fail[name]
        store.update(name, status="archived")

    def health(self, store, name):
        return self.problems.get(name, [])


@pytest.fixture
def fleet(tmp_path, monkeypatch):
    store = StateStore(tmp_path / "state")
    fake = Fleet(store)
    monkeypatch.setattr(rec, "create_course", fake.create)
    monkeypatch.setattr(rec, "destroy_course", fake.destroy)
    monkeypatch.setattr(rec, "health_problems", fake.health)

    def stop(store, name, before):
        fake.calls.append(("stop", f"{name} before {before:%Y-%m-%d}"))
        return ["alice", "bob"]

    monkeypatch.setattr(rec, "stop_servers_started_before", stop)
    return fake


def write(directory: Path, name: str, **kw) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(course_data(name, **kw)))
    return path


def test_a_whole_term_acts_once_per_change_and_twice_does_nothing_twice(fleet, tmp_path):
    courses = tmp_path / "courses"
    write(courses, "stats")
    store = fleet.store

    def run(when: str):
        fleet.calls.clear()
        return {d.course: d for d in rec.reconcile(store, at(when), courses_dir=courses)}

    assert run("2027-01-01")["stats"].action == "wait" and fleet.calls == []
    assert run("2027-01-08")["stats"].outcome == "done" and fleet.calls == [("create", "stats")]
    assert run("2027-01-08T00:15")["stats"].action == "keep" and fleet.calls == []
    fleet.problems["stats"] = ["host stats-hub has disappeared"]
    repaired = run("2027-01-12")["stats"]
    assert (repaired.action, repaired.outcome) == ("repair", "done") and "disappeared" in repaired.reason
    changed = course_data("stats")
    changed["image"] = "hubfleet/notebook:next"
    (courses / "stats.yaml").write_text(yaml.safe_dump(changed))
    assert run("2027-01-15")["stats"].action == "apply" and fleet.calls == [("create", "stats")]
    assert store.get("stats").descriptor["image"] == "hubfleet/notebook:next"
    assert run("2027-01-15T01:00")["stats"].action == "keep"
    notice = run("2027-01-25")["stats"]
    assert notice.action == "banner" and "last day is 2027-01-31" in store.get("stats").outputs["announcement"]
    assert run("2027-01-26")["stats"].action == "keep"
    assert run("2027-02-01")["stats"].phase == "grace" and fleet.calls == []
    assert run("2027-02-15")["stats"].action == "destroy" and store.get("stats").status == "archived"
    assert run("2027-02-16")["stats"].action == "keep" and fleet.calls == []
    events = [message for _, _, kind, message in store.events("stats") if kind == "reconcile"]
    assert "destroy: done" in events and any(e.startswith("apply: ") for e in events)


def test_a_failing_course_never_stops_the_others_and_the_next_run_finishes_it(fleet, tmp_path):
    courses = tmp_path / "courses"
    for name in ("algebra", "biology", "chemistry"):
        write(courses, name)
    (courses / "broken.yaml").write_text("name: [\n")
    fleet.fail["biology"] = ProvisionError("host biology-hub did not answer SSH")
    fleet.fail["chemistry"] = Busy("course 'chemistry' is busy: create by pid 42")
    decisions = {d.course: d for d in rec.reconcile(fleet.store, at("2027-01-20"), courses_dir=courses)}
    assert decisions["algebra"].outcome == "done"
    assert decisions["biology"].failed and "did not answer SSH" in decisions["biology"].outcome
    assert decisions["chemistry"].outcome.startswith("busy") and not decisions["chemistry"].failed
    assert decisions["broken.yaml"].failed and "not valid YAML" in decisions["broken.yaml"].reason
    fleet.fail.clear()
    fleet.calls.clear()
    again = {d.course: d for d in rec.reconcile(fleet.store, at("2027-01-20T00:15"), courses_dir=courses)}
    assert again["biology"].action == "finish" and again["biology"].outcome == "done"
    assert again["algebra"].action == "keep"
    assert sorted(fleet.calls) == [("create", "biology"), ("create", "chemistry")]


def test_courses_of_the_state_store_are_held_to_their_recorded_dates(fleet):
    store = fleet.store
    store.upsert("old", provider="docker", descriptor=course("old").model_dump(mode="json"))
    store.update("old", status="ready")
    store.upsert("gone", provider="docker", descriptor=course("gone").model_dump(mode="json"))
    store.update("gone", status="archived")
    decisions = {d.course: d for d in rec.reconcile(store, at("2027-03-01"))}
    assert decisions["old"].action == "destroy" and decisions["old"].outcome == "done"
    assert decisions["gone"].action == "keep" and fleet.calls == [("destroy", "old")]


def test_what_reconcile_leaves_alone(fleet, tmp_path):
    store = fleet.store
    store.upsert("early", provider="docker", descriptor=course("early").model_dump(mode="json"))
    store.update("early", status="ready")
    store.upsert("ended", provider="docker", descriptor=course("ended").model_dump(mode="json"))
    store.update("ended", status="archived")
    store.upsert("going", provider="docker", descriptor=course("going").model_dump(mode="json"))
    store.update("going", status="destroying")
    early = {d.course: d for d in rec.reconcile(store, at("2026-12-20"))}
    assert early["early"].action == "keep" and "made early" in early["early"].reason
    live = {d.course: d for d in rec.reconcile(store, at("2027-01-20"))}
    assert live["ended"].action == "skip" and "its own dates" in live["ended"].reason
    assert live["going"].action == "skip" and "destroy" in live["going"].reason
    assert fleet.calls == []


def test_a_dry_run_decides_everything_and_changes_nothing(fleet, tmp_path):
    courses = tmp_path / "courses"
    write(courses, "stats")
    decisions = rec.reconcile(fleet.store, at("2027-01-20"), courses_dir=courses, dry_run=True)
    assert [(d.course, d.action, d.outcome) for d in decisions] == [("stats", "create", "")]
    assert fleet.calls == [] and fleet.store.find("stats") is None


def test_two_descriptors_of_one_course_are_refused_and_neither_is_acted_on_twice(fleet, tmp_path):
    courses = tmp_path / "courses"
    write(courses, "stats")
    (courses / "stats-copy.yaml").write_text((courses / "stats.yaml").read_text())
    decisions = rec.reconcile(fleet.store, at("2027-01-20"), courses_dir=courses)
    refused = [d for d in decisions if d.failed]
    assert len(refused) == 1 and "give each course one descriptor" in refused[0].reason
    assert fleet.calls == [("create", "stats")]


# --- the command -----------------------------------------------------------------------------------


def invoke(tmp_path, *args):
    return CliRunner().invoke(cli, ["--state-dir", str(tmp_path / "state"), "reconcile", *args])


def test_the_command_prints_each_decision_and_exits_1_when_a_course_failed(fleet, tmp_path):
    courses = tmp_path / "courses"
    write(courses, "stats")
    dry = invoke(tmp_path, "--courses", str(courses), "--dry-run", "--now", "2027-01-20")
    assert dry.exit_code == 0, dry.output
    assert "stats [live] would create: due since 2027-01-08 00:00 UTC" in dry.output and fleet.calls == []
    (courses / "broken.yaml").write_text("name: [\n")
    out = invoke(tmp_path, "--courses", str(courses), "--now", "2027-01-20", "--json")
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.exit_code == 1 and {(d["course"], d["outcome"].split(":")[0]) for d in lines} == {
        ("broken.yaml", "failed"), ("stats", "done")}


def test_the_command_refuses_a_bad_now_and_an_unknown_course(fleet, tmp_path):
    bad = invoke(tmp_path, "--now", "next monday")
    assert bad.exit_code == 2 and "--now" in bad.output and "2027-01-31" in bad.output
    unknown = invoke(tmp_path, "--course", "nosuch", "--dry-run")
    assert unknown.exit_code == 3 and "nosuch" in unknown.output
    assert fleet.calls == []


def test_the_examples_say_when_they_are_made():
    for path in sorted(EXAMPLES.glob("*.yaml")):
        term = term_of(load_course(path, today=dt.date.min), TermSite())
        assert term.warm_at < term.start_at < term.end_at < term.remove_at, path


def test_a_new_image_reaches_everybody_at_the_switch_moment_once(fleet, tmp_path):
    courses = tmp_path / "courses"
    write(courses, "stats")
    rec.reconcile(fleet.store, at("2027-01-09"), courses_dir=courses)  # made
    changed = course_data("stats")
    changed.update(image="hubfleet/notebook:next", image_switch_at="2027-01-20T08:00")
    (courses / "stats.yaml").write_text(yaml.safe_dump(changed))

    def run(when):
        fleet.calls.clear()
        return {d.course: d for d in rec.reconcile(fleet.store, at(when), courses_dir=courses)}["stats"]

    assert run("2027-01-15").action == "apply"
    assert run("2027-01-20T07:59").action == "keep", "before the switch: each at their next start"
    switched = run("2027-01-20T08:00")
    assert (switched.action, switched.outcome) == ("switch", "done") and "2 server(s) stopped" in switched.reason
    applied_at = fleet.store.get("stats").outputs["configured_at"][:10]  # the apply's create
    assert fleet.calls == [("stop", f"stats before {applied_at}")], "only servers started before the last change"
    assert run("2027-01-20T08:15").action == "keep" and fleet.calls == [], "switched once"


def test_a_new_session_of_an_archived_course_is_made_from_its_own_dates(fleet, tmp_path):
    store = fleet.store
    store.upsert("stats", provider="docker", descriptor=course("stats", start="2026-09-01", end="2026-12-15")
                 .model_dump(mode="json"))
    store.update("stats", status="archived")
    courses = tmp_path / "courses"
    write(courses, "stats", start="2027-01-10", end="2027-01-31")
    made = {d.course: d for d in rec.reconcile(store, at("2027-01-09"), courses_dir=courses)}["stats"]
    assert (made.action, made.outcome) == ("create", "done") and "a new session" in made.reason
    assert store.get("stats").status == "ready"
