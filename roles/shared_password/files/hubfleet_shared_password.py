"""hubfleet's shared-password log-in: JupyterHub's SharedPasswordAuthenticator with hubfleet's usernames.

Installed by roles/shared_password beside jupyterhub_config.py. What changes from upstream, and why
(docs/identity.md has the long form):
- The typed name becomes hubfleet_usernames.typed_username of it (case and outer spaces do not
  count; accents, other scripts and long names get a digest), so every name fits the servers'
  and volumes' names and no two typed names that differ in more than case share an account.
- A name that belongs to the hub itself (the probe, `hubfleet...`, service and system accounts) is
  refused whatever the password: upstream let anyone with the students' password log in as the
  health probe. `admin` and the course's admin users still log in, with the admin password only.
"""

from __future__ import annotations

from secrets import compare_digest

from hubfleet_usernames import ADMIN_USER, ReservedName, typed_username
from jupyterhub.authenticators.shared import SharedPasswordAuthenticator
from tornado.web import HTTPError


class HubfleetSharedPasswordAuthenticator(SharedPasswordAuthenticator):
    """One password for the students, another for the admin users; hubfleet's usernames."""

    async def authenticate(self, handler, data):
        typed = str(data.get("username") or "")
        password = str(data.get("password") or "")
        if typed.strip().lower() == ADMIN_USER:
            name = ADMIN_USER  # the operator's account: with the admin password only (below)
        else:
            try:
                name = typed_username(typed)
            except ReservedName:
                raise HTTPError(403, "this name is reserved for the hub itself: log in with your own name") from None
            except ValueError:
                return None
        if name in self.admin_users:
            if self.admin_password and compare_digest(password.encode(), self.admin_password.encode()):
                return {"name": name, "admin": True, "groups": []}
            return None
        if self.user_password and compare_digest(password.encode(), self.user_password.encode()):
            return {"name": name, "admin": False, "groups": []}
        return None
