"""What an LMS administrator types in to add a course's hub as an LTI tool.

`lti_config(store, name)` is the one source: `hubfleet lti-config` prints it and the portal shows
it. It holds the LTI 1.1 consumer secret, so it goes only where secrets may go.
"""

from __future__ import annotations


from hubfleet.authenticators import kind_of
from hubfleet.descriptor import parse_recorded
from hubfleet.errors import HubfleetError
from hubfleet.state import StateStore


def lti_config(store: StateStore, name: str) -> dict[str, str]:
    """The LMS-side settings of course `name`, as one flat mapping of strings (JSON and the portal).

    Raises HubfleetError when the course does not log in by LTI or has no URL yet.
    """
    instance = store.get(name)
    course = parse_recorded(instance.descriptor, source="recorded descriptor")
    settings = kind_of(course).lms_settings(store, instance, course)
    if settings is None:
        raise HubfleetError(f"course {name!r} logs in with {course.authenticator.kind}, not LTI",
                            hint="set authenticator.kind to lti11 or lti13 in its descriptor and run create again")
    return settings
