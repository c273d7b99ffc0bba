"""nbgrader's exchange over HTTP, to the course's `exchange` service on the hub (roles/grading).

nbgrader's own exchange is a directory every server shares; a course's servers run on several hosts
as the same uid, so this plugin moves the same things (released assignments, submissions, feedback)
through the hub's exchange service instead, with the server's JupyterHub token. The service decides
who may do what: the `grader` service (the teachers' formgrader) releases, collects and returns
feedback; a student fetches, submits and reads only their own feedback. Timestamps of submissions
are the service's, not the student's clock.

Configured by /etc/hubfleet/jupyter/*/nbgrader_config.py from the server's environment:
HUBFLEET_EXCHANGE_URL (…/services/exchange), HUBFLEET_COURSE_ID and JUPYTERHUB_API_TOKEN.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import tarfile
from collections import defaultdict
from urllib.parse import quote

import requests
from dateutil.parser import parse as parse_date
from traitlets import Bool, Integer, Unicode, default

from nbgrader.exchange import abc
from nbgrader.utils import ignore_patterns

SUBMISSION_TIMESTAMP_FILE = "timestamp.txt"


class Exchange(abc.Exchange):
    url = Unicode(help="The exchange service, e.g. http://10.0.0.2:8082/services/exchange").tag(config=True)
    token = Unicode(help="A JupyterHub token allowed to use the exchange service").tag(config=True)
    timeout = Integer(120, help="Seconds one request to the exchange may take").tag(config=True)
    path_includes_course = Bool(False, help="Fetch into ./<course>/<assignment> instead of ./<assignment>").tag(
        config=True)

    @default("url")
    def _url(self):
        return os.environ.get("HUBFLEET_EXCHANGE_URL", "").rstrip("/")

    @default("token")
    def _token(self):
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    # --- talking to the service ----------------------------------------------------------

    def api(self, method: str, *parts: str, **kwargs) -> requests.Response:
        if not self.url or not self.token:
            self.fail("this server has no course exchange (HUBFLEET_EXCHANGE_URL and its token are not set)")
        if not self.coursedir.course_id:
            self.fail("No course id specified. Re-run with --course flag.")
        path = "/".join(quote(part, safe="") for part in ("api", self.coursedir.course_id, *parts))
        try:
            response = requests.request(method, f"{self.url}/{path}", timeout=self.timeout,
                                        headers={"Authorization": f"token {self.token}"}, **kwargs)
        except requests.RequestException as exc:
            self.fail(f"the course's exchange cannot be reached ({type(exc).__name__}): try again in a minute")
        if response.status_code >= 400:
            try:
                message = response.json().get("message") or response.reason
            except ValueError:
                message = response.reason
            self.fail(f"the exchange refused ({response.status_code}): {message}")
        return response

    def assignment_root(self, assignment_id: str) -> str:
        parts = [self.coursedir.course_id, assignment_id] if self.path_includes_course else [assignment_id]
        return os.path.abspath(os.path.join(self.assignment_dir, *parts))

    # --- moving folders as archives ------------------------------------------------------

    def pack(self, src: str) -> bytes:
        """A gzip'd tar of src's files and folders, as nbgrader's own copy would take them."""
        ignore = ignore_patterns(exclude=self.coursedir.ignore, include=self.coursedir.include,
                                 max_file_size=self.coursedir.max_file_size, log=self.log)
        total = 0
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for folder, dirs, files in os.walk(src):
                skipped = set(ignore(folder, dirs + files))
                dirs[:] = sorted(d for d in dirs if d not in skipped and not os.path.islink(os.path.join(folder, d)))
                for name in sorted(files):
                    full = os.path.join(folder, name)
                    if name in skipped or os.path.islink(full) or not os.path.isfile(full):
                        continue
                    total += os.path.getsize(full)
                    if total > 1000 * self.coursedir.max_dir_size:
                        self.fail(f"the folder is larger than {self.coursedir.max_dir_size} kB "
                                  "(CourseDirectory.max_dir_size): remove large files first")
                    tar.add(full, arcname=os.path.relpath(full, src), recursive=False)
        return buffer.getvalue()

    def unpack(self, data: bytes, dest: str, *, only_missing: bool = False) -> None:
        """Extract an archive from the exchange into dest: plain files and folders under dest, nothing else."""
        root = os.path.realpath(dest)
        os.makedirs(root, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                target = os.path.realpath(os.path.join(root, member.name))
                if not target.startswith(root + os.sep) or not (member.isfile() or member.isdir()):
                    self.fail(f"the exchange sent an unusable entry {member.name!r}: nothing more was written")
                if member.isdir():
                    os.makedirs(target, exist_ok=True)
                    continue
                if only_missing and os.path.exists(target):
                    continue
                if only_missing:
                    self.log.warning("Replacing missing file '%s'", os.path.relpath(target, os.getcwd()))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with tar.extractfile(member) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)

    def released(self) -> dict[str, dict]:
        return {item["assignment_id"]: item for item in self.api("GET", "assignments").json()}

    def submissions(self, assignment_id: str | None = None, student_id: str | None = None) -> list[dict]:
        params = {"student": student_id} if student_id else {}
        parts = ("submissions", assignment_id) if assignment_id else ("submissions",)
        return self.api("GET", *parts, params=params).json()

    # nbgrader's copy steps; each command below does its work in copy_files
    def init_src(self):
        pass

    def init_dest(self):
        pass

    def copy_files(self):
        raise NotImplementedError


