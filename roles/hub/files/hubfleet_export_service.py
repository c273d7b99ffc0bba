"""/services/export/: the hub's page for taking your work home (a JupyterHub service, roles/hub).

It holds no file and needs no login of its own: it sends the student on to their own server's export
page (hubfleet_export in the notebook image) through JupyterHub's /hub/user-redirect/, which logs them
in and starts their server first when needed. Only their own server, which only sees their volume,
ever makes the zip.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlsplit

from tornado import web


class ToOwnServer(web.RequestHandler):
    def get(self, *_):
        self.redirect(os.environ.get("JUPYTERHUB_BASE_URL", "/") + "hub/user-redirect/hubfleet/export")


async def main() -> None:
    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    where = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    web.Application([(f"{prefix}(.*)", ToOwnServer), (prefix.rstrip("/"), ToOwnServer)]).listen(
        where.port, address=where.hostname)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
