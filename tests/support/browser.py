"""Headless Chromium from Debian's package, driven by Playwright (never a browser Playwright downloads)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def ensure_chromium() -> str:
    """The path of Debian's chromium, installed non-interactively when missing."""
    if not Path(CHROMIUM).exists():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, check=True,
                       timeout=900)
    return CHROMIUM
