"""What a teacher pastes into the LMS for an LTI course: one small function, so the LTI module plugs in here."""

from __future__ import annotations

import logging
from typing import Any

from hubfleet.errors import HubfleetError
from hubfleet.state import Instance, StateStore

log = logging.getLogger("hubfleet.portal")

LTI_KINDS = ("lti11", "lti13")


def lms_settings(store: StateStore, instance: Instance) -> Any | None:
    """hubfleet.lti.lti_config(store, name) when that module exists; None otherwise (the page shows the URL)."""
    if instance.descriptor.get("authenticator", {}).get("kind") not in LTI_KINDS:
        return None
    try:
        from hubfleet.lti import lti_config  # type: ignore[attr-defined]
    except ImportError:
        return None
    try:
        return lti_config(store, instance.name)
    except HubfleetError as exc:
        log.warning("LTI settings of %s are not available: %s", instance.name, exc.message)
        return None