class ExchangeFetchAssignment(Exchange, abc.ExchangeFetchAssignment):
    def copy_files(self):
        assignment_id = self.coursedir.assignment_id
        released = self.released()
        if assignment_id not in released:
            known = ", ".join(sorted(released)) or "none yet"
            self.fail(f"Assignment not found: {assignment_id} (released: {known})")
        dest = self.assignment_root(assignment_id)
        exists = os.path.isdir(dest)
        if exists and not self.replace_missing_files:
            self.fail(f"You already have a copy of the assignment in this directory: {assignment_id}")
        self.unpack(self.api("GET", "assignments", assignment_id).content, dest, only_missing=exists)
        self.log.info("Fetched as: %s %s", self.coursedir.course_id, assignment_id)


class ExchangeSubmit(Exchange, abc.ExchangeSubmit):
    def copy_files(self):
        assignment_id = os.path.basename(self.assignment_root(self.coursedir.assignment_id))
        src = self.assignment_root(assignment_id)
        if not os.path.isdir(src):
            self.fail(f"Assignment not found at: {src}")
        released = self.released().get(assignment_id)
        if released is None:
            self.fail(f"{assignment_id} is not released in {self.coursedir.course_id}: nothing to submit it to")
        local = {os.path.splitext(n)[0] for n in os.listdir(src) if n.endswith(".ipynb")}
        missing = sorted(set(released["notebooks"]) - local)
        if missing and self.strict:
            self.fail(f"Assignment {assignment_id} not submitted. There are missing notebooks for the "
                      f"submission: {', '.join(missing)}")
        if missing or local - set(released["notebooks"]):
            self.log.warning("Possible missing notebooks and/or extra notebooks submitted for assignment %s: "
                             "missing %s, extra %s", assignment_id, missing, sorted(local - set(released["notebooks"])))
        meta = self.api("POST", "submissions", assignment_id, data=self.pack(src)).json()
        self.log.info("Submitted as: %s %s %s", self.coursedir.course_id, assignment_id, meta["timestamp"])


class ExchangeReleaseAssignment(Exchange, abc.ExchangeReleaseAssignment):
    def copy_files(self):
        assignment_id = self.coursedir.assignment_id
        src = self.coursedir.format_path(self.coursedir.release_directory, ".", assignment_id)
        if not os.path.isdir(src):
            source = self.coursedir.format_path(self.coursedir.source_directory, ".", assignment_id)
            if os.path.isdir(source):
                self.fail(f"Assignment found in '{source}' but not '{src}', run `nbgrader generate_assignment` first.")
            self.fail(f"Assignment not found: {src}")
        if assignment_id in self.released() and not self.force:
            self.fail(f"Destination already exists, add --force to overwrite: {self.coursedir.course_id} "
                      f"{assignment_id}")
        self.api("PUT", "assignments", assignment_id, data=self.pack(src), params={"force": "1"})
        self.log.info("Released as: %s %s", self.coursedir.course_id, assignment_id)


def _latest(records: list[dict], duedate: dt.datetime | None) -> dict:
    ordered = sorted(records, key=lambda r: r["key"], reverse=True)
    if duedate is not None:
        before = [r for r in ordered if parse_date(r["timestamp"]) <= duedate]
        if before:
            return before[0]
    return ordered[0]


