"""A course's environments: the descriptor's `environments`, the plan sized for the largest, the spawn page's
choice (roles/hub/files/hubfleet_environments.py) and what the spawner runs for it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from hubfleet.errors import InvalidInput
from hubfleet.flavors import load_catalogue
from hubfleet.lifecycle import environments_for_hub
from hubfleet.sizing import plan_course
from tests.support.descriptors import stats_course
from tests.support.modules import ROOT, load_file

environments_module = load_file("roles/hub/files/hubfleet_environments.py")

OFFERED = [
    {"name": "python", "title": "Python", "image": "registry.example.edu/py:3.12"},
    {"name": "r", "title": "R & RStudio", "image": "registry.example.edu/r:4.4", "memory_per_user": "2Gi",
     "cpu_per_user": 1},
]


course = stats_course


def problems(**changes) -> list[tuple[str, str]]:
    with pytest.raises(InvalidInput) as caught:
        course(**changes)
    return [(p.path, p.message) for p in caught.value.problems]


def test_the_first_environment_is_the_default_image_and_every_image_is_listed_once():
    c = course(environments=[*OFFERED, {"name": "py-big", "title": "Python, more memory",
                                        "image": "registry.example.edu/py:3.12", "memory_per_user": "1Gi"}])
    assert c.image == "registry.example.edu/py:3.12"
    assert c.images == ["registry.example.edu/py:3.12", "registry.example.edu/r:4.4"]
    assert [e.name for e in c.environments] == ["python", "r", "py-big"]


def test_without_environments_the_course_image_is_the_only_one():
    c = course()
    assert not c.environments and c.images == [c.image]


@pytest.mark.parametrize("changes, path, words", [
    ({"image": "registry.example.edu/other:1", "environments": OFFERED}, "image",
     "give the image in `environments`"),
    ({"environments": [OFFERED[0], {**OFFERED[1], "name": "python"}]}, "environments", "named twice"),
    ({"environments": [{**OFFERED[0], "name": "Python 3"}]}, "environments[0].name", "lowercase"),
    ({"environments": [{**OFFERED[0], "image": "not an image"}]}, "environments[0].image", "image reference"),
    ({"environments": [{**OFFERED[1], "memory_per_user": "64Ki"}]}, "environments[0].memory_per_user",
     "out of range"),
    ({"environments": []}, "environments", "at least"),
    ({"environments": [{**OFFERED[0], "title": " "}]}, "environments[0].title", "blank"),
])
def test_bad_environments_name_the_field_and_the_fix(changes, path, words):
    found = problems(**changes)
    assert any(p == path and words in m for p, m in found), found


def test_the_plan_sizes_for_the_largest_environment_and_the_hub_gets_each_ones_limits():
    catalogue = load_catalogue("openstack")
    small, mixed = course(), course(environments=OFFERED)
    plan_small, plan_mixed = plan_course(small, catalogue), plan_course(mixed, catalogue)
    assert plan_mixed.mem_limit == 2 * 2**30 and plan_mixed.cpu_limit == 1
    assert plan_mixed.memory_needed > plan_small.memory_needed
    assert environments_for_hub(mixed) == [
        {"name": "python", "title": "Python", "image": "registry.example.edu/py:3.12", "mem_limit": "512M",
         "cpu_limit": 0.5},
        {"name": "r", "title": "R & RStudio", "image": "registry.example.edu/r:4.4", "mem_limit": "2048M",
         "cpu_limit": 1.0},
    ]
    assert environments_for_hub(small) == []


OFFERED_TO_HUB = [
    {"name": "python", "title": "Python", "image": "py:1", "mem_limit": "512M", "cpu_limit": 0.5},
    {"name": "r", "title": "R <&> \"RStudio\"", "image": "r:1", "mem_limit": "2048M", "cpu_limit": 1.0},
]


def test_the_form_offers_each_environment_escaped_with_the_previous_choice_checked():
    page = environments_module.form(OFFERED_TO_HUB, previous="r")
    assert page.count('type="radio" name="environment"') == 2
    assert "R &lt;&amp;&gt; &quot;RStudio&quot;" in page and "<&>" not in page
    assert 'value="r" checked' in page and 'value="python" checked' not in page
    assert 'value="python" checked' in environments_module.form(OFFERED_TO_HUB, previous="gone")


def test_a_form_or_a_query_picks_an_offered_environment_and_anything_else_is_refused_with_the_choices():
    pick = environments_module.options
    assert pick(OFFERED_TO_HUB, {"environment": ["r"]}) == {"environment": "r"}
    assert pick(OFFERED_TO_HUB, {}) == {"environment": "python"}
    for bad in (["matlab"], ["r", "python"], ["<script>"]):
        with pytest.raises(ValueError) as caught:
            pick(OFFERED_TO_HUB, {"environment": bad})
        assert "choose one of: python, r" in str(caught.value)


def test_a_start_runs_the_chosen_environment_and_a_name_no_longer_offered_gives_the_default():
    chosen = environments_module.chosen
    assert chosen(OFFERED_TO_HUB, {"environment": "r"}) == (OFFERED_TO_HUB[1], True)
    assert chosen(OFFERED_TO_HUB, {}) == (OFFERED_TO_HUB[0], True)
    assert chosen(OFFERED_TO_HUB, {"environment": "gone"}) == (OFFERED_TO_HUB[0], False)


def test_a_start_runs_the_chosen_image_with_its_limits(monkeypatch):
    files = str(ROOT / "roles/hub/files")
    monkeypatch.syspath_prepend(files)
    import hubfleet_spawner
    from hubfleet_seats import Line

    monkeypatch.setattr(hubfleet_spawner, "LINE", Line())
    monkeypatch.setattr(hubfleet_spawner, "SEATS_FRESH_SECONDS", 0.0)
    started = []

    async def start_server(self):
        started.append((self.image, self.mem_limit, self.cpu_limit))
        return "10.0.0.9", 40001

    async def nodes(self):
        return {"t-hub": {"capacity": 2, "running": 0, "hub": True, "ready": True, "active": True}}

    monkeypatch.setattr(hubfleet_spawner.PinnedSwarmSpawner, "_start_until_it_answers", start_server)
    monkeypatch.setattr(hubfleet_spawner.PinnedSwarmSpawner, "seat_nodes", nodes)

    def spawner(name, **config):
        users: dict = {}
        user = SimpleNamespace(name=name, groups=[], settings={"users": users}, url=f"/user/{name}/")
        made = hubfleet_spawner.PinnedSwarmSpawner(user=user, config=None, image="py:1", mem_limit="512M",
                                                    cpu_limit=0.5, **config)
        users[name] = SimpleNamespace(name=name, spawners={"": made})
        return made

    offered = spawner("ana", environments=OFFERED_TO_HUB)
    assert offered.options_form(offered).count('name="environment"') == 2
    assert offered.run_options_from_form({"environment": ["r"]}) == {"environment": "r"}
    assert offered.options_from_query({"environment": ["r"]}) == {"environment": "r"}
    with pytest.raises(ValueError):
        offered.options_from_query({"environment": ["matlab"]})
    offered.user_options = {"environment": "r"}
    asyncio.run(offered.start())
    assert started[-1] == ("r:1", 2048 * 2**20, 1.0)
    offered.user_options = {"environment": "gone"}  # kept from a course that offered it: the default, logged
    asyncio.run(offered.start())
    assert started[-1] == ("py:1", 512 * 2**20, 0.5)
    offered.user_options = {}  # started through the API, no choice given: the default
    asyncio.run(offered.start())
    assert started[-1] == ("py:1", 512 * 2**20, 0.5)

    single = spawner("ben")  # a course of one image: no form, the course's image and limits
    assert not single.options_form
    asyncio.run(single.start())
    assert started[-1] == ("py:1", 512 * 2**20, 0.5)


def test_plan_diff_says_what_offering_environments_does_and_the_plan_notes_them():
    from hubfleet.changes import compare

    catalogue = load_catalogue("openstack")
    old, new = course(), course(environments=OFFERED)
    changes = {c.path: c for c in compare(old, new, plan_course(old, catalogue), plan_course(new, catalogue))}
    assert "spawn page" in changes["environments"].effect and "next server start" in changes["environments"].effect
    assert changes["image"].shown.endswith("registry.example.edu/py:3.12")
    notes = " ".join(plan_course(new, catalogue).notes)
    assert "python (registry.example.edu/py:3.12), r (registry.example.edu/r:4.4)" in notes
    assert "sized for the largest (2Gi, 1 CPU per student)" in notes


def test_a_recorded_course_with_environments_reads_back_the_same():
    from hubfleet.descriptor import parse_recorded

    offered = course(environments=OFFERED)
    assert parse_recorded(offered.model_dump(mode="json")) == offered
    assert "environments" not in course().to_yaml()
