"""The course's `grades` service: teachers send finalised scores to the LMS; the roster comes from it.

A JupyterHub service (roles/grading), run by the hub on the hub host; only the course's teachers
reach its page (/services/grades/). It reads scores from the teachers' formgrader (the `grader`
service's nbgrader API) and sends them with hubfleet_lms: LTI 1.3 Assignment and Grade Services
or LTI 1.1 Basic Outcomes. Every posting is recorded (lms.sqlite); a score already confirmed is not
sent again, failures are retried and shown on the page. With LTI 1.3 it also reads the class list
(Names and Role Provisioning Services) as soon as a launch names it, then every few minutes, and
enters the students in nbgrader's gradebook, so teachers grade the whole class before anyone launched.

The LTI secrets live here and in the hub, never in the grader, where students' code runs when
notebooks are autograded.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import secrets
import sys
import time
from functools import partial
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))  # hubfleet_lms.py and hubfleet_lti.py live beside it

import requests  # noqa: E402

import hubfleet_lms as lms  # noqa: E402

ROSTER_POLL_SECONDS = 20  # how often a newly launched course's roster URL is looked for
ROSTER_RETRY_SECONDS = 60  # after a failed reading (the grader starting, the LMS busy)


class Grader:
    """The formgrader's API in the `grader` service, called with this service's hub token."""

    def __init__(self, base_url: str, token: str, timeout: float = 60):
        self.base = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = False  # a service on this host: no proxy, no CA bundle
        self.session.headers["Authorization"] = f"token {token}"
        self.timeout = timeout

    def _call(self, method: str, path: str, **kwargs):
        try:
            response = self.session.request(method, f"{self.base}/formgrader/api/{path}", timeout=self.timeout,
                                            allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise lms.LmsError(f"the formgrader does not answer ({type(exc).__name__})", transient=True) from None
        if response.status_code != 200:
            raise lms.LmsError(f"the formgrader answered {response.status_code} to {path}",
                               transient=response.status_code >= 500)
        return response.json()

    def assignments(self) -> list[dict]:
        return self._call("GET", "assignments")

    def submissions(self, assignment: str) -> list[dict]:
        return self._call("GET", f"submissions/{quote(assignment, safe='')}")

    def students(self) -> list[dict]:
        return self._call("GET", "students")

    def put_student(self, student_id: str, first_name: str | None, last_name: str | None, email: str | None) -> None:
        self._call("PUT", f"student/{quote(student_id, safe='')}",
                   data=json.dumps({"first_name": first_name, "last_name": last_name, "email": email}))


class Grades:
    """What the page and the API do: scores out, roster in."""

    def __init__(self, args: argparse.Namespace, grader: Grader, username_of):
        self.args = args
        self.grader = grader
        self.book = lms.LmsBook(args.book)
        self.username_of = username_of
        self.table = json.loads(args.roles)
        self.locks: dict[str, asyncio.Lock] = {}
        self.roster_lock = asyncio.Lock()
        self.roster_url_synced: str | None = None
        self._token: lms.ToolToken | None = None
        self._outcomes: lms.Outcomes | None = None

    # --- clients --------------------------------------------------------------------------

    @property
    def token(self) -> lms.ToolToken:
        if self._token is None:
            self._token = lms.ToolToken(client_id=self.args.client_id, token_url=self.args.token_url,
                                        private_pem=Path(self.args.key_file).read_text(), verify=self.args.ca_bundle)
        return self._token

    @property
    def outcomes(self) -> lms.Outcomes:
        if self._outcomes is None:
            with open(self.args.secrets_file) as handle:
                secret = json.load(handle)["consumer_secret"]
            self._outcomes = lms.Outcomes(self.args.consumer_key, secret, verify=self.args.ca_bundle)
        return self._outcomes

    # --- scores ---------------------------------------------------------------------------

    def finished_scores(self, assignment: str) -> tuple[list[lms.Score], dict[str, str]]:
        """Scores the formgrader has finished, and why the others are not sent."""
        scores, waiting = [], {}
        for sub in self.grader.submissions(assignment):
            student = sub.get("student")
            if not sub.get("submitted"):
                continue
            if not sub.get("autograded"):
                waiting[student] = "submitted, not autograded yet"
            elif sub.get("needs_manual_grade"):
                waiting[student] = "needs manual grading in the formgrader"
            else:
                scores.append(lms.Score(student, float(sub.get("score") or 0.0), float(sub.get("max_score") or 0.0)))
        return scores, waiting

    def target_of(self, assignment: str):
        """For one assignment: a function giving each score its sender (or why it has none)."""
        if self.args.lms == "1.1":
            return partial(self._target_11, assignment)
        if self.args.lms == "1.3":
            cache: dict[float, str] = {}
            return partial(self._target_13, assignment, cache)
        return lambda score: "this course does not log in from an LMS"

    def _target_11(self, assignment: str, score: lms.Score):
        launch = next((l for l in self.book.launches(score.username)
                       if l["assignment"] == assignment and l["outcome_url"] and l["sourcedid"]), None)
        if launch is None:
            return (f"no launch of {assignment} by this student from the LMS yet: the LMS gives the place for "
                    "a grade at launch (an activity with custom parameter assignment=" + assignment + ")")
        if score.maximum <= 0:
            return "the assignment has no points to grade"

        def send(s: lms.Score) -> str:
            self.outcomes.replace_result(launch["outcome_url"], launch["sourcedid"], s.score / s.maximum)
            return f"{launch['outcome_url']} ({launch['resource_link']})"

        return send

    def _target_13(self, assignment: str, cache: dict, score: lms.Score):
        member = self.book.members().get(score.username)
        if member is None or not member["lms_user_id"]:
            return "the LMS has not named this student yet (no launch, not in its roster)"
        own = next((l for l in self.book.launches() if l["assignment"] == assignment and l["lineitem"]), None)
        endpoint = self.book.latest_endpoint("lineitems")
        if own is None and endpoint is None:
            return "no launch has named the LMS's grade service yet: enable grades for the tool in the LMS"

        def send(s: lms.Score) -> str:
            ags = lms.Ags(self.token)
            if own is not None:
                item = own["lineitem"]
            else:
                item = cache.get(s.maximum) or ags.line_item(endpoint[0], resource_id=assignment, label=assignment,
                                                             score_maximum=s.maximum)
                cache[s.maximum] = item
            ags.post_score(item, user_id=member["lms_user_id"], score=s.score, maximum=s.maximum)
            return item

        return send

    async def send(self, assignment: str) -> dict:
        lock = self.locks.setdefault(assignment, asyncio.Lock())
        async with lock:  # one sending per assignment at a time: two clicks never send twice
            scores, waiting = await asyncio.to_thread(self.finished_scores, assignment)
            outcomes = await asyncio.to_thread(lms.send_scores, self.book, assignment, scores,
                                               self.target_of(assignment), attempts=self.args.attempts)
        return {"assignment": assignment, "waiting": waiting,
                "outcomes": [{"student": o.username, "state": o.state, "detail": o.detail} for o in outcomes]}

    # --- roster ---------------------------------------------------------------------------

    async def sync_roster(self) -> dict:
        async with self.roster_lock:
            return await asyncio.to_thread(self._sync_roster)

    def _sync_roster(self) -> dict:
        endpoint = self.book.latest_endpoint("memberships")
        if endpoint is None:
            return {"synced": False, "reason": "no launch has named the LMS's roster service yet"}
        url, context_id = endpoint
        try:
            members = lms.Nrps(self.token).members(url, context_id=context_id)
            students, skipped = 0, []
            for member in members:
                group = lms.group_for(member.get("roles"), self.table, self.args.default_group)
                username = self.username_of(member)
                if not username:
                    skipped.append(member["user_id"])
                    continue
                self.book.upsert_member(username, member, group)
                if group == self.args.default_group:
                    self.grader.put_student(username, member.get("given_name"), member.get("family_name"),
                                            member.get("email"))
                    students += 1
        except lms.LmsError as exc:
            self.book.record_roster_sync(url, 0, 0, exc.message)
            return {"synced": False, "reason": exc.message}
        self.book.record_roster_sync(url, len(members), students, None)
        return {"synced": True, "members": len(members), "students": students, "skipped": len(skipped)}

    async def roster_loop(self) -> None:
        """Read the class list when a launch first names it, then every roster_interval (a minute after a failure)."""
        next_read = 0.0
        while True:
            endpoint = await asyncio.to_thread(self.book.latest_endpoint, "memberships")
            if endpoint and (time.monotonic() >= next_read or endpoint[0] != self.roster_url_synced):
                result = await self.sync_roster()
                self.roster_url_synced = endpoint[0]
                next_read = time.monotonic() + (self.args.roster_interval if result["synced"] else ROSTER_RETRY_SECONDS)
            await asyncio.sleep(ROSTER_POLL_SECONDS)

    # --- what the page shows --------------------------------------------------------------

    def status(self) -> dict:
        try:
            assignments = [a["name"] for a in self.grader.assignments()]
            problem = None
        except lms.LmsError as exc:
            assignments, problem = [], exc.message
        return {"lms": self.args.lms, "assignments": assignments, "grader_problem": problem,
                "postings": self.book.postings(), "roster": self.book.last_roster_sync(),
                "members": len(self.book.members())}


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Grades to the LMS</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}td,th{{padding:.2em .6em;text-align:left}}
.failed,.no-target{{color:#a00}}.sent{{color:#070}}</style></head><body>
<h1>Grades to the LMS</h1>{notice}
<p>Scores come from the formgrader once a submission is autograded and needs no manual grading.
A score the LMS has confirmed is not sent again; a changed score is sent once more.</p>
{roster}{assignments}</body></html>"""


