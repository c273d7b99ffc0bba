"""What an LTI launch means for teaching on the hub: the person's group, what the grades service must
remember, and the operator's own way in.

Installed beside hubfleet_lti.py by roles/lti; the LTI authenticators mix TeachingMixin in.

- Groups: the launch's LMS roles decide the person's hub group (hubfleet/teaching.py's table,
  given as `lms_roles`); JupyterHub applies it at every login (`manage_groups`), so a teacher
  demoted in the LMS loses the group at their next launch.
- Launches: with grading on, each launch's grade and roster endpoints are recorded for the
  grades service (`launch_book`).
- The operator: an LTI course has no login form, so /hub/operator-login takes the `admin` account's
  password (kept by hubfleet, printed by `hubfleet credentials`, in a 0600 file on the hub host);
  LMS identities never become it.
"""

from __future__ import annotations

import hmac
import time

from jupyterhub.handlers import BaseHandler
from jupyterhub.utils import url_path_join
from tornado.web import HTTPError
from traitlets import List, Unicode
from traitlets.config import LoggingConfigurable

import hubfleet_lms as lms

OPERATOR = "admin"
FAILED_LOGINS_ALLOWED = 5
FAILED_LOGIN_WINDOW = 300

FORM = """<!doctype html><html><head><meta charset="utf-8"><title>Operator log-in</title>
<style>body{{font-family:sans-serif;margin:3em auto;max-width:24em}}label,input,button{{display:block;width:100%;
margin:.3em 0}}.error{{color:#a00}}</style></head><body><h1>Operator log-in</h1>
<p>Students and teachers arrive from the LMS. This form is for the course's operator account.</p>
{error}<form method="post">{xsrf}<label>Username <input name="username" value="{user}" autocomplete="username">
</label><label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Log in</button></form></body></html>"""


class TeachingMixin(LoggingConfigurable):
    lms_roles = List(config=True, help="[[group, {course|institution|system: [LIS role names]}], ...], teachers first.")
    default_group = Unicode("students", config=True, help="The group of everyone no listed role matches.")
    launch_book = Unicode("", config=True, help="SQLite file where launches are recorded for the grades service.")
    operator_password_file = Unicode("", config=True, help="0600 file holding the operator's `admin` password.")

    def operator_password(self) -> str:
        """The operator's password, read at each attempt (a re-run of the role may change it)."""
        try:
            with open(self.operator_password_file) as handle:
                return handle.read().strip()
        except OSError:
            return ""  # no file: nobody gets in

    _book: lms.LmsBook | None = None

    def teaching_handlers(self) -> list:
        return [("/operator-login", OperatorLoginHandler)]

    def group_of(self, roles) -> str:
        return lms.group_for(roles, self.lms_roles, self.default_group)

    def teaching_model(self, name: str, auth_state: dict, group: str, launch: lms.Launch | None) -> dict:
        """The auth model with the person's group; the launch recorded when grading is on."""
        if launch is not None and self.launch_book:
            launch.username = self.normalize_username(name)
            try:
                if self._book is None:
                    self._book = lms.LmsBook(self.launch_book)
                self._book.record_launch(launch)
            except Exception as exc:  # the log-in must not fail because grading's record could not be written
                self.log.error("could not record the launch for the grades service: %s", type(exc).__name__)
        return {"name": name, "groups": [group], "auth_state": auth_state}


class OperatorLoginHandler(BaseHandler):
    """The operator's admin account on an LTI course: a password form, throttled per address."""

    failures: dict[str, list[float]] = {}

    def _throttled(self) -> bool:
        now = time.time()
        recent = [t for t in self.failures.get(self.request.remote_ip, []) if now - t < FAILED_LOGIN_WINDOW]
        self.failures[self.request.remote_ip] = recent
        return len(recent) >= FAILED_LOGINS_ALLOWED

    def _form(self, error: str = "", user: str = "") -> str:
        from html import escape

        return FORM.format(error=f'<p class="error">{escape(error)}</p>' if error else "",
                           xsrf=self.xsrf_form_html(), user=escape(user))

    async def get(self):
        self.finish(self._form())

    async def post(self):
        if self._throttled():
            raise HTTPError(429, "too many failed log-ins from this address: wait five minutes")
        name = self.get_body_argument("username", "").strip()
        password = self.get_body_argument("password", "")
        expected = self.authenticator.operator_password()
        if not expected or name != OPERATOR or not hmac.compare_digest(password.encode(), expected.encode()):
            self.failures.setdefault(self.request.remote_ip, []).append(time.time())
            self.log.warning("operator log-in refused from %s", self.request.remote_ip)
            self.set_status(403)
            self.finish(self._form("Wrong username or password.", name))
            return
        user = await self.auth_to_user({"name": OPERATOR, "admin": True, "groups": []})
        self.set_login_cookie(user)
        self.redirect(url_path_join(self.hub.base_url, "admin"))
