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
        self.on: dict[str, list[str]] = {}  # students whose servers run, per course
        self.gone: dict[str, list[str]] = {}  # hosts vanished, per course

    def backup(self, store, name, *, at, progress=None, verbosity=0):
        from hubfleet.archive import ArchiveSummary
        from hubfleet.backups import Backup, NotQuiet

        self.calls.append(("backup", name))
        if self.on.get(name):
            raise NotQuiet(f"{len(self.on[name])} student server(s) run: backed up when nobody is on the hub")
        made = Backup(ArchiveSummary(store.archive_dir() / f"{name}-{at:%Y%m%d}.tar", 3, 2, 100, "ab"),
                      at.isoformat(timespec="seconds"))
        store.update(name, outputs={**store.get(name).outputs, "backup": made.to_dict()})
        return made

    def restore(self, store, name, *, progress=None, verbosity=0):
        self.calls.append(("restore", name))
        return ["alice"]

    def vanished(self, store, name):
        return self.gone.pop(name, [])

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
    monkeypatch.setattr(rec.backups, "backup_course", fake.backup)
    monkeypatch.setattr(rec.backups, "restore_vanished", fake.restore)
    monkeypatch.setattr(rec.backups, "users_on", lambda store, name: fake.on.get(name, []))
    monkeypatch.setattr(rec, "hosts_vanished", fake.vanished)
    # Backups off unless a test says otherwise: the term's other decisions are shown on their own.
    site = store.dir / "site.yaml"
    site.parent.mkdir(parents=True, exist_ok=True)
    site.write_text("term: {backup_every: \"off\"}\n")
    return fake


def backups_every(fleet: Fleet, every: str) -> None:
    (fleet.store.dir / "site.yaml").write_text(f"term: {{backup_every: {every}}}\n")


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


def test_a_live_course_is_backed_up_when_due_and_only_while_nobody_is_on(fleet, tmp_path):
    courses = tmp_path / "courses"
    write(courses, "stats")
    backups_every(fleet, "1d")

    def run(when: str) -> rec.Decision:
        return {d.course: d for d in rec.reconcile(fleet.store, at(when), courses_dir=courses)}["stats"]

    assert run("2027-01-08").action == "create"
    fleet.calls.clear()
    fleet.on["stats"] = []
    assert run("2027-01-08T12:00").action == "keep" and fleet.calls == [], "just made: nothing to save yet"
    fleet.on["stats"] = ["alice"]
    waiting = run("2027-01-09T01:00")
    assert waiting.action == "keep" and "backup waits until nobody is on (1 server(s) run)" in waiting.reason
    assert fleet.calls == [], "nothing is backed up under a student's feet"
    fleet.on["stats"] = []
    made = run("2027-01-09T02:00")
    assert (made.action, made.outcome) == ("backup", "done"), made
    assert "first backup (due from 2027-01-09 00:00 UTC)" in made.reason, made.reason
    assert fleet.calls == [("backup", "stats")]
    assert fleet.store.get("stats").outputs["backup"]["at"] == "2027-01-09T02:00:00+00:00"
    fleet.calls.clear()
    assert run("2027-01-09T20:00").action == "keep" and fleet.calls == [], "not twice within a day"
    again = run("2027-01-10T02:30")
    assert again.action == "backup" and "last backup 2027-01-09 02:00" in again.reason, again.reason


def test_a_student_arriving_as_the_backup_starts_makes_it_wait_not_fail(fleet, tmp_path, monkeypatch):
    courses = tmp_path / "courses"
    write(courses, "stats")
    backups_every(fleet, "12h")
    run = lambda when: {d.course: d for d in rec.reconcile(fleet.store, at(when), courses_dir=courses)}["stats"]
    run("2027-01-08")
    monkeypatch.setattr(rec.backups, "users_on", lambda store, name: [])  # nobody when decided...
    fleet.on["stats"] = ["bob"]  # ...bob there when it starts
    late = run("2027-01-09T01:00")
    assert late.action == "backup" and late.outcome.startswith("waits:") and not late.failed
    assert "backup" not in fleet.store.get("stats").outputs


def test_hosts_that_vanished_are_made_again_and_the_students_files_restored(fleet, tmp_path):
    courses = tmp_path / "courses"
    write(courses, "stats")
    run = lambda when: {d.course: d for d in rec.reconcile(fleet.store, at(when), courses_dir=courses)}["stats"]
    run("2027-01-08")
    fleet.calls.clear()
    fleet.problems["stats"] = ["host stats-hub has disappeared; `hubfleet create` brings it back"]
    fleet.gone["stats"] = ["stats-hub"]
    repaired = run("2027-01-09")
    assert (repaired.action, repaired.outcome) == ("repair", "done")
    assert fleet.calls == [("create", "stats"), ("restore", "stats")], "made again first, then the files back"
    assert "host(s) stats-hub made again; the files of 1 student(s) whose volume was gone restored" in repaired.reason
    fleet.calls.clear()
    fleet.problems["stats"] = ["the hub does not answer"]  # unhealthy, but no host gone: nothing to restore
    assert run("2027-01-10").outcome == "done" and fleet.calls == [("create", "stats")]


def test_backup_every_takes_a_duration_or_off():
    from hubfleet.site import TermSite

    assert TermSite().backup_interval == dt.timedelta(days=1)
    assert TermSite(backup_every="off").backup_interval is None
    for wrong, says in (("0", "0 would back up at every run"), ("daily", "or off"), (2, "in quotes")):
        with pytest.raises(ValueError, match=says):
            TermSite(backup_every=wrong)
