"""Pages every signed-in user has: sign-in, their requests, the request form, a request's page."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, send_file, url_for

from hubfleet.inputs import text_problem, whole_number
from hubfleet.portal import sessions
from hubfleet.portal.csrf import rotate_csrf_token
from hubfleet.portal.forms import AUTH_CHOICES, FIELD_LABELS, LTI11_USERNAME_KEYS, LTI13_USERNAME_KEYS, read_form, validate_request
from hubfleet.portal.lms import login_details
from hubfleet.changes import compare
from hubfleet.descriptor import parse_recorded
from hubfleet.portal.models import (
    APPROVED, ARCHIVED, ARCHIVING, BUSY_STATES, CHANGE_ASKED, FAILED, PROVISIONING, READY, REQUESTED, CourseRequest,
)
from hubfleet.sizing import load_catalogue, plan_course
from hubfleet.portal.web import current_user, is_operator, portal, signed_in, visible_request
from hubfleet.term import moment

bp = Blueprint("portal", __name__)

SHOWS_EVENTS = (APPROVED, PROVISIONING, READY, FAILED, ARCHIVING, ARCHIVED)


def _safe_next(target: str | None) -> str:
    """Only a path on this site: a sign-in link must not send people elsewhere."""
    # Browsers read "/\\evil.example" as "//evil.example": refuse backslashes too.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target \
            and not urlsplit(target).netloc:
        return target
    return url_for("portal.index")


@bp.get("/")
def index():
    user = current_user()
    if user is None:
        return redirect(url_for("portal.login"))
    return redirect(url_for("operator.dashboard") if is_operator() else url_for("portal.my_requests"))


MAX_PASSWORD = 1024  # longer than any passphrase; hashing more is work for an attacker's benefit


@bp.route("/login", methods=["GET", "POST"])
def login():
    error, login_name = None, ""
    if request.method == "POST":
        p = portal()
        login_name = request.form.get("login", "").strip().lower()[:254]
        if text_problem(login_name):
            login_name = ""  # no account has a control character in its name; none reaches the database
        password = request.form.get("password", "")
        address = request.remote_addr or "unknown"
        blocked = p.throttle.blocked(login_name, address)
        if blocked:
            retry_after = {"Retry-After": str(p.config.login_limits.window_seconds)}
            return render_template("login.html", error=blocked, login=login_name), 429, retry_after
        usable = login_name and password and len(password) <= MAX_PASSWORD
        user = p.auth.authenticate(login_name, password) if usable else None
        if user is None:
            p.throttle.failed(login_name, address)
            error = "Wrong email/username or password." if login_name and password else \
                "Give your email (or university username) and your password."
            return render_template("login.html", error=error, login=login_name), 401
        p.throttle.succeeded(login_name, address)
        target = _safe_next(request.args.get("next"))
        sessions.start(p.db, user)  # a new session at sign-in: nothing from before it is trusted
        rotate_csrf_token()
        p.db.audit(user.login, "sign-in", detail=f"from {address}")
        return redirect(target)
    return render_template("login.html", error=error, login=login_name)


@bp.post("/logout")
def logout():
    sessions.end(portal().db)
    return redirect(url_for("portal.login"))


@bp.get("/requests")
@signed_in
def my_requests():
    user = current_user()
    return render_template("requests.html", requests=portal().db.requests(teacher_id=user.id))


def _form_context(values: dict, errors: dict) -> dict:
    p = portal()
    images = [(i.image, f"{i.label} — {i.memory_per_user}, {i.cpu_per_user:g} CPU per student")
              for i in p.db.images()]
    return {"values": values, "errors": errors, "image_options": images, "auth_choices": AUTH_CHOICES,
            "lti11_keys": [(k, k) for k in LTI11_USERNAME_KEYS], "lti13_keys": [(k, k) for k in LTI13_USERNAME_KEYS],
            "config": p.config, "labels": FIELD_LABELS}


def name_problem(name: str) -> str | None:
    """Why a valid course name is still not free."""
    p = portal()
    instance = p.store.find(name)
    if p.db.name_taken_by(name) or (instance is not None and instance.status != "archived"):
        return f"{name!r} is already used by another course — choose another name (e.g. {name}-2)"
    return None


@bp.route("/requests/new", methods=["GET", "POST"])
@signed_in
def new_request():
    p = portal()
    if request.method == "GET":
        values = read_form({"auth_kind": "shared-password"})
        images = p.db.images()
        if images:
            values["image"] = images[0].image
        return render_template("request_new.html", **_form_context(values, {}))
    result = validate_request(request.form, p.config, p.db.images(), name_problem=name_problem)
    if not result.ok:
        return render_template("request_new.html", **_form_context(result.values, result.errors)), 400
    course, values, user = result.course, result.values, current_user()
    row = p.db.add_request(user, name=course.name, title=course.title, form=values,
                           descriptor=course.model_dump(mode="json"), plan=result.plan.to_dict(),
                           notes=values["notes"])
    p.db.audit(user.login, "request", request_id=row.id, detail=f"course {course.name}")
    flash("Your request is sent. The operators will look at it; you will get an email when it is approved.")
    return redirect(url_for("portal.show_request", request_id=row.id))


@bp.route("/requests/<id:request_id>/change", methods=["GET", "POST"])
@signed_in
def change_request(request_id: int):
    """A ready course changed as teachers ask it: the request's form again (its name fixed), what the
    change does shown first; an operator approves it and create runs again (students keep their work)."""
    p, user = portal(), current_user()
    row = visible_request(request_id)
    if row.state != READY:
        flash(f"Only a ready course can be changed: #{row.id} is {row.state}.", "error")
        return redirect(url_for("portal.show_request", request_id=row.id))
    if p.db.changes(request_id=row.id, states=(CHANGE_ASKED,)):
        flash("A change of this course already waits for an operator: it is decided first.", "error")
        return redirect(url_for("portal.show_request", request_id=row.id))
    if request.method == "GET":
        return render_template("request_new.html", **_form_context(dict(row.form), {}), changing=row)
    form = {**request.form.to_dict(), "name": row.name}  # the course keeps its name (and its address)
    result = validate_request(form, p.config, p.db.images())
    if result.ok:
        old = parse_recorded(row.descriptor, source=f"request {row.id}")
        changes = compare(old, result.course, plan_course(old, load_catalogue(old.provider)), result.plan)
        if not changes:
            result.add("", "nothing would change: this is the course as it runs now")
    if not result.ok:
        return render_template("request_new.html", **_form_context(result.values, result.errors), changing=row), 400
    change = p.db.add_change(row, user, form=result.values, descriptor=result.course.model_dump(mode="json"),
                             plan=result.plan.to_dict(), changes=[c.to_dict() for c in changes])
    p.db.audit(user.login, "change-request", request_id=row.id,
               detail=f"change #{change.id}: " + ", ".join(c.path for c in changes))
    flash("Your change is sent: the operators see what it does and apply it; you will get an email.")
    return redirect(url_for("portal.show_request", request_id=row.id))


SHOWN_EVENTS = ("step", "ok", "failed", "info")


def _events(row: CourseRequest) -> list[dict]:
    p = portal()
    if row.state not in SHOWS_EVENTS or p.store.find(row.name) is None:
        return []
    # The steps that matter to a teacher: each Ansible task (skipped ones included) stays in the
    # course's events for `hubfleet status` and the operator's logs, not on the request's page.
    return [{"id": i, "at": at.strftime("%H:%M:%S"), "kind": kind, "message": message}
            for i, at, kind, message in p.store.events(row.name, row.events_after)
            if kind in SHOWN_EVENTS and (row.events_until is None or i <= row.events_until)]


def _scheduled(row: CourseRequest) -> str | None:
    """When an approved course whose warm time has not come will be created (docs/term.md), else None."""
    if row.state != APPROVED:
        return None
    term = portal().worker.term(row)
    return moment(term.warm_at) if term.phase(dt.datetime.now(dt.timezone.utc)) == "waiting" else None


@bp.get("/requests/<id:request_id>")
@signed_in
def show_request(request_id: int):
    p = portal()
    row = visible_request(request_id)
    instance = p.store.find(row.name) if row.state in SHOWS_EVENTS else None
    login = login_details(p.store, instance) if row.state == READY and instance is not None else {}
    has_archive = row.state == ARCHIVED and _archive_file(row) is not None
    return render_template("request.html", r=row, teacher=p.db.user(row.teacher_id), events=_events(row),
                           busy=row.state in BUSY_STATES, lms=login.get("lms"),
                           shared_password=login.get("shared_password"), login_hint=login.get("login_hint", ""),
                           lms_expected=login.get("lms_expected", False), admin_hint=login.get("admin_hint", ""),
                           admin_password=login.get("admin_password"), scheduled=_scheduled(row),
                           has_archive=has_archive, changes=p.db.changes(request_id=row.id), change_asked=CHANGE_ASKED, audit=p.db.audit_log(request_id=row.id) if is_operator() else [],
                           requested=REQUESTED)


@bp.get("/requests/<id:request_id>/events")
@signed_in
def request_events(request_id: int):
    """For the optional script on the request's page: new events since `after`, and the state."""
    row = visible_request(request_id)
    after_id = whole_number(request.args.get("after", "0"), largest=2**63 - 1) or 0
    return jsonify(state=row.state, events=[e for e in _events(row) if e["id"] > after_id])


def _archive_file(row: CourseRequest) -> Path | None:
    p = portal()
    path = Path(row.archive) if row.archive else None
    if path is None or not path.is_file():
        return None
    # Only ever hand out files from the store's archive folder.
    return path if path.resolve().parent == p.store.archive_dir().resolve() else None


@bp.get("/requests/<id:request_id>/archive")
@signed_in
def download_archive(request_id: int):
    row = visible_request(request_id)
    path = _archive_file(row) if row.state == ARCHIVED else None
    if path is None:
        abort(404, description="This course has no archive to download.")
    portal().db.audit(current_user().login, "download", request_id=row.id, detail=path.name)
    kind = "application/gzip" if path.name.endswith(".gz") else "application/x-tar"  # older archives were .tar.gz
    return send_file(path, as_attachment=True, download_name=path.name, mimetype=kind)
