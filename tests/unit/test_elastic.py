"""Elastic hosts (hubfleet/elastic.py): the decisions as a function of the hub's seats, the policy and the
clock; class hours and `hubfleet warm`'s target; what `hubfleet status` shows of them; warm's class list."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from hubfleet.cli import cli
from hubfleet.cli.status import elastic_lines
from hubfleet.cli.warm import read_identities
from hubfleet.descriptor import parse_course
from hubfleet.elastic import NodeSeats, Policy, Seats, class_now, decide, hosts_for, warm_target
from hubfleet.errors import InvalidInput
from hubfleet.sizing import GiB, Catalogue, Flavor, plan_course

CAT = Catalogue((Flavor("small", 2, 4 * GiB, 40 * GiB, 0.025),))
HOSTS = ["hub", "w1", "w2"]


def seats(used: int, waiting: int = 0, short: int = 0, *, nodes: dict | None = None) -> Seats:
    nodes = nodes or {"hub": NodeSeats(2, min(used, 2), hub=True), "w1": NodeSeats(4, max(0, used - 2))}
    return Seats(sum(n.capacity for n in nodes.values()), used, waiting, short, nodes)


POLICY = Policy(base_hosts=2, max_hosts=4, node_seats=4, empty_for=600)


def test_students_without_a_seat_add_hosts_of_the_planned_seats():
    decision, _ = decide(HOSTS[:2], seats(6, waiting=5, short=5), POLICY, 0, {})
    assert decision.action == "grow" and decision.add == 2  # 5 short / 4 seats a host, within the bound of 4


def test_seats_nearly_all_wanted_add_one_host_before_anyone_waits():
    decision, _ = decide(HOSTS[:2], seats(6), POLICY, 0, {})  # 6 of 6 wanted >= 90 %
    assert decision.action == "grow" and decision.add == 1


def test_at_the_bound_the_line_waits_and_says_why():
    nodes = {"hub": NodeSeats(2, 2, hub=True), "w1": NodeSeats(4, 4), "w2": NodeSeats(4, 4), "w3": NodeSeats(4, 4)}
    decision, _ = decide(["hub", "w1", "w2", "w3"], seats(14, waiting=3, short=3, nodes=nodes), POLICY, 0, {})
    assert decision.action == "hold" and decision.why == "at-bound" and "load.max_hosts" in decision.reason


def test_a_host_not_yet_in_the_swarm_is_configured_again_not_added_twice():
    decision, _ = decide(HOSTS, seats(6, waiting=4, short=4), POLICY, 0, {})  # w2 is not a node yet
    assert decision.action == "grow" and decision.add == 0 and "w2" in decision.reason


def test_below_the_plan_or_a_class_warm_up_the_hosts_are_made():
    decision, _ = decide(["hub"], seats(0, nodes={"hub": NodeSeats(2, 0, hub=True)}), POLICY, 0, {})
    assert decision.action == "grow" and decision.add == 1
    warm = Policy(base_hosts=2, max_hosts=4, node_seats=4, warm_hosts=9, warm_reason="the class at Mon 14:15")
    decision, _ = decide(HOSTS[:2], seats(0), warm, 0, {})
    assert decision.action == "grow" and decision.add == 2 and "Mon 14:15" in decision.reason  # bounded by 4


def empty_extra(pinned=(), running=0, used=1):
    nodes = {"hub": NodeSeats(2, used, hub=True), "w1": NodeSeats(4, 0), "w2": NodeSeats(4, running, pinned)}
    return Seats(10, used + running, 0, 0, nodes)


def test_an_empty_extra_host_goes_only_after_empty_for():
    decision, empty = decide(HOSTS, empty_extra(), POLICY, 100, {})
    assert decision.action == "wait" and empty == {"w2": 100}
    decision, empty = decide(HOSTS, empty_extra(), POLICY, 500, empty)
    assert decision.action == "wait"
    decision, empty = decide(HOSTS, empty_extra(), POLICY, 701, empty)
    assert decision.action == "shrink" and decision.host == "w2" and empty == {}


def test_a_server_on_the_extra_host_resets_its_clock():
    _, empty = decide(HOSTS, empty_extra(), POLICY, 100, {})
    decision, empty = decide(HOSTS, empty_extra(running=1), POLICY, 800, empty)
    assert decision.action == "hold" and decision.why == "in-use" and empty == {}
    decision, _ = decide(HOSTS, empty_extra(), POLICY, 900, empty)
    assert decision.action == "wait"  # counted again from 900


def test_an_empty_host_holding_students_files_moves_them_before_it_goes():
    decision, _ = decide(HOSTS, empty_extra(pinned=("ada",)), POLICY, 10_000, {"w2": 0})
    assert decision.action == "move" and decision.host == "w2" and "1 student(s)" in decision.reason
    assert "ada" not in decision.reason  # the log never names students
    decision, _ = decide(HOSTS, empty_extra(pinned=("ada",)), POLICY, 100, {"w2": 0})
    assert decision.action == "wait"  # empty for 100 s only: nothing moves yet


def test_an_empty_host_the_rest_would_need_stays():
    busy = Seats(10, 4, 0, 0, {"hub": NodeSeats(2, 2, hub=True), "w1": NodeSeats(4, 2), "w2": NodeSeats(4, 0)})
    decision, _ = decide(HOSTS, busy, POLICY, 0, {})
    assert decision.action == "hold" and decision.why == "needed"  # 4 wanted > half of the 6 left


def test_planned_hosts_are_never_removed_by_elasticity():
    idle = Seats(6, 0, 0, 0, {"hub": NodeSeats(2, 0, hub=True), "w1": NodeSeats(4, 0)})
    decision, _ = decide(HOSTS[:2], idle, POLICY, 10_000, {"w1": 0})
    assert decision.action == "hold" and decision.why == "planned"


def test_seats_from_the_hubs_answer():
    read = Seats.from_api({"capacity": 6, "used": 2, "waiting": 1, "short": 0, "starting": 1,
                           "nodes": {"hub": {"capacity": 2, "running": 2, "ready": True, "active": True, "hub": True},
                                     "w1": {"capacity": 4, "running": 0, "pinned": ["ada"], "ready": True}}})
    assert read.demand == 3 and read.nodes["w1"].pinned == ("ada",) and read.nodes["hub"].hub


# --- class hours and warming -----------------------------------------------------------------


def course_with(workshop_data, **extra):
    workshop_data["load"].update({"students": 20, "concurrent": 0.5, "max_hosts": 5})
    workshop_data.update(extra)
    return parse_course(workshop_data)


HOURS = {"timezone": "Europe/Zurich", "warm_before": 15,
         "sessions": [{"days": ["mon"], "start": "14:15", "minutes": 90, "students": 40}]}


@pytest.mark.parametrize(("utc", "inside"), [
    ("2026-11-30T13:00:00", True),   # Monday 14:00 in Zurich: the warm-up
    ("2026-11-30T12:59:00", False),  # 13:59: before it
    ("2026-11-30T14:40:00", True),   # during the class
    ("2026-11-30T14:46:00", False),  # after 15:45 local
    ("2026-12-01T13:00:00", False),  # a Tuesday
])
def test_class_now_in_the_class_time_zone(workshop_data, utc, inside):
    course = course_with(workshop_data, class_hours=HOURS)
    found = class_now(course.class_hours, dt.datetime.fromisoformat(utc).replace(tzinfo=dt.timezone.utc))
    assert (found is not None) == inside
    if found:
        assert found[1].strftime("%H:%M") == "14:15"


def test_class_across_midnight_counts_from_the_day_before(workshop_data):
    hours = {"timezone": "UTC", "warm_before": 30, "sessions": [{"days": ["mon"], "start": "00:10", "minutes": 60}]}
    course = course_with(workshop_data, class_hours=hours)
    sunday_night = dt.datetime(2026, 11, 29, 23, 50, tzinfo=dt.timezone.utc)
    assert class_now(course.class_hours, sunday_night) is not None


def test_warm_target_is_the_hosts_that_seat_the_class_within_the_bound(workshop_data):
    course = course_with(workshop_data, class_hours=HOURS)
    plan = plan_course(course, CAT)
    during = dt.datetime(2026, 11, 30, 13, 30, tzinfo=dt.timezone.utc)
    hosts, why = warm_target(course, plan, {}, during)
    assert hosts == hosts_for(plan, 40) and len(plan.hosts) <= hosts <= plan.elastic_hosts
    assert "40 student(s)" in why and "class_hours" in why
    assert plan.capacity_with(hosts) >= 40 or hosts == plan.elastic_hosts
    assert warm_target(course, plan, {}, during + dt.timedelta(days=1)) == (0, "")


def test_hubfleet_warm_target_lasts_until_its_end(workshop_data):
    course = course_with(workshop_data)
    plan = plan_course(course, CAT)
    now = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.timezone.utc)
    elastic = {"warm": {"hosts": 3, "students": 30, "until": "2026-11-30T10:00:00+00:00"}}
    assert warm_target(course, plan, elastic, now)[0] == 3
    assert warm_target(course, plan, elastic, now + dt.timedelta(hours=2))[0] == 0


def test_hosts_for_never_below_the_plan_nor_above_the_bound(workshop_data):
    plan = plan_course(course_with(workshop_data), CAT)
    assert hosts_for(plan, 1) == len(plan.hosts)
    assert hosts_for(plan, 10_000) == plan.elastic_hosts


# --- status and the command line ---------------------------------------------------------------


def test_status_shows_seats_line_and_the_latest_decisions():
    decisions = [{"at": f"t{i}", "action": "hold", "reason": f"r{i}"} for i in range(8)]
    report = SimpleNamespace(seats={"used": 3, "capacity": 6, "starting": 1, "waiting": 2},
                             instance=SimpleNamespace(outputs={"elastic": {"extra": 1, "decisions": decisions}}))
    lines = elastic_lines(report)
    assert lines[0] == "seats: 3 of 6 taken, 1 starting, 2 waiting in line"
    assert lines[1] == "elastic: 1 host(s) added beyond the plan"
    assert [line.split(": ")[-1] for line in lines[2:]] == ["r3", "r4", "r5", "r6", "r7"]
    assert elastic_lines(SimpleNamespace(seats=None, instance=SimpleNamespace(outputs={}))) == []


def test_class_list_skips_comments_and_names_bad_lines(tmp_path):
    good = tmp_path / "class.txt"
    good.write_text("# the Monday group\nada@example.org\n\n  Grace Hopper  \n", encoding="utf-8")
    assert read_identities(good) == ["ada@example.org", "Grace Hopper"]
    bad = tmp_path / "bad.txt"
    bad.write_text("ada\n" + "x" * 300 + "\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as raised:
        read_identities(bad)
    assert "--expect line 2" in str(raised.value)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InvalidInput) as raised:
        read_identities(binary)
    assert "UTF-8" in str(raised.value)


@pytest.mark.parametrize("args", [["autoscale"], ["autoscale", "a", "--all"], ["autoscale", "a", "--for", "5"]])
def test_autoscale_flags_are_checked_before_anything_is_read(tmp_path, args):
    result = CliRunner().invoke(cli, ["--state-dir", str(tmp_path), *args])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_warm_an_unknown_course_says_so(tmp_path):
    result = CliRunner().invoke(cli, ["--state-dir", str(tmp_path), "warm", "nosuch"])
    assert result.exit_code != 0 and "Traceback" not in result.output and "nosuch" in result.output