class ExchangeCollect(Exchange, abc.ExchangeCollect):
    def copy_files(self):
        from nbgrader.api import Gradebook, MissingEntry

        assignment_id = self.coursedir.assignment_id
        student_id = self.coursedir.student_id if self.coursedir.student_id not in ("", "*") else None
        by_student = defaultdict(list)
        for record in self.submissions(assignment_id, student_id):
            by_student[record["student_id"]].append(record)
        duedate = None
        if self.before_duedate:
            with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
                try:
                    duedate = gb.find_assignment(assignment_id).duedate
                except MissingEntry:
                    duedate = None
            if duedate is not None and duedate.tzinfo is None:
                duedate = duedate.replace(tzinfo=dt.timezone.utc)
        if not by_student:
            self.log.warning("No submissions of '%s' for course '%s' to collect", assignment_id,
                             self.coursedir.course_id)
        for student, records in sorted(by_student.items()):
            chosen = _latest(records, duedate)
            dest = self.coursedir.format_path(self.coursedir.submitted_directory, student, assignment_id)
            if os.path.isdir(dest):
                existing = self.coursedir.get_existing_timestamp(dest)
                new = parse_date(chosen["timestamp"])
                if existing is not None and existing.tzinfo is None:
                    existing = existing.replace(tzinfo=dt.timezone.utc)
                if not ((self.update and (existing is None or new > existing))
                        or (self.before_duedate and existing != new)):
                    self.log.info("No newer submission to collect: %s %s", student, assignment_id)
                    continue
                self.log.info("Updating submission: %s %s", student, assignment_id)
                shutil.rmtree(dest)
            else:
                self.log.info("Collecting submission: %s %s", student, assignment_id)
            self.unpack(self.api("GET", "submissions", assignment_id, student, chosen["key"]).content, dest)
            # The exchange's time of receipt, whatever the student's files say.
            with open(os.path.join(dest, SUBMISSION_TIMESTAMP_FILE), "w") as handle:
                handle.write(chosen["timestamp"])


class ExchangeReleaseFeedback(Exchange, abc.ExchangeReleaseFeedback):
    def copy_files(self):
        assignment_id = self.coursedir.assignment_id
        exclude = set(filter(None, self.coursedir.student_id_exclude.split(",")))
        student = self.coursedir.student_id if self.coursedir.student_id not in ("", "*") else None
        keys = {(r["student_id"], r["timestamp"]): r["key"] for r in self.submissions(assignment_id, student)}
        pattern_root = self.coursedir.format_path(self.coursedir.feedback_directory, "*", assignment_id)
        for folder in sorted(_glob(pattern_root)):
            student_id = os.path.basename(os.path.dirname(folder))
            if student_id in exclude or (student and student_id != student):
                continue
            stamp_file = os.path.join(folder, SUBMISSION_TIMESTAMP_FILE)
            if not os.path.isfile(stamp_file):
                self.log.warning("No timestamp.txt in %s: its feedback is not released", folder)
                continue
            with open(stamp_file) as handle:
                timestamp = handle.read().strip()
            key = keys.get((student_id, timestamp))
            if key is None:
                self.log.warning("Feedback of %s for %s matches no submission in the exchange (%s)", student_id,
                                 assignment_id, timestamp)
                continue
            for html in sorted(n for n in os.listdir(folder) if n.endswith(".html")):
                with open(os.path.join(folder, html), "rb") as handle:
                    self.api("PUT", "feedback", assignment_id, student_id, key, html[:-5], data=handle.read())
                self.log.info("Releasing feedback for student '%s' on assignment '%s/%s/%s' (%s)", student_id,
                              self.coursedir.course_id, assignment_id, html[:-5], timestamp)


def _glob(pattern: str) -> list[str]:
    import glob

    return [p for p in glob.glob(pattern) if os.path.isdir(p)]


class ExchangeFetchFeedback(Exchange, abc.ExchangeFetchFeedback):
    def copy_files(self):
        assignment_id = self.coursedir.assignment_id or None
        fetched = 0
        for record in self.submissions(assignment_id):
            for html in record.get("feedback", []):
                notebook = html[:-5]
                dest = os.path.join(self.assignment_root(record["assignment_id"]), "feedback", record["timestamp"])
                os.makedirs(dest, exist_ok=True)
                body = self.api("GET", "feedback", record["assignment_id"], record["student_id"], record["key"],
                                notebook).content
                with open(os.path.join(dest, html), "wb") as handle:
                    handle.write(body)
                fetched += 1
                self.log.info("Fetched feedback: %s", os.path.join(dest, html))
        if not fetched:
            self.log.warning("No feedback yet for %s", assignment_id or "any assignment")


