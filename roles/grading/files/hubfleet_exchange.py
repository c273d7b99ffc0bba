"""The course's nbgrader exchange: a JupyterHub service every node of the Swarm reaches over HTTP.

nbgrader's own exchange is a directory shared by every server, protected by Unix owners; here all
students' servers run as the same uid on several hosts, so a shared directory would let any student
read another's submission. This service stores released assignments, submissions and feedback on
the hub host instead, and the hub's tokens say who asks: the `grader` service (the teachers'
formgrader) releases, collects and returns feedback; every other caller is a user, who may fetch
what is released, submit as themselves, and read only their own submissions and feedback. The
client half is `hubfleet_nbgrader_exchange` in the notebook image.

Run by JupyterHub as a managed service: python3 hubfleet_exchange.py --course-id ID --root DIR
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import time
from pathlib import Path

GRADER = "grader"  # the service allowed to release, collect and return feedback
NAME_RE = re.compile(r"^[^/\\\x00-\x1f\x7f+*]{1,100}$")  # nbgrader ids: no path separators, no + or *
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"  # nbgrader's own (Exchange.timestamp_format)
MAX_ARCHIVE_BYTES = 100 * 2**20
MAX_MEMBERS = 2000


class Refused(Exception):
    """A request the exchange will not serve: (status, message for the caller)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def check_name(value: str, what: str) -> str:
    if not NAME_RE.match(value or "") or value.strip() != value or value in (".", "..") or value.startswith("."):
        raise Refused(400, f"{what} {value!r:.60} is not usable: no slashes, + or *, no leading dot or space, "
                           "at most 100 characters")
    return value


