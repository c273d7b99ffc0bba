"""`hubfleet portal`: the teacher request portal (serve it, add accounts)."""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path

import click

from hubfleet.app import Application
from hubfleet.cli.params import FilePath
from hubfleet.errors import FieldProblem, HubfleetError, InvalidInput

TERM_ROUND_SECONDS = 300  # how often the portal makes due courses and archives ended ones (hubfleet/term.py)


def _config_path(app: Application, given: Path | None) -> Path | None:
    """--config, else portal.yaml in the state dir when it exists (defaults otherwise)."""
    if given is not None:
        return given
    from hubfleet.portal.config import CONFIG_FILE

    default = app.store.dir / CONFIG_FILE
    return default if default.exists() else None


def _load(app: Application, config: Path | None, **overrides):
    from hubfleet.portal.config import load_config, parse_config

    path = _config_path(app, config)
    settings = load_config(path)
    changes = {k: v for k, v in overrides.items() if v is not None}
    if changes:  # through the same validation as the file
        settings = parse_config({**settings.model_dump(mode="json", exclude_none=True), **changes},
                                source=str(path or "portal settings"))
    return settings


def _read_password(password_file: Path | None) -> str:
    from hubfleet.inputs import text_problem
    from hubfleet.portal.auth import check_new_password

    if password_file is not None:
        try:
            with password_file.open("rb") as handle:
                password = handle.read(4097).decode("utf-8").strip()
        except OSError as exc:
            raise InvalidInput([FieldProblem("--password-file", f"cannot read {password_file}: {exc.strerror}")],
                               source="command line") from None
        except (UnicodeDecodeError, ValueError):
            raise InvalidInput([FieldProblem("--password-file", f"{password_file} is not a UTF-8 text file — write "
                                                                "the password on its first line")],
                               source="command line") from None
        if len(password) > 4096 or text_problem(password):
            raise InvalidInput([FieldProblem("--password-file", "holds more than one line or control characters — "
                                                                "write the password alone on one line")],
                               source="command line")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    problem = check_new_password(password)
    if problem:
        raise InvalidInput([FieldProblem("password", problem)], source="command line")
    return password


def _add_account(app: Application, email: str, password_file: Path | None, role: str) -> None:
    from hubfleet.inputs import text_problem
    from hubfleet.portal.auth import EMAIL_RE, hash_password
    from hubfleet.portal.models import PortalStore

    email = email.strip().lower()
    if len(email) > 254 or text_problem(email) or not EMAIL_RE.fullmatch(email):
        raise InvalidInput([FieldProblem("EMAIL", f"{email!r} is not an email address — write e.g. ada@example.edu")],
                           source="command line")
    db = PortalStore(app.store.engine)
    existing = db.user_by_login(email)
    password = _read_password(password_file)
    user = db.ensure_user(email, email=email, role=role, password_hash=hash_password(password))
    if existing:
        db.end_sessions_of(user.id)  # a new password: every browser signed in with the old one is signed out
    db.audit("cli", f"account-{role}", detail=email + (" (updated)" if existing else ""))
    app.success(f"{role} {email} {'updated' if existing else 'added'}")


@click.group("portal")
def command() -> None:
    """The teacher request portal: a web form, operator approval, live progress.

    \b
    Examples:
      hubfleet portal add-operator ops@example.edu
      hubfleet portal add-teacher ada@example.edu --password-file ada.pw
      hubfleet portal serve --public-url https://hubs.example.edu
    """


@command.command("serve")
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8088, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--public-url", envvar="HUBFLEET_PORTAL_URL", show_envvar=True,
              help="URL people open (links in emails; https makes cookies Secure). Default: from the settings.")
@click.option("--config", "config", type=FilePath(dir_okay=False, path_type=Path), envvar="HUBFLEET_PORTAL_CONFIG",
              show_envvar=True, help="Portal settings (default: portal.yaml in the state dir, if there).")
