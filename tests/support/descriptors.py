"""A small course's descriptor the unit tests change one field of (environments, egress, shared data)."""

from __future__ import annotations

import copy

from hubfleet.descriptor import Course, parse_course

STATS = {
    "name": "stats-101",
    "title": "Statistics",
    "authenticator": {"kind": "shared-password", "password": "generate"},
    "load": {"students": 40, "memory_per_user": "512Mi", "cpu_per_user": 0.5},
    "dates": {"start": "2030-02-01", "end": "2030-06-30"},
    "domain": "stats.hub.example.edu",
}


def stats_course(**changes) -> Course:
    """STATS with these top-level fields replaced, parsed as `hubfleet validate` would (no date check)."""
    data = copy.deepcopy(STATS)
    data.update(changes)
    return parse_course(data, today=None)