def render(status: dict, xsrf: str, prefix: str, notice: str = "") -> str:
    e = html.escape
    rows = {}
    for posting in status["postings"]:
        rows.setdefault(posting["assignment"], []).append(posting)
    parts = []
    if status["grader_problem"]:
        parts.append(f"<p class=failed>{e(status['grader_problem'])}</p>")
    for name in status["assignments"]:
        table = "".join(
            f"<tr class={e(p['state'])}><td>{e(p['username'])}</td><td>{p['score']:g} / {p['maximum']:g}</td>"
            f"<td>{e(p['state'])}</td><td>{p['attempts']}</td><td>{e(p['error'] or '')}</td></tr>"
            for p in rows.get(name, []) if p["score"] is not None)
        parts.append(f"<h2>{e(name)}</h2><form method=post action='{e(prefix)}assignments/{e(quote(name, safe=''))}"
                     f"/send'><input type=hidden name=_xsrf value='{e(xsrf)}'><button>Send grades to the LMS</button>"
                     f"</form><table><tr><th>student</th><th>score</th><th>posting</th><th>attempts</th><th>last error"
                     f"</th></tr>{table}</table>")
    roster = ""
    if status["lms"] == "1.3":
        last = status["roster"]
        said = "not read yet" if not last else (
            f"read {time.strftime('%Y-%m-%d %H:%M', time.gmtime(last['at']))} UTC: {last['members']} members, "
            f"{last['students']} students" if not last["error"] else f"failed: {e(last['error'])}")
        roster = (f"<h2>Class list</h2><p>From the LMS: {said}.</p><form method=post action='{e(prefix)}roster/sync'>"
                  f"<input type=hidden name=_xsrf value='{e(xsrf)}'><button>Read it again</button></form>")
    return PAGE.format(notice=f"<p>{e(notice)}</p>" if notice else "", roster=roster, assignments="".join(parts))