@click.pass_obj
def serve(app: Application, bind: str, port: int, public_url: str | None, config: Path | None) -> None:
    """Serve the portal until Ctrl-C. Put an HTTPS reverse proxy in front of it for real use.

    Every 5 minutes it runs the term of its courses (docs/term.md): a course approved before its
    warm time is created then, its teacher is mailed notice_before the end, and it is archived and
    removed after its grace.

    \b
    Examples:
      hubfleet portal serve
      hubfleet portal serve --bind 127.0.0.1 --port 8088 --public-url https://hubs.example.edu
    """
    from werkzeug.serving import make_server

    from hubfleet.portal import create_app

    settings = _load(app, config, public_url=public_url)
    if public_url is None and "public_url" not in settings.model_fields_set:
        host = f"[{bind}]" if ":" in bind else bind
        settings = settings.model_copy(update={"public_url": f"http://{host}:{port}"})
    logging.basicConfig(level=logging.INFO if app.verbosity == 0 else logging.DEBUG,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING if app.verbosity == 0 else logging.INFO)
    try:
        loopback = ipaddress.ip_address(bind).is_loopback
    except ValueError:
        loopback = bind == "localhost"
    if not loopback and not settings.secure_cookies:
        app.warn(f"listening on {bind} with an http:// public URL: passwords would cross the network in clear; "
                 "put an HTTPS reverse proxy in front and give --public-url https://...")
    web = create_app(app.store, settings)
    try:
        server = make_server(bind, port, web, threaded=True)
    except OSError as exc:
        web.extensions["hubfleet_portal"].shutdown(wait=False)
        raise HubfleetError(f"cannot listen on {bind}:{port}: {exc.strerror or exc}",
                            hint="choose another --port or --bind, or stop what uses it") from None
    except (ValueError, UnicodeError):
        web.extensions["hubfleet_portal"].shutdown(wait=False)
        raise InvalidInput([FieldProblem("--bind", f"{bind!r} is not an address — e.g. 127.0.0.1")],
                           source="command line") from None
    app.success(f"portal at {settings.public_url} (listening on {bind}:{port}, pid {os.getpid()}); Ctrl-C stops it")
    web.extensions["hubfleet_portal"].worker.every(TERM_ROUND_SECONDS)  # approved courses made when due, ended ones archived
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.info("stopping: waiting for running creates/destroys to finish (Ctrl-C again leaves them to `retry`)")
        web.extensions["hubfleet_portal"].shutdown(wait=True)


@command.command("add-operator")
@click.argument("email")
@click.option("--password-file", type=FilePath(dir_okay=False, path_type=Path),
              help="Read the password from this file instead of asking.")
@click.pass_obj
def add_operator(app: Application, email: str, password_file: Path | None) -> None:
    """Add an operator account (or make an existing one operator, with a new password).

    \b
    Examples:
      hubfleet portal add-operator ops@example.edu
      hubfleet portal add-operator ops@example.edu --password-file /root/ops.pw
    """
    _add_account(app, email, password_file, "operator")


@command.command("add-teacher")
@click.argument("email")
@click.option("--password-file", type=FilePath(dir_okay=False, path_type=Path),
              help="Read the password from this file instead of asking.")
@click.pass_obj
def add_teacher(app: Application, email: str, password_file: Path | None) -> None:
    """Add a local teacher account (directory users need none: they sign in with LDAP).

    \b
    Examples:
      hubfleet portal add-teacher ada@example.edu
    """
    _add_account(app, email, password_file, "teacher")


@command.command("check-config")
@click.option("--config", "config", type=FilePath(dir_okay=False, path_type=Path), envvar="HUBFLEET_PORTAL_CONFIG",
              show_envvar=True, help="Portal settings (default: portal.yaml in the state dir, if there).")
@click.pass_obj
def check_config(app: Application, config: Path | None) -> None:
    """Validate the portal settings and print them with defaults filled in.

    \b
    Examples:
      hubfleet portal check-config --config portal.yaml
    """
    import yaml

    settings = _load(app, config)
    click.echo(yaml.safe_dump(settings.model_dump(mode="json", exclude_none=True), sort_keys=False), nl=False)
    app.success(f"{_config_path(app, config) or 'defaults'}: valid")
