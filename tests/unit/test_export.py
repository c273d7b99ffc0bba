"""The students' export (images/notebook/hubfleet_export.py): the zip of a home with every awkward entry.

The zip is made here from a real directory and read back with Python's zipfile; the same module runs in
each student's server, tried against a real hub in tests/integration/test_pressure.py.
"""

from __future__ import annotations

import io
import os
import random
import zipfile
from pathlib import Path

import pytest

from tests.support.modules import load_file

NOISE = random.Random(14).randbytes(250_000)


@pytest.fixture(scope="module")
def export():
    return load_file("images/notebook/hubfleet_export.py")


@pytest.fixture
def home(tmp_path) -> Path:
    root = tmp_path / "home"
    (root / "week 1" / "café").mkdir(parents=True)
    (root / "week 1" / "café" / "résumé ü.ipynb").write_text('{"cells": []}')
    (root / "notes.txt").write_bytes(NOISE)  # 250 kB that do not compress: several pieces at a small chunk
    (root / "old.txt").write_text("from 1970")
    os.utime(root / "old.txt", (0, 0))  # before 1980: a zip cannot say so, it still goes in
    with open(os.path.join(os.fsencode(root), b"latin1-caf\xe9.txt"), "wb") as handle:
        handle.write(b"copied from elsewhere")
    (root / "link-to-notes").symlink_to("notes.txt")
    os.mkfifo(root / "a-pipe")
    (root / ".local" / "share" / "jupyter" / "runtime").mkdir(parents=True)
    (root / ".local" / "share" / "jupyter" / "runtime" / "jupyter_cookie_secret").write_text("secret")
    (root / "empty folder").mkdir()
    return root


def test_the_zip_holds_every_file_byte_for_byte_and_says_what_it_left_out(export, home, monkeypatch):
    monkeypatch.setattr(export, "CHUNK", 64 * 1024)
    pieces = list(export.zip_stream(str(home)))
    assert len(pieces) > 1, "streamed in pieces, not made whole in memory"
    with zipfile.ZipFile(io.BytesIO(b"".join(pieces))) as made:
        names = set(made.namelist())
        assert made.read("notes.txt") == NOISE
        assert made.read("week 1/café/résumé ü.ipynb") == b'{"cells": []}'
        assert made.read("old.txt") == b"from 1970"
        assert made.read("latin1-caf\\xe9.txt") == b"copied from elsewhere"
        assert "empty folder/" in names
        assert not any("runtime" in n and n.endswith("secret") for n in names), "Jupyter's secrets stay"
        assert "link-to-notes" not in names and "a-pipe" not in names
        notes = made.read(export.NOTES).decode()
    assert "renamed (its name is not UTF-8): latin1-caf\\xe9.txt" in notes
    assert "symbolic link, not followed: link-to-notes -> notes.txt" in notes
    assert "skipped: not a regular file: a-pipe" in notes
    assert "skipped: Jupyter's secrets: .local/share/jupyter/runtime" in notes


def test_the_page_counts_what_the_zip_will_hold(export, home):
    files, size = export.summary(str(home))
    assert files == 4 and size == 250_000 + len('{"cells": []}') + len("from 1970") + len("copied from elsewhere")


def test_an_empty_home_gives_a_zip_that_says_nothing_was_left_out(export, tmp_path):
    with zipfile.ZipFile(io.BytesIO(b"".join(export.zip_stream(str(tmp_path))))) as made:
        assert made.namelist() == [export.NOTES] and made.read(export.NOTES) == b"Nothing left out.\n"
