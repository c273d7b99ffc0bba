"""Operators' pages: pending requests with their sizing plan, approve / reject / retry / destroy, images, audit."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from pydantic import ValidationError

from hubfleet.descriptor import problems_from
from hubfleet.inputs import text_problem
from hubfleet.portal.config import ImageChoice
from hubfleet.portal.models import (
    APPROVED, ARCHIVING, CHANGE_APPROVED, CHANGE_ASKED, CHANGE_REJECTED, FAILED, READY, REJECTED, REQUESTED, CourseRequest,
)
from hubfleet.portal.web import current_user, operator_only, portal, visible_request
from hubfleet.portal.worker import last_event_id
from hubfleet.term import moment

bp = Blueprint("operator", __name__, url_prefix="/operator")

MAX_REASON = 2000


def _one_line(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", " ").replace("\t", " ")


def reason_problem(reason: str) -> str | None:
    """Why an operator's reason for rejecting (a request or a change) cannot be sent to the teacher."""
    if not reason:
        return "give a reason — the teacher reads it"
    if len(reason) > MAX_REASON:
        return f"is {len(reason)} characters long — keep it under {MAX_REASON}"
    return text_problem(_one_line(reason))


def _change(change_id: int):
    """An asked-for change and its request, as the operator may see them; 404 otherwise."""
    change = portal().db.change(change_id) if 0 < change_id <= 2**62 else None
    if change is None:
        abort(404, description="No such change.")
    return change, visible_request(change.request_id)


def _dashboard(reject_errors: dict[int, str] | None = None, reasons: dict[int, str] | None = None, status=200):
    p = portal()
    pending = p.db.requests(states=(REQUESTED,))
    others = [r for r in p.db.requests() if r.state != REQUESTED]
    teachers = {r.teacher_id: p.db.user(r.teacher_id) for r in pending + others}
    asked = [(change, p.db.request(change.request_id)) for change in p.db.changes(states=(CHANGE_ASKED,))]
    return render_template("operator.html", pending=pending, others=others, teachers=teachers, asked=asked,
                           reject_errors=reject_errors or {}, reasons=reasons or {}), status


@bp.get("/")
@operator_only
def dashboard():
    return _dashboard()


def _clash(row: CourseRequest) -> str | None:
    """Another live course holds this name: creating would change *that* course."""
    p = portal()
    other = p.db.name_taken_by(row.name, except_id=row.id)
    if other is not None and other.state not in (REQUESTED,):
        return f"request #{other.id} already holds the name {row.name!r}"
    instance = p.store.find(row.name)
    if instance is not None and instance.status != "archived" and row.state == REQUESTED:
        return f"a course named {row.name!r} already exists in the fleet"
    return None


@bp.post("/requests/<id:request_id>/approve")
@operator_only
def approve(request_id: int):
    p, user = portal(), current_user()
    row = visible_request(request_id)
    clash = _clash(row)
    if clash:
        flash(f"Not approved: {clash}. Reject it with that reason, or remove the other course first.", "error")
        return redirect(url_for("portal.show_request", request_id=row.id))
    updated = p.db.update_request(row.id, expect=(REQUESTED,), state=APPROVED, decided_by=user.login,
                                  events_after=last_event_id(p.store, row.name))
    if updated is None:
        flash(f"Request #{row.id} is {row.state}, no longer waiting: nothing was changed.", "error")
        return redirect(url_for("portal.show_request", request_id=row.id))
    p.db.audit(user.login, "approve", request_id=row.id, detail=f"course {row.name}")
    term = p.worker.term(updated)
    if term.phase(dt.datetime.now(dt.timezone.utc)) == "waiting":  # made warm_before its start, not now
        p.notifier.approved(updated, user.login, made_at=term.warm_at)
        flash(f"Approved: {row.name} will be created on {moment(term.warm_at)}, before its first day.")
    else:
        p.notifier.approved(updated, user.login)
        p.worker.start_create(row.id)
        flash(f"Approved: {row.name} is being created.")
    return redirect(url_for("portal.show_request", request_id=row.id))


