from __future__ import annotations

import pytest

from hubfleet.descriptor import parse_course
from hubfleet.errors import InvalidInput
from hubfleet.lifecycle import role_variables
from hubfleet.providers.base import Host
from hubfleet.sizing import GiB, Catalogue, Flavor, load_catalogue, plan_course, spawn_limit_for, users_per_host

CAT = Catalogue((
    Flavor("small", 2, 4 * GiB, 40 * GiB, 0.025),
    Flavor("large", 8, 32 * GiB, 100 * GiB, 0.1),
))


def course(workshop_data, **load):
    workshop_data["load"].update(load)
    return parse_course(workshop_data)


def test_worked_example_fits_one_small_host(workshop_data):
    # 10 students, all at once, 256Mi and 0.1 CPU each:
    # memory (10 x 0.25 + 0.5) x 1.3 = 3.9 GiB; CPU 10 x 0.1 x 1.2 + 0.25 = 1.45.
    plan = plan_course(course(workshop_data, students=10, concurrent=1.0, memory_per_user="256Mi",
                              cpu_per_user=0.1, disk_per_user="1Gi"), CAT)
    assert plan.concurrent_users == 10
    assert plan.memory_needed == pytest.approx(3.9 * GiB, rel=1e-6)
    assert plan.cpu_needed == pytest.approx(1.45)
    assert [h.flavor for h in plan.hosts] == ["small"]
    assert plan.mem_limit == 256 * 2**20 and plan.cpu_limit == 0.1
    assert plan.cost_per_day == pytest.approx(0.025 * 24)
    assert plan.disk_needed == 10 * GiB + 10 * GiB


def test_hub_host_capacity_accounts_for_overhead():
    small = CAT.flavors[0]
    # (4 GiB / 1.3 - 0.5 GiB) / 0.5 GiB = 5.15 -> 5 by memory; CPU (2 - 0.25) / 0.6 = 2.9 -> 2
    assert users_per_host(small, GiB // 2, 0.5, headroom=0.3, hub=True) == 2
    assert users_per_host(small, GiB // 2, 0.1, headroom=0.3, hub=True) == 5
    assert users_per_host(small, GiB // 2, 0.1, headroom=0.3, hub=False) == 6


def test_course_too_big_for_one_host_gets_several(workshop_data):
    # 200 at once x 512Mi: the large host carries (32/1.3 - 0.5)/0.5 = 48 on the hub, 49 elsewhere
    # by memory; CPU 0.1 x 1.2 gives 64 / 66 -> memory bound: 48 + 49 x 4 = 244 >= 200 -> 5 hosts.
    plan = plan_course(course(workshop_data, students=400, concurrent=0.5, memory_per_user="512Mi",
                              cpu_per_user=0.1), CAT)
    assert plan.concurrent_users == 200
    assert len(plan.hosts) == 5 and {h.flavor for h in plan.hosts} == {"large"}
    assert [h.role for h in plan.hosts] == ["hub"] + ["worker"] * 4
    assert plan.active_server_limit == 48 + 4 * 49
    assert plan.cost_per_day == pytest.approx(5 * 0.1 * 24)


def test_impossible_load_names_the_field(workshop_data):
    with pytest.raises(InvalidInput) as info:
        plan_course(course(workshop_data, students=10, memory_per_user="64Gi"), CAT)
    assert info.value.problems[0].path == "load"
    assert "do not fit" in info.value.problems[0].message


def test_forced_host_count(workshop_data):
    plan = plan_course(course(workshop_data, students=4, concurrent=1.0, memory_per_user="256Mi",
                              cpu_per_user=0.1), CAT, hosts_override=2)
    assert len(plan.hosts) == 2 and plan.hosts[1].role == "worker"


def test_small_disk_gets_bigger_volume(workshop_data):
    plan = plan_course(course(workshop_data, students=100, concurrent=0.05, memory_per_user="256Mi",
                              cpu_per_user=0.1, disk_per_user="2Gi"), CAT)
    assert plan.hosts[0].disk_bytes == 100 * 2 * GiB + 10 * GiB
    assert any("too small" in n for n in plan.notes)


def test_packaged_catalogues_load():
    assert load_catalogue("docker").flavors
    assert all(f.price_per_hour for f in load_catalogue("openstack").flavors)


def test_spawns_in_flight_keep_the_cores_busy_without_outrunning_them():
    # 1.5 x cores / the CPU one start may use, between 5 and 100.
    assert spawn_limit_for(2, 0.5) == 6
    assert spawn_limit_for(2, 0.1) == 30
    assert spawn_limit_for(2, 2.0) == 5  # a start uses one core at most; never fewer than 5
    assert spawn_limit_for(64, 0.1) == 100


def test_the_plan_admits_spawns_by_its_flavors(workshop_data):
    plan = plan_course(course(workshop_data, students=10, concurrent=1.0, memory_per_user="256Mi",
                              cpu_per_user=0.1), CAT)
    assert [h.flavor for h in plan.hosts] == ["small"] and plan.spawn_limit == 30


def test_hosts_with_fewer_real_cores_than_planned_admit_fewer_spawns(workshop_data):
    # 100 students at 0.1 CPU plan for 8-core flavors; Docker hosts on a 2-core machine have 2.
    data = course(workshop_data, students=100, concurrent=1.0, memory_per_user="256Mi", cpu_per_user=0.1)
    plan = plan_course(data, CAT)
    hub = [Host(name="c-hub", role="hub", address="127.0.0.1", ssh_port=2222, private_address="10.0.0.2",
                http_port=8080, https_port=8443)]
    assert plan.spawn_limit == 100
    assert role_variables(data, plan, hub)["hub_concurrent_spawn_limit"] == 100
    assert role_variables(data, plan, hub, cores=2.0)["hub_concurrent_spawn_limit"] == 30
    assert role_variables(data, plan, hub, cores=64.0)["hub_concurrent_spawn_limit"] == 100  # never above the plan