def make_app(grades: Grades, prefix: str):
    from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
    from tornado import web

    class Base(HubOAuthenticated, web.RequestHandler):
        def write_json(self, value) -> None:
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(value))

    class Page(Base):
        @web.authenticated
        async def get(self):
            status = await asyncio.to_thread(grades.status)
            self.finish(render(status, self.xsrf_token.decode() if isinstance(self.xsrf_token, bytes)
                               else self.xsrf_token, prefix, self.get_argument("notice", "")))

    class Send(Base):
        @web.authenticated
        async def post(self, assignment):
            result = await grades.send(assignment)
            counts = {}
            for outcome in result["outcomes"]:
                counts[outcome["state"]] = counts.get(outcome["state"], 0) + 1
            said = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "nothing to send"
            self.redirect(f"{prefix}?notice={quote(f'{assignment}: {said}')}")

    class Roster(Base):
        @web.authenticated
        async def post(self):
            result = await grades.sync_roster()
            said = f"{result['students']} students" if result["synced"] else result["reason"]
            self.redirect(f"{prefix}?notice={quote('class list: ' + said)}")

    class ApiStatus(Base):
        @web.authenticated
        async def get(self):
            self.write_json(await asyncio.to_thread(grades.status))

    class ApiSend(Base):
        @web.authenticated
        async def post(self, assignment):
            self.write_json(await grades.send(assignment))

    class ApiRoster(Base):
        @web.authenticated
        async def post(self):
            self.write_json(await grades.sync_roster())

    name = r"([^/]+)"
    return web.Application([
        (prefix, Page),
        (prefix + "oauth_callback", HubOAuthCallbackHandler),
        (prefix + f"assignments/{name}/send", Send),
        (prefix + "roster/sync", Roster),
        (prefix + "api/status", ApiStatus),
        (prefix + f"api/assignments/{name}/send", ApiSend),
        (prefix + "api/roster/sync", ApiRoster),
    ], cookie_secret=secrets.token_bytes(32), xsrf_cookies=True)


