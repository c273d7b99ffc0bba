"""Typed errors. Domain code raises these; only the CLI turns them into exit codes."""

from __future__ import annotations

from dataclasses import dataclass


class HubfleetError(Exception):
    """An error the operator can act on. `exit_code` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one field: where, what, how to fix it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InvalidInput(HubfleetError):
    """Bad input (descriptor, form, flag): every problem at once, exit 2."""

    exit_code = 2

    def __init__(self, problems: list[FieldProblem], *, source: str = "input"):
        self.problems = problems
        self.source = source
        lines = [f"{source} is not valid ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class NotFound(HubfleetError):
    exit_code = 3


class Busy(HubfleetError):
    """Another hubfleet process holds the course's lock."""

    exit_code = 4


class ProvisionError(HubfleetError):
    """Hosts or configuration failed; the message names the step, the host and the reason."""

    exit_code = 5


class ArchiveError(HubfleetError):
    """The students' work could not be saved and verified; nothing was removed."""

    exit_code = 6
