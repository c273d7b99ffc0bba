"""Small helpers the kinds share to turn the portal form's text into descriptor values."""

from __future__ import annotations

import re


def lines(text: str) -> list[str]:
    """Items separated by newlines or commas."""
    return [part.strip() for part in re.split(r"[\n,]", text) if part.strip()]


def lines_keep_commas(text: str) -> list[str]:
    """DNs hold commas: one per line."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def put(target: dict, key: str, value: str | list | None) -> None:
    """Leave blank fields out, so the model says 'required' rather than 'not a URL'."""
    if value not in (None, "", []):
        target[key] = value
