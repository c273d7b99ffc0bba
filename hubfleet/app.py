"""The application object every CLI verb receives: output helpers, the state store, one way out."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, NoReturn

import click
from rich.console import Console

from hubfleet.errors import FieldProblem, InvalidInput
from hubfleet.state import StateStore


class Application:
    def __init__(self, state_dir: Path | None, verbosity: int = 0, database_url: str | None = None):
        self.state_dir = state_dir
        self.database_url = database_url
        self.verbosity = verbosity
        # Progress and errors go to stderr; machine output (--json) goes to stdout.
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.out = Console(highlight=False, soft_wrap=True)

    @cached_property
    def store(self) -> StateStore:
        """The state store named by --state-dir / --database-url; a bad one is bad input (exit 2), not a traceback."""
        from sqlalchemy.exc import ArgumentError, SQLAlchemyError

        try:
            return StateStore(self.state_dir, self.database_url)
        except OSError as exc:
            raise InvalidInput([FieldProblem("--state-dir", f"cannot use {exc.filename or self.state_dir} as the "
                                                             f"state directory: {exc.strerror or exc} — give a "
                                                             "directory hubfleet may write")],
                               source="command line") from None
        except (ArgumentError, SQLAlchemyError, ImportError, ValueError) as exc:
            # The driver's first line says why (refused, unknown host); never the URL, which may hold a password.
            cause = getattr(exc, "orig", None)
            reason = str(cause).strip().splitlines()[0][:200] if cause is not None and str(cause).strip() else ""
            raise InvalidInput([FieldProblem("--database-url", f"cannot open the state database: "
                                                                f"{type(exc).__name__}{': ' + reason if reason else ''}"
                                                                " — write e.g. postgresql+psycopg://user@host/hubfleet")],
                               source="command line") from None

    # --- output --------------------------------------------------------------------------

    def info(self, message: str) -> None:
        self.err.print(message, markup=False)

    def step(self, message: str) -> None:
        self.err.print(f"[bold blue]→[/] {escape(message)}")

    def success(self, message: str) -> None:
        self.err.print(f"[bold green]✓[/] {escape(message)}")

    def warn(self, message: str) -> None:
        self.err.print(f"[bold yellow]warning:[/] {escape(message)}")

    def debug(self, message: str) -> None:
        if self.verbosity > 0:
            self.err.print(f"[dim]{escape(message)}[/]")

    def print_json(self, data: Any, *, one_line: bool = False) -> None:
        """JSON on stdout: indented for a person, or one line per object for a stream (JSON Lines)."""
        click.echo(json.dumps(data, indent=None if one_line else 2, default=str))

    def abort(self, message: str, code: int = 1) -> NoReturn:
        self.err.print(f"[bold red]error:[/] {escape(message)}")
        sys.exit(code)

    @contextmanager
    def status(self, message: str) -> Iterator[None]:
        """A spinner on a terminal, a plain line otherwise (logs, CI)."""
        if self.err.is_terminal:
            with self.err.status(escape(message)):
                yield
        else:
            self.step(message)
            yield


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(str(text))


def debug_enabled() -> bool:
    return os.environ.get("HUBFLEET_DEBUG", "") not in ("", "0")
