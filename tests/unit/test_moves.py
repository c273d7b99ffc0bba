"""Moving students' files off a host (hubfleet/moves.py): the order of the hub's word and the copy.

The hub and the playbook are recorded fakes here (what they were told, in order); the playbook's
copy, compare and removal run for real in tests/integration/test_rush.py.
"""

from __future__ import annotations

import pytest

from hubfleet.elastic import NodeSeats
from hubfleet.errors import HubfleetError, ProvisionError
from hubfleet.moves import move_homes, new_homes, release_stale

NODES = {"hub": NodeSeats(2, 0, ("bo",), hub=True), "w1": NodeSeats(4, 0, ()), "w2": NodeSeats(4, 0, ("ada", "cy")),
         "w3": NodeSeats(4, 0, (), ready=False)}


class Hub:
    def __init__(self, refuse: dict[str, str] | None = None):
        self.told: list[tuple[str, str]] = []
        self.refuse = refuse or {}

    def __call__(self, body: dict) -> dict:
        (action, value), = body.items()
        user = value["user"]
        self.told.append((action, user))
        if self.refuse.get(user) == action:
            raise HubfleetError(f"the hub refused ({409}): {user}'s server is in use")
        return {}


class Playbook:
    def __init__(self, fail: str = ""):
        self.steps: list[tuple[str, list[str]]] = []
        self.fail = fail

    def __call__(self, step: str, moves: list[dict]) -> None:
        self.steps.append((step, [m["volume"] for m in moves]))
        if step == self.fail:
            raise ProvisionError("task 'Compare each volume with its pack' failed on w1")


def move(hub, playbook, students=("ada", "cy")):
    return move_homes(source="w2", students=list(students), nodes=NODES, tell_hub=hub, run=playbook,
                      volume_prefix="hubfleet-user-", progress=lambda kind, message: None)


def test_new_homes_spread_over_ready_hosts_fewest_homes_first_never_the_source():
    assert new_homes(["ada", "cy"], "w2", NODES) == {"ada": "w1", "cy": "hub"}  # w1 has none, hub one
    assert new_homes(["ada"], "w1", {"w1": NodeSeats(4, 0)}) == {}  # nowhere else to go


def test_copy_then_moved_then_remove_in_that_order():
    hub, playbook = Hub(), Playbook()
    result = move(hub, playbook)
    assert result.moved == {"ada": "w1", "cy": "hub"} and result.stayed == {}
    assert hub.told == [("move", "ada"), ("move", "cy"), ("moved", "ada"), ("moved", "cy")]
    assert playbook.steps == [("copy", ["hubfleet-user-ada", "hubfleet-user-cy"]),
                              ("remove", ["hubfleet-user-ada", "hubfleet-user-cy"])]


def test_a_failed_copy_releases_every_move_and_removes_nothing():
    hub, playbook = Hub(), Playbook(fail="copy")
    with pytest.raises(ProvisionError, match="their files stay there and nothing was removed.*Compare"):
        move(hub, playbook)
    assert [step for step, _ in playbook.steps] == ["copy"]
    assert ("unmove", "ada") in hub.told and ("unmove", "cy") in hub.told and ("moved", "ada") not in hub.told


def test_a_student_in_use_stays_and_the_others_move():
    hub, playbook = Hub(refuse={"ada": "move"}), Playbook()
    result = move(hub, playbook)
    assert result.moved == {"cy": "hub"} and "in use" in result.stayed["ada"]
    assert playbook.steps == [("copy", ["hubfleet-user-cy"]), ("remove", ["hubfleet-user-cy"])]


def test_a_hub_that_forgot_the_move_keeps_the_files_where_they_were():
    hub, playbook = Hub(refuse={"cy": "moved"}), Playbook()
    result = move(hub, playbook)
    assert result.moved == {"ada": "w1"} and "cy" in result.stayed
    assert playbook.steps[-1] == ("remove", ["hubfleet-user-ada"])  # cy's volume on w2 is kept
    assert ("unmove", "cy") in hub.told


def test_names_that_need_escaping_get_the_spawners_volume_name():
    hub, playbook = Hub(), Playbook()
    move(hub, playbook, students=["José.Ü"])
    volume = playbook.steps[0][1][0]
    assert volume.startswith("hubfleet-user-") and volume.isascii() and "." not in volume[len("hubfleet-user-"):]


def test_moves_cut_off_in_an_earlier_round_are_released():
    hub, said = Hub(), []
    release_stale(hub, {"ada": "w1"}, lambda kind, message: said.append(message))
    assert hub.told == [("unmove", "ada")] and "stay where they were" in said[0]