class ExchangeList(Exchange, abc.ExchangeList):
    def copy_files(self):
        pass

    def _outbound(self) -> list[dict]:
        wanted = self.coursedir.assignment_id
        found = []
        for assignment_id, item in sorted(self.released().items()):
            if wanted and assignment_id != wanted:
                continue
            local = self.assignment_root(assignment_id)
            fetched = os.path.isdir(local)
            info = {"course_id": self.coursedir.course_id, "assignment_id": assignment_id,
                    "status": "fetched" if fetched else "released", "path": local if fetched else "",
                    "notebooks": [{"notebook_id": nb, "path": os.path.join(local, nb + ".ipynb") if fetched else ""}
                                  for nb in item["notebooks"]]}
            if self.remove:
                info["status"] = "removed"
            found.append(info)
        return found

    def _submitted(self) -> list[dict]:
        student = self.coursedir.student_id if self.coursedir.student_id not in ("", "*") else None
        groups = defaultdict(list)
        for record in self.submissions(self.coursedir.assignment_id or None, student):
            local_dir = os.path.join(self.assignment_root(record["assignment_id"]), "feedback", record["timestamp"])
            notebooks = []
            for nb in record["notebooks"]:
                local = os.path.join(local_dir, nb + ".html")
                notebooks.append({"notebook_id": nb, "path": "", "has_local_feedback": os.path.isfile(local),
                                  "has_exchange_feedback": nb + ".html" in record.get("feedback", []),
                                  "local_feedback_path": local if os.path.isfile(local) else None,
                                  "feedback_updated": False})
            info = {"course_id": self.coursedir.course_id, "student_id": record["student_id"],
                    "assignment_id": record["assignment_id"], "timestamp": record["timestamp"],
                    "status": "submitted", "path": "", "notebooks": notebooks,
                    "has_local_feedback": bool(notebooks) and all(n["has_local_feedback"] for n in notebooks),
                    "has_exchange_feedback": bool(notebooks) and all(n["has_exchange_feedback"] for n in notebooks),
                    "feedback_updated": False}
            info["local_feedback_path"] = local_dir if info["has_local_feedback"] else None
            groups[(record["student_id"], record["assignment_id"])].append(info)
        return [{"course_id": self.coursedir.course_id, "student_id": student_id, "assignment_id": assignment_id,
                 "status": "submitted", "submissions": sorted(items, key=lambda i: i["timestamp"])}
                for (student_id, assignment_id), items in sorted(groups.items())]

    def list_files(self):
        if self.inbound or self.cached:
            found = self._submitted()
            self.log.info("Submitted assignments:")
            for group in found:
                for info in group["submissions"]:
                    self.log.info("%s %s %s %s", info["course_id"], info["student_id"], info["assignment_id"],
                                  info["timestamp"])
            return found
        found = self._outbound()
        self.log.info("Released assignments:")
        for info in found:
            self.log.info("%s %s%s", info["course_id"], info["assignment_id"],
                          " (already downloaded)" if info["status"] == "fetched" else "")
        return found

    def remove_files(self):
        if self.inbound or self.cached:
            self.fail("submissions stay in the exchange: only released assignments can be removed")
        found = self._outbound()
        for info in found:
            self.api("DELETE", "assignments", info["assignment_id"])
            self.log.info("Removed released assignment %s %s", info["course_id"], info["assignment_id"])
        return found


def exchange_config(c) -> None:
    """Point nbgrader's exchange at these classes (from nbgrader_config.py)."""
    for name, cls in (("exchange", Exchange), ("fetch_assignment", ExchangeFetchAssignment),
                      ("fetch_feedback", ExchangeFetchFeedback), ("release_assignment", ExchangeReleaseAssignment),
                      ("release_feedback", ExchangeReleaseFeedback), ("list", ExchangeList),
                      ("submit", ExchangeSubmit), ("collect", ExchangeCollect)):
        setattr(c.ExchangeFactory, name, f"{__name__}.{cls.__name__}")


__all__ = ["exchange_config"]