@bp.post("/requests/<id:request_id>/reject")
@operator_only
def reject(request_id: int):
    p, user = portal(), current_user()
    row = visible_request(request_id)
    reason = request.form.get("reason", "").strip()
    why = reason_problem(reason)
    if why:
        shown = "" if text_problem(_one_line(reason)) else reason[:MAX_REASON]
        return _dashboard({row.id: why}, {row.id: shown}, status=400)
    updated = p.db.update_request(row.id, expect=(REQUESTED,), state=REJECTED, reason=reason, decided_by=user.login)
    if updated is None:
        flash(f"Request #{row.id} is {row.state}, no longer waiting: nothing was changed.", "error")
        return redirect(url_for("operator.dashboard"))
    p.db.audit(user.login, "reject", request_id=row.id, detail=reason)
    p.notifier.rejected(updated, user.login, reason)
    flash(f"Rejected: {row.name}.")
    return redirect(url_for("operator.dashboard"))


@bp.post("/changes/<id:change_id>/approve")
@operator_only
def approve_change(change_id: int):
    """Apply a teacher's change: the request takes the new descriptor and create runs again (it converges:
    a new image on every host first, students' volumes kept, running servers left as they are)."""
    p, user = portal(), current_user()
    change, row = _change(change_id)
    if row.state != READY:
        flash(f"Request #{row.id} is {row.state}: a change is applied to a ready course only.", "error")
        return redirect(url_for("portal.show_request", request_id=row.id))
    if p.db.decide_change(change.id, CHANGE_APPROVED, by=user.login) is None:
        flash(f"Change #{change.id} was already decided: nothing was changed.", "error")
        return redirect(url_for("portal.show_request", request_id=row.id))
    updated = p.db.update_request(row.id, expect=(READY,), state=APPROVED, descriptor=change.descriptor,
                                  form=change.form, plan=change.plan, title=change.descriptor["title"],
                                  events_after=last_event_id(p.store, row.name))
    p.db.audit(user.login, "approve-change", request_id=row.id,
               detail=f"change #{change.id}: " + ", ".join(c["path"] for c in change.changes))
    p.notifier.change_decided(updated or row, change, user.login, approved=True)
    p.worker.start_create(row.id)
    flash(f"Approved: {row.name} is being changed.")
    return redirect(url_for("portal.show_request", request_id=row.id))


@bp.post("/changes/<id:change_id>/reject")
@operator_only
def reject_change(change_id: int):
    p, user = portal(), current_user()
    change, row = _change(change_id)
    reason = request.form.get("reason", "").strip()
    why = reason_problem(reason)
    if why:
        flash(f"Not rejected: the reason {why}" if reason else f"Not rejected: {why}", "error")
        return redirect(url_for("portal.show_request", request_id=row.id))
    if p.db.decide_change(change.id, CHANGE_REJECTED, by=user.login, reason=reason) is None:
        flash(f"Change #{change.id} was already decided: nothing was changed.", "error")
        return redirect(url_for("portal.show_request", request_id=row.id))
    p.db.audit(user.login, "reject-change", request_id=row.id, detail=f"change #{change.id}: {reason}")
    p.notifier.change_decided(row, change, user.login, approved=False, reason=reason)
    flash(f"Change #{change.id} rejected.")
    return redirect(url_for("portal.show_request", request_id=row.id))


@bp.post("/requests/<id:request_id>/retry")
@operator_only
def retry(request_id: int):
    p, user = portal(), current_user()
    row = visible_request(request_id)
    if p.db.update_request(row.id, expect=(FAILED,), state=APPROVED, error=None, failed_step=None) is None:
        flash(f"Request #{row.id} is {row.state}, not failed: nothing to retry.", "error")
    else:
        p.db.audit(user.login, "retry", request_id=row.id, detail=f"course {row.name}")
        p.worker.start_create(row.id)
        flash(f"Retrying: {row.name} is being created again (finished steps are not redone).")
    return redirect(url_for("portal.show_request", request_id=row.id))