def username_function(key: str):
    """A roster member's hub username: the same function of the same field the launches use
    (hubfleet_usernames.hub_username of the identity exactly as the LMS sends it), so a roster entry
    and that person's launches meet on one name, and two people never share one."""
    from hubfleet_usernames import hub_username

    field = {"sub": "user_id"}.get(key, key)

    def username_of(member: dict) -> str | None:
        identity = member.get(field)
        if isinstance(identity, int) and not isinstance(identity, bool):
            identity = str(identity)
        return hub_username(identity) if isinstance(identity, str) and identity.strip() else None

    return username_of


def main() -> None:
    from urllib.parse import urlsplit

    from tornado.ioloop import IOLoop

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lms", choices=["1.1", "1.3", "none"], required=True)
    parser.add_argument("--book", required=True)
    parser.add_argument("--grader-url", required=True)
    parser.add_argument("--roles", required=True, help="the LMS roles table (JSON), from hubfleet/teaching.py")
    parser.add_argument("--default-group", default="students")
    parser.add_argument("--username-key", default="sub")
    parser.add_argument("--consumer-key", default="")
    parser.add_argument("--client-id", default="")
    parser.add_argument("--token-url", default="")
    parser.add_argument("--key-file", default="")
    parser.add_argument("--secrets-file", default="", help="1.1: JSON with the consumer secret (0600)")
    parser.add_argument("--ca-bundle", default="/etc/ssl/certs/ca-certificates.crt")
    parser.add_argument("--roster-interval", type=int, default=900)
    parser.add_argument("--attempts", type=int, default=3)
    args = parser.parse_args()
    grades = Grades(args, Grader(args.grader_url, os.environ["JUPYTERHUB_API_TOKEN"]),
                    username_function(args.username_key))
    url = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    app = make_app(grades, os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/grades/"))
    app.listen(url.port, url.hostname, xheaders=True)
    loop = IOLoop.current()
    if args.lms == "1.3":
        loop.spawn_callback(grades.roster_loop)
    loop.start()


if __name__ == "__main__":
    main()
