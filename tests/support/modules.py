"""Load a module that ships as a file to hosts or images (roles/*/files, images/*), not as part of hubfleet."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_file(relative: str) -> ModuleType:
    """The module at ROOT/`relative`, imported under its file's name."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