def check_archive(data: bytes, limit: int = MAX_ARCHIVE_BYTES) -> list[str]:
    """A gzip'd tar of plain files and folders under one relative tree; returns its file names."""
    if len(data) > limit:
        raise Refused(413, f"the upload is {len(data) // 2**20} MiB, more than the {limit // 2**20} MiB allowed")
    names, total = [], 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise Refused(413, f"the upload holds more than {MAX_MEMBERS} files")
                parts = member.name.split("/")
                if member.name.startswith("/") or ".." in parts or any(not p for p in parts[:-1]):
                    raise Refused(400, f"{member.name!r:.80} is not a relative path inside the assignment")
                if not (member.isfile() or member.isdir()):
                    raise Refused(400, f"{member.name!r:.80} is a link or a device: only files and folders travel")
                total += member.size
                if total > 4 * limit:
                    raise Refused(413, "the upload unpacks to more than the exchange keeps")
                if member.isfile():
                    names.append(member.name)
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError):
        raise Refused(400, "the upload is not a gzip'd tar archive") from None
    return names


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Store:
    """The exchange's files for one course: outbound/, inbound/<student>/<assignment>/, feedback/."""

    def __init__(self, root: Path, course_id: str):
        self.course_id = course_id
        self.root = Path(root) / course_id
        for part in ("outbound", "inbound", "feedback"):
            (self.root / part).mkdir(parents=True, exist_ok=True)

    # --- released assignments ------------------------------------------------------------

    def released(self) -> list[dict]:
        found = []
        for meta in sorted((self.root / "outbound").glob("*/meta.json")):
            found.append(json.loads(meta.read_text()))
        return found

    def release(self, assignment: str, data: bytes, *, force: bool) -> dict:
        folder = self.root / "outbound" / check_name(assignment, "assignment")
        if (folder / "meta.json").exists() and not force:
            raise Refused(409, f"{assignment} is already released: release again with force to replace it")
        notebooks = sorted(n[:-6] for n in check_archive(data) if n.endswith(".ipynb") and "/" not in n)
        meta = {"assignment_id": assignment, "notebooks": notebooks, "released_at": _now()}
        write_atomic(folder / "files.tar.gz", data)
        write_atomic(folder / "meta.json", json.dumps(meta).encode())
        return meta

    def unrelease(self, assignment: str) -> None:
        folder = self.root / "outbound" / check_name(assignment, "assignment")
        for name in ("meta.json", "files.tar.gz"):
            (folder / name).unlink(missing_ok=True)

    def released_files(self, assignment: str) -> bytes:
        path = self.root / "outbound" / check_name(assignment, "assignment") / "files.tar.gz"
        if not (path.parent / "meta.json").exists():
            raise Refused(404, f"{assignment} is not released")
        return path.read_bytes()

    # --- submissions ---------------------------------------------------------------------

    def submit(self, student: str, assignment: str, data: bytes) -> dict:
        if not (self.root / "outbound" / check_name(assignment, "assignment") / "meta.json").exists():
            raise Refused(404, f"{assignment} is not released: there is nothing to submit it to")
        notebooks = sorted(n[:-6] for n in check_archive(data) if n.endswith(".ipynb") and "/" not in n)
        stamp = dt.datetime.now(dt.timezone.utc)
        key = stamp.strftime("%Y%m%dT%H%M%S%fZ")
        folder = self._submissions(student, assignment) / key
        meta = {"student_id": student, "assignment_id": assignment, "timestamp": stamp.strftime(TIMESTAMP_FORMAT),
                "key": key, "notebooks": notebooks, "sha256": hashlib.sha256(data).hexdigest()}
        write_atomic(folder / "files.tar.gz", data)
        write_atomic(folder / "meta.json", json.dumps(meta).encode())
        return meta

    def submissions(self, assignment: str | None, student: str | None) -> list[dict]:
        pattern = f"{check_name(student, 'student') if student else '*'}/" \
                  f"{check_name(assignment, 'assignment') if assignment else '*'}/*/meta.json"
        found = []
        for meta_path in sorted((self.root / "inbound").glob(pattern)):
            meta = json.loads(meta_path.read_text())
            meta["feedback"] = sorted(p.name for p in self._feedback(meta).glob("*.html"))
            found.append(meta)
        return found

    def submission_files(self, student: str, assignment: str, key: str) -> bytes:
        path = self._submissions(student, assignment) / check_name(key, "submission") / "files.tar.gz"
        if not path.exists():
            raise Refused(404, f"no submission {key} of {assignment} by {student}")
        return path.read_bytes()

    def _submissions(self, student: str, assignment: str) -> Path:
        return self.root / "inbound" / check_name(student, "student") / check_name(assignment, "assignment")

    # --- feedback ------------------------------------------------------------------------

    def _feedback(self, meta: dict) -> Path:
        return self.root / "feedback" / meta["student_id"] / meta["assignment_id"] / meta["key"]

    def _submission_meta(self, student: str, assignment: str, key: str) -> dict:
        path = self._submissions(student, assignment) / check_name(key, "submission") / "meta.json"
        if not path.exists():
            raise Refused(404, f"no submission {key} of {assignment} by {student}")
        return json.loads(path.read_text())

    def give_feedback(self, student: str, assignment: str, key: str, notebook: str, html: bytes) -> None:
        meta = self._submission_meta(student, assignment, key)
        if len(html) > MAX_ARCHIVE_BYTES:
            raise Refused(413, "the feedback is larger than the exchange keeps")
        write_atomic(self._feedback(meta) / f"{check_name(notebook, 'notebook')}.html", html)

    def feedback(self, student: str, assignment: str, key: str, notebook: str) -> bytes:
        meta = self._submission_meta(student, assignment, key)
        path = self._feedback(meta) / f"{check_name(notebook, 'notebook')}.html"
        if not path.exists():
            raise Refused(404, f"no feedback yet on {notebook} of {assignment}")
        return path.read_bytes()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime(TIMESTAMP_FORMAT)


# --- the web service -------------------------------------------------------------------------