def _teacher_email(row: CourseRequest) -> str:
    teacher = portal().db.user(row.teacher_id)
    return teacher.email if teacher else "the teacher"


@bp.get("/requests/<id:request_id>/end")
@operator_only
def confirm_end(request_id: int):
    """What ending the course removes and what it keeps, before anything is done."""
    row = visible_request(request_id)
    return render_template("end.html", r=row, errors={}, ending=row.state in (READY, FAILED),
                           teacher_email=_teacher_email(row))


@bp.post("/requests/<id:request_id>/destroy")
@operator_only
def destroy(request_id: int):
    """Ending a course: the operator's own password, and for the choice without saving, the course's
    name typed again. Anything missing or wrong shows the page again with nothing changed."""
    p, user = portal(), current_user()
    row = visible_request(request_id)
    without_archive = request.form.get("without_archive") == "on"
    password = request.form.get("password", "")
    errors: dict[str, str] = {}
    if without_archive and request.form.get("confirm_name", "").strip() != row.name:
        errors["confirm_name"] = f"type the course's short name, {row.name}, to delete the students' work for good"
    address = request.remote_addr or "unknown"
    blocked = p.throttle.blocked(user.login, address)
    if blocked:
        errors["password"] = blocked
    elif not password or len(password) > 1024 or p.auth.authenticate(user.login, password) is None:
        p.throttle.failed(user.login, address)
        errors["password"] = "your own password, as you signed in with it — it was " + \
            ("missing" if not password else "not right")
    if errors:
        return render_template("end.html", r=row, errors=errors, ending=row.state in (READY, FAILED),
                               without=without_archive, teacher_email=_teacher_email(row)), 400
    p.throttle.succeeded(user.login, address)
    if p.db.update_request(row.id, expect=(READY, FAILED), state=ARCHIVING) is None:
        flash(f"Request #{row.id} is {row.state}: only a ready or failed course can be removed.", "error")
    else:
        detail = f"course {row.name}" + (" WITHOUT archive" if without_archive else " with archive")
        p.db.audit(user.login, "destroy", request_id=row.id, detail=detail)
        p.worker.start_destroy(row.id, archive=not without_archive)
        flash(f"Removing {row.name}" + (" without saving the students' work." if without_archive
                                        else " after archiving the students' work."))
    return redirect(url_for("portal.show_request", request_id=row.id))


@bp.route("/images", methods=["GET", "POST"])
@operator_only
def images():
    p, user = portal(), current_user()
    errors: dict[str, list[str]] = {}
    values = {"image": "", "label": "", "memory_per_user": "512Mi", "cpu_per_user": "0.5"}
    if request.method == "POST":
        if request.form.get("remove"):
            ref = request.form["remove"]
            if len(ref) > 255 or text_problem(ref):
                flash("No such image in the list: nothing was removed.", "error")
            elif p.db.remove_image(ref):
                p.db.audit(user.login, "image-remove", detail=ref)
                flash(f"Removed {ref} from the list (courses already using it keep it).")
            return redirect(url_for("operator.images"))
        values = {key: request.form.get(key, "").strip() for key in values}
        try:
            choice = ImageChoice.model_validate(values)
        except ValidationError as exc:
            for problem in problems_from(exc):
                errors.setdefault(problem.path.split(".")[0], []).append(problem.message)
        else:
            p.db.put_image(image=choice.image, label=choice.label, memory_per_user=choice.memory_per_user,
                           cpu_per_user=choice.cpu_per_user)
            p.db.audit(user.login, "image-add", detail=f"{choice.image} ({choice.label})")
            flash(f"{choice.label} ({choice.image}) is in the list.")
            return redirect(url_for("operator.images"))
    return render_template("images.html", images=p.db.images(), values=values, errors=errors), 400 if errors else 200


@bp.get("/audit")
@operator_only
def audit():
    return render_template("audit.html", entries=portal().db.audit_log())



