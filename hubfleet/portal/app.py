"""The portal's Flask app: built by `create_app` around a state store, its settings and the functions that do the work.

Tests hand in a fake `create`; `hubfleet portal serve` hands in the real `create_course`.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from flask import Flask, render_template
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import BaseConverter

from hubfleet.lifecycle import create_course, destroy_course
from hubfleet.mail import Mailer
from hubfleet.portal import operator, sessions, views
from hubfleet.portal.auth import Authenticator, LdapBind, Throttle, ldap3_bind
from hubfleet.portal.config import PortalConfig
from hubfleet.portal.csrf import check_csrf, csrf_token
from hubfleet.portal.mail import Notifier
from hubfleet.portal.models import PortalStore
from hubfleet.portal.web import Portal, current_user, is_operator
from hubfleet.portal.worker import CreateFn, DestroyFn, Worker
from hubfleet.state import StateStore, write_private

log = logging.getLogger("hubfleet.portal")

STATE_LABELS = {
    "requested": "waiting for an operator", "approved": "approved, made before its start", "provisioning": "being created",
    "ready": "ready", "archiving": "being archived", "archived": "archived", "rejected": "rejected",
    "failed": "failed",
}
# Scripts and styles only from the portal itself; nobody may frame it.
CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"


class IdConverter(BaseConverter):
    """A record's number in a URL: ASCII digits only, and not a novel.

    The view checks the range before any query (werkzeug's own int converter takes Unicode digits,
    and the database answered an id over 2**63 with an error of its own: a 500).
    """

    regex = r"[0-9]{1,64}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(int(value))


def ensure_secret_key(state_dir: Path) -> bytes:
    """The key that signs session cookies: made once, kept private in the state dir."""
    path = Path(state_dir) / "portal" / "secret-key"
    if path.exists() and path.stat().st_size >= 32:
        return path.read_bytes()
    key = secrets.token_hex(32).encode()
    write_private(path, key)
    return key


def create_app(store: StateStore, config: PortalConfig | None = None, *, create: CreateFn = create_course,
               destroy: DestroyFn = destroy_course, ldap_bind: LdapBind = ldap3_bind,
               recover: bool = True) -> Flask:
    config = config or PortalConfig()
    app = Flask(__name__)
    app.url_map.converters["id"] = IdConverter
    app.config.update(
        SECRET_KEY=ensure_secret_key(store.dir),
        SESSION_COOKIE_NAME="hubfleet_portal",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.secure_cookies,
        PERMANENT_SESSION_LIFETIME=sessions.LIFETIME,
        MAX_CONTENT_LENGTH=256 * 1024,  # a request form is a few kB
        TEMPLATES_AUTO_RELOAD=False,
    )
    if config.behind_proxy:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.behind_proxy, x_proto=config.behind_proxy,
                                x_host=config.behind_proxy)

    db = PortalStore(store.engine)
    db.seed_images(config.images)
    notifier = Notifier(Mailer(config.smtp), db, config.public_url)
    worker = Worker(store, db, notifier, create=create, destroy=destroy, workers=config.workers)
    app.extensions["hubfleet_portal"] = Portal(
        config=config, store=store, db=db, worker=worker, notifier=notifier,
        auth=Authenticator(db, config.ldap, config.ldap_mail_domain, ldap_bind, config.ldap_ca_certificate),
        throttle=Throttle(db, config.login_limits),
    )

    app.register_blueprint(views.bp)
    app.register_blueprint(operator.bp)
    app.before_request(check_csrf)
    app.jinja_env.globals.update(csrf_token=csrf_token, current_user=current_user, is_operator=is_operator,
                                 state_labels=STATE_LABELS)

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return render_template("error.html", code=exc.code, name=exc.name, description=exc.description), exc.code

    if recover:
        worker.recover()
    return app