def make_app(store: Store, prefix: str):
    """The tornado application; imported late so the store above can be used (and tested) alone."""
    from jupyterhub.services.auth import HubAuthenticated
    from tornado import web

    class Handler(HubAuthenticated, web.RequestHandler):
        def caller(self) -> tuple[str, str]:
            model = self.get_current_user()
            if not model:
                raise web.HTTPError(403)
            return model.get("kind", "user"), model["name"]

        def is_grader(self) -> bool:
            return self.caller() == ("service", GRADER)

        def own_or_any(self, student: str | None) -> str | None:
            """The student a request may see: anyone's for the grader, else only the caller's own."""
            kind, name = self.caller()
            if (kind, name) == ("service", GRADER):
                return student
            if kind != "user":
                raise Refused(403, "only the course's users and its grader use the exchange")
            if student not in (None, name):
                raise Refused(403, "a student sees only their own submissions and feedback")
            return name

        def require_grader(self) -> None:
            if not self.is_grader():
                raise Refused(403, "only the course's formgrader may do this (teachers use it)")

        def check_course(self, course_id: str) -> None:
            if course_id != store.course_id:
                raise Refused(404, f"this exchange serves the course {store.course_id!r}, not {course_id!r:.60}")

        def write_error(self, status_code, **kwargs):
            self.set_header("Content-Type", "application/json")
            reason = kwargs.get("reason") or self._reason
            self.finish(json.dumps({"status": status_code, "message": reason}))

        def _handle_request_exception(self, exc):
            if isinstance(exc, Refused):
                self.send_error(exc.status, reason=exc.message)
            else:
                super()._handle_request_exception(exc)

        def send_json(self, value) -> None:
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(value))

        def send_archive(self, data: bytes) -> None:
            self.set_header("Content-Type", "application/gzip")
            self.finish(data)

    class Assignments(Handler):
        @web.authenticated
        def get(self, course_id):
            self.check_course(course_id)
            self.caller()
            self.send_json(store.released())

    class Assignment(Handler):
        @web.authenticated
        def get(self, course_id, assignment):
            self.check_course(course_id)
            self.caller()
            self.send_archive(store.released_files(assignment))

        @web.authenticated
        def put(self, course_id, assignment):
            self.check_course(course_id)
            self.require_grader()
            self.send_json(store.release(assignment, self.request.body, force=self.get_argument("force", "") == "1"))

        @web.authenticated
        def delete(self, course_id, assignment):
            self.check_course(course_id)
            self.require_grader()
            store.unrelease(assignment)
            self.send_json({"assignment_id": assignment, "released": False})

    class Submissions(Handler):
        @web.authenticated
        def get(self, course_id, assignment=None):
            self.check_course(course_id)
            student = self.own_or_any(self.get_argument("student", None))
            self.send_json(store.submissions(assignment, student))

        @web.authenticated
        def post(self, course_id, assignment):
            self.check_course(course_id)
            kind, name = self.caller()
            if kind != "user":
                raise Refused(403, "submissions come from a student's own server")
            self.send_json(store.submit(name, assignment, self.request.body))

    class Submission(Handler):
        @web.authenticated
        def get(self, course_id, assignment, student, key):
            self.check_course(course_id)
            self.send_archive(store.submission_files(self.own_or_any(student), assignment, key))

    class Feedback(Handler):
        @web.authenticated
        def get(self, course_id, assignment, student, key, notebook):
            self.check_course(course_id)
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(store.feedback(self.own_or_any(student), assignment, key, notebook))

        @web.authenticated
        def put(self, course_id, assignment, student, key, notebook):
            self.check_course(course_id)
            self.require_grader()
            store.give_feedback(student, assignment, key, notebook, self.request.body)
            self.send_json({"student_id": student, "assignment_id": assignment, "key": key, "notebook": notebook})

    class Health(web.RequestHandler):
        def get(self):
            self.finish({"course_id": store.course_id, "time": time.time()})

    part = r"([^/]+)"
    api = prefix.rstrip("/") + "/api/" + part
    return web.Application([
        (prefix.rstrip("/") + "/health", Health),
        (api + "/assignments", Assignments),
        (api + "/assignments/" + part, Assignment),
        (api + "/submissions", Submissions),
        (api + "/submissions/" + part, Submissions),
        (api + "/submissions/" + part + "/" + part + "/" + part, Submission),
        (api + "/feedback/" + part + "/" + part + "/" + part + "/" + part, Feedback),
    ])


def main() -> None:
    from urllib.parse import urlsplit

    from tornado.httpserver import HTTPServer
    from tornado.ioloop import IOLoop

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--course-id", required=True)
    parser.add_argument("--root", required=True, type=Path)
    args = parser.parse_args()
    store = Store(args.root, args.course_id)
    url = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    app = make_app(store, os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/exchange/"))
    server = HTTPServer(app, max_body_size=MAX_ARCHIVE_BYTES + 2**20, xheaders=True)
    server.listen(url.port, url.hostname)
    IOLoop.current().start()


if __name__ == "__main__":
    main()
