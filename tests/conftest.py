"""Shared fixtures. Unit tests need neither Docker nor network."""

from __future__ import annotations

import datetime as dt
import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def future(days: int) -> str:
    return (dt.date.today() + dt.timedelta(days=days)).isoformat()


@pytest.fixture
def workshop_data() -> dict:
    """The workshop example as a mapping, with dates moved to be valid whenever the test runs."""
    data = yaml.safe_load((EXAMPLES / "workshop.yaml").read_text())
    data["dates"] = {"start": future(1), "end": future(30)}
    return copy.deepcopy(data)
