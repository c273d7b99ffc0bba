"""hubfleet's LDAP log-in: jupyterhub-ldapauthenticator with hubfleet's usernames.

Installed by roles/ldap beside jupyterhub_config.py. What changes from upstream, and why
(docs/identity.md has the long form):
- A login name that belongs to the hub itself (`admin`, the probe, `hubfleet...`, service and
  system accounts) is refused before the directory is asked: a directory account named `admin`
  must not become the hub's admin.
- The name the directory vouches for becomes hubfleet_usernames.typed_username of it, the same
  mapping every authenticator uses, so it fits the servers' and volumes' names.
- Login names are checked with \\Z, not $: upstream's pattern lets a trailing newline through.
"""

from __future__ import annotations

from hubfleet_usernames import ReservedName, typed_username
from ldapauthenticator import LDAPAuthenticator
from tornado.web import HTTPError
from traitlets import Unicode

REFUSED = "this name is reserved for the hub itself: log in with your own directory account"


class HubfleetLDAPAuthenticator(LDAPAuthenticator):
    valid_username_regex = Unicode(r"^[a-z][.a-z0-9_-]*\Z", config=True,
                                   help="Login names the directory is asked about (LDAP injection guard).")

    async def authenticate(self, handler, data):
        try:
            typed_username(str(data.get("username") or ""))
        except ReservedName:
            raise HTTPError(403, REFUSED) from None
        except ValueError:
            return None
        result = await super().authenticate(handler, data)
        if not result:
            return result
        found = result if isinstance(result, dict) else {"name": result}
        try:
            return {**found, "name": typed_username(found["name"])}
        except ReservedName:
            raise HTTPError(403, REFUSED) from None
