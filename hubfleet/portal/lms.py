"""What a teacher's page shows of a ready course's log-in: the LMS settings or the shared password."""

from __future__ import annotations

import logging

from hubfleet.authenticators import kind_of
from hubfleet.descriptor import parse_recorded
from hubfleet.errors import HubfleetError
from hubfleet.state import Instance, StateStore

log = logging.getLogger("hubfleet.portal")


def login_details(store: StateStore, instance: Instance) -> dict:
    """What the request's page shows: the LMS settings (or None), the login hint, secrets the teacher may see."""
    course = parse_recorded(instance.descriptor, source="recorded descriptor")
    kind = kind_of(course)
    try:
        lms = kind.lms_settings(store, instance, course)
    except HubfleetError as exc:
        log.warning("LMS settings of %s are not available: %s", instance.name, exc.message)
        lms = None
    return {"lms": lms, "lms_expected": kind.from_lms, "login_hint": kind.teacher_hint(),
            "admin_hint": kind.admin_hint(course),
            **kind.teacher_secrets(store, instance.name)}
