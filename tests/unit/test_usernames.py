"""Hub usernames from LMS identities (hubfleet/usernames.py, shipped to the hub as hubfleet_usernames.py).

A property suite (Hypothesis) over identities: never reserved, never merged, stable, valid for every
name built from them; then the cases the issue named, and the variants a person could use to look
like someone else (case, width, accents, scripts, confusables, digest look-alikes).
"""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from hubfleet.usernames import (
    ADMIN_USER,
    MAX_ESCAPED,
    PROBE_USER,
    RESERVED_NAMES,
    ReservedName,
    hub_username,
    is_digested,
    is_plain,
    is_reserved,
    spawner_escape,
    spawner_unescape,
    typed_username,
)

SWARM_SERVICE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # DNS label: what Swarm accepts as a service name
DOCKER_VOLUME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")

# Any Unicode text, surrogates and control characters included: an LMS sends what it likes.
identities = st.text(st.characters(codec=None), min_size=1, max_size=80)
near_plain = st.text(st.sampled_from("abcxyz019._@-ABCé ̀ａ\u0430\u2028\n"), min_size=1, max_size=24)
any_identity = identities | near_plain


def jupyterhub_accepts(name: str) -> bool:
    """JupyterHub 6's Authenticator.validate_username with no username_pattern, and its normalize_username."""
    return bool(name) and "/" not in name and set(name) != {"."} and name == name.strip() and name == name.lower()


def assert_valid(name: str) -> None:
    assert jupyterhub_accepts(name), name
    assert len(spawner_escape(name)) <= MAX_ESCAPED, name
    assert SWARM_SERVICE.fullmatch("jupyter-" + spawner_escape(name)), name
    assert DOCKER_VOLUME.fullmatch("hubfleet-user-" + spawner_escape(name)), name
    assert name.isascii() and name == unicodedata.normalize("NFKC", name)


@settings(max_examples=400)
@given(any_identity)
@example("ADMIN")
@example("admin")
@example("hubfleet-probe")
@example(PROBE_USER)
@example("\ud800")
def test_never_reserved_always_valid_and_stable(identity):
    name = hub_username(identity)
    assert not is_reserved(name) and name != PROBE_USER and name not in RESERVED_NAMES
    assert_valid(name)
    assert hub_username(identity) == name, "a pure function"
    assert is_plain(name) or is_digested(name)


@settings(max_examples=400)
@given(any_identity, any_identity)
@example("José García", "Josè Garcìa")
@example("李 Wei", "王 Wei")
@example("ADMIN", "Admin_")
@example("alice", "Alice")
def test_never_merges_two_identities(one, other):
    assume(one != other)
    assert hub_username(one) != hub_username(other)


@given(any_identity)
def test_a_name_that_looks_digested_maps_elsewhere(identity):
    """Whoever sends another identity's username as their own id gets another name."""
    name = hub_username(identity)
    if name != identity:
        assert hub_username(name) != name
        assert hub_username(name + "x") != name


@given(st.from_regex(r"[a-z0-9](?:[a-z0-9._@]{0,20}[a-z0-9])?", fullmatch=True))
def test_plain_identities_are_their_own_name(identity):
    assume(not is_reserved(identity))
    assert hub_username(identity) == identity


@given(any_identity)
def test_typed_names_ignore_case_and_outer_spaces_only(login):
    try:
        name = typed_username(login)
    except ReservedName:
        assert is_reserved(login.strip().lower())
        return
    except ValueError:
        assert not login.strip()
        return
    assert typed_username(f"  {login} ") == typed_username(login.lower()) == name
    assert not is_reserved(name)
    assert_valid(name)


@pytest.mark.parametrize("identity", [
    "ADMIN", "Admin", "Admin_", " admin", "admin ", "admin\n", "ａｄｍｉｎ", "аdmin", "ADMİN", "admın", "ad\u200bmin",
    "administrator", "root", "ROOT", "jovyan", "hubfleet", "hubfleet-probe", "Hubfleet-Probe", PROBE_USER,
    "hubfleet--probe", "hubfleet_service", "idle-culler",
])
def test_the_admin_the_probe_and_services_cannot_be_reached(identity):
    name = hub_username(identity)
    assert name not in RESERVED_NAMES | {ADMIN_USER, PROBE_USER} and not name.startswith("hubfleet")


def test_the_issues_pairs_land_on_distinct_readable_names():
    names = {identity: hub_username(identity) for identity in
             ["José García", "Josè Garcìa", "李 Wei", "王 Wei", "ADMIN", "Admin_", "admin"]}
    assert len(set(names.values())) == len(names)
    assert names["José García"].startswith("jose-garcia--") and names["Josè Garcìa"].startswith("jose-garcia--")
    assert names["李 Wei"].startswith("wei--") and names["ADMIN"].startswith("admin--")


def test_readable_names_stay_readable():
    for identity in ["alice", "jane.doe@example.edu", "a3f1c0de9b7e4d2a8c6b5e4f3a2b1c0d", "17", "s_1234", "x"]:
        assert hub_username(identity) == identity


def test_width_case_and_script_variants_of_one_name_are_all_different_people():
    variants = ["alice", "Alice", "ALICE", "ａｌｉｃｅ", "аlice", "alicе", "al1ce", "alice\u0301", "alic\u00e9", "alice\u200d"]
    assert len({hub_username(v) for v in variants}) == len(variants)


def test_the_mapping_is_pinned():
    """Changing the mapping would move every student to an empty notebook: it needs a new DIGEST_DOMAIN."""
    assert hub_username("ADMIN") == "admin--tslhe66crobxckbo"
    assert hub_username("José García") == "jose-garcia--dytqqmwksblxbg3x"
    assert hub_username("李 Wei") == "wei--3uskv3x4tyxxa33p"


def test_long_identities_are_cut_to_fit_and_stay_apart():
    base = "very.long.student.identifier." * 4
    one, other = hub_username(base + "a"), hub_username(base + "b")
    assert one != other and len(spawner_escape(one)) <= MAX_ESCAPED
    assert hub_username("ä" * 10_000).startswith("a")


def test_typed_names_fold_case_and_refuse_the_hubs_own():
    assert typed_username(" Alice ") == typed_username("alice") == "alice"
    assert typed_username("José") == hub_username("josé") != typed_username("jose")
    for login in ("admin", "ADMIN", " Admin ", "hubfleet-probe", PROBE_USER.upper(), "root", "idle-culler"):
        with pytest.raises(ReservedName):
            typed_username(login)
    with pytest.raises(ValueError):
        typed_username("   ")


def test_spawner_escape_is_dockerspawners():
    """DockerSpawner 14: escapism with [a-z0-9] safe and "-" as escape, unpadded upper hex, then lowercased."""
    assert spawner_escape("jane.doe@example.edu") == "jane-2edoe-40example-2eedu"
    assert spawner_escape(PROBE_USER) == "hubfleet-2d-2dprobe"
    assert spawner_escape("é\n") == "-c3-a9-a"
    for name in ("alice", "jane.doe@example.edu", "x--y", hub_username("李 Wei")):
        assert spawner_unescape(spawner_escape(name)) == name
    assert spawner_unescape("bob-zz") is None
