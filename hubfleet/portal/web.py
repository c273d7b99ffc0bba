"""What every view shares: the portal object on the app, the signed-in user, role checks."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from flask import abort, current_app, g, redirect, request, url_for

from hubfleet.portal.auth import Authenticator, Throttle
from hubfleet.portal.config import PortalConfig
from hubfleet.portal.mail import Notifier
from hubfleet.portal import sessions
from hubfleet.portal.models import OPERATOR, CourseRequest, PortalStore, User
from hubfleet.portal.worker import Worker
from hubfleet.state import StateStore


@dataclass
class Portal:
    config: PortalConfig
    store: StateStore
    db: PortalStore
    worker: Worker
    notifier: Notifier
    auth: Authenticator
    throttle: Throttle

    def shutdown(self, wait: bool = True) -> None:
        self.worker.shutdown(wait=wait)
        self.notifier.shutdown(wait=wait)


def portal() -> Portal:
    return current_app.extensions["hubfleet_portal"]


MAX_ID = 2**31 - 1  # ids are 32-bit integer columns (PostgreSQL's INTEGER)


def current_user() -> User | None:
    if "user" not in g:
        g.user = sessions.user_of(portal().db)
    return g.user


def is_operator() -> bool:
    user = current_user()
    return user is not None and user.role == OPERATOR


def signed_in(view: Callable) -> Callable:
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if current_user() is None:
            return redirect(url_for("portal.login", next=request.path))
        return view(*args, **kwargs)

    return wrapper


def operator_only(view: Callable) -> Callable:
    """Signed in, and an operator: anyone else gets 403 (they know the action exists, not allowed)."""

    @functools.wraps(view)
    @signed_in
    def wrapper(*args, **kwargs):
        if not is_operator():
            abort(403, description="Only operators can do this.")
        return view(*args, **kwargs)

    return wrapper


def visible_request(request_id: int) -> CourseRequest:
    """The request if the user may see it; 404 otherwise, so others' requests cannot even be probed."""
    if not 0 < request_id <= MAX_ID:
        abort(404, description=f"No request #{request_id} among yours: request numbers go from 1 to {MAX_ID}.")
    row = portal().db.request(request_id)
    user = current_user()
    if row is None or user is None or (row.teacher_id != user.id and user.role != OPERATOR):
        abort(404, description="No such request among yours.")
    return row
