from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from hubfleet.archive import join_parts, verify
from hubfleet.errors import ArchiveError


def part(path, files: dict[str, bytes], manifest: dict[str, bytes] | None = None):
    """A host's part as the on-host script writes it: files, then a manifest of their checksums."""
    manifest = files if manifest is None else manifest
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        text = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in manifest.items()).encode()
        info = tarfile.TarInfo("MANIFEST.sha256")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    return path


def test_join_prefixes_hosts_and_verifies(tmp_path):
    a = part(tmp_path / "a.tar.gz", {"volumes/hubfleet-user-x/n.ipynb": b"{}", "hub/jupyterhub.sqlite": b"db"})
    b = part(tmp_path / "b.tar.gz", {"volumes/hubfleet-user-y/data.csv": b"1,2\n" * 1000})
    out = tmp_path / "course.tar.gz"
    summary = join_parts({"hub": a, "worker-1": b}, out)
    assert summary.files == 3
    with tarfile.open(out) as tar:
        assert "worker-1/volumes/hubfleet-user-y/data.csv" in tar.getnames()
        manifest = tar.extractfile("MANIFEST.sha256").read().decode()
    assert hashlib.sha256(b"{}").hexdigest() + "  hub/volumes/hubfleet-user-x/n.ipynb" in manifest
    assert oct(out.stat().st_mode & 0o777) == "0o600"


def test_file_that_differs_from_the_volume_is_refused(tmp_path):
    bad = part(tmp_path / "a.tar.gz", {"volumes/v/f": b"changed"}, manifest={"volumes/v/f": b"original"})
    out = tmp_path / "course.tar.gz"
    with pytest.raises(ArchiveError, match="does not match"):
        join_parts({"hub": bad}, out)
    assert not out.exists() and not (tmp_path / "course.tar.gz.part").exists()


def test_file_missing_from_the_part_is_refused(tmp_path):
    bad = part(tmp_path / "a.tar.gz", {"volumes/v/f": b"x"}, manifest={"volumes/v/f": b"x", "volumes/v/g": b"y"})
    with pytest.raises(ArchiveError, match="missing"):
        join_parts({"hub": bad}, tmp_path / "out.tar.gz")


def test_unreadable_part_and_no_parts(tmp_path):
    (tmp_path / "a.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ArchiveError, match="cannot be read"):
        join_parts({"hub": tmp_path / "a.tar.gz"}, tmp_path / "out.tar.gz")
    with pytest.raises(ArchiveError, match="no host"):
        join_parts({}, tmp_path / "out.tar.gz")


def test_verify_detects_corruption(tmp_path):
    good = part(tmp_path / "a.tar.gz", {"volumes/v/f": b"x" * 10000})
    out = tmp_path / "out.tar.gz"
    join_parts({"hub": good}, out)
    raw = bytearray(out.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    out.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError):
        verify(out)
