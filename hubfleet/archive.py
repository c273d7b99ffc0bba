"""The course archive: every host's part joined into one tar.gz with one manifest, then verified.

Each host's part carries a MANIFEST.sha256 computed from its volumes in a pass of its own; a
part whose files do not match it is refused, and the joined archive is read back from disk and
checked again before anything may be removed.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from hubfleet.errors import ArchiveError

MANIFEST = "MANIFEST.sha256"


@dataclass(frozen=True)
class ArchiveSummary:
    path: Path
    files: int
    volumes: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict:
        return {"path": str(self.path), "files": self.files, "volumes": self.volumes, "bytes": self.bytes,
                "sha256": self.sha256}


def parse_manifest(text: str) -> dict[str, str]:
    entries = {}
    for line in text.splitlines():
        if line.strip():
            digest, _, name = line.partition("  ")
            entries[name] = digest
    return entries


def _sha256(stream) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def join_parts(parts: dict[str, Path], out: Path) -> ArchiveSummary:
    """Join per-host parts ({host: part.tar.gz}) into `out`, checking each file against its manifest."""
    if not parts:
        raise ArchiveError("no host produced an archive part; nothing was removed")
    manifest_lines: list[str] = []
    volumes = 0
    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w:gz") as joined:
        for host, part in sorted(parts.items()):
            try:
                with tarfile.open(part, "r:gz") as source:
                    member = source.getmember(MANIFEST)
                    expected = parse_manifest(source.extractfile(member).read().decode())
                    seen = set()
                    for info in source:
                        if info.name == MANIFEST:
                            continue
                        renamed = _renamed(info, f"{host}/{info.name}")
                        if info.isdir():
                            volumes += info.name.count("/") == 1 and info.name.startswith("volumes/")
                            joined.addfile(renamed)
                            continue
                        reader = _HashingReader(source.extractfile(info))
                        joined.addfile(renamed, reader)  # streamed: volumes may be large
                        digest = reader.hexdigest()
                        if expected.get(info.name) != digest:
                            raise ArchiveError(f"{host}: {info.name} does not match the checksum taken from "
                                               "the volume; nothing was removed")
                        seen.add(info.name)
                        manifest_lines.append(f"{digest}  {host}/{info.name}\n")
                    missing = set(expected) - seen
                    if missing:
                        raise ArchiveError(f"{host}: {len(missing)} file(s) of the volumes are missing from its "
                                           f"archive (e.g. {sorted(missing)[0]}); nothing was removed")
            except (tarfile.TarError, KeyError, OSError, EOFError, zlib.error) as exc:
                tmp.unlink(missing_ok=True)
                raise ArchiveError(f"{host}: its archive part cannot be read ({exc}); nothing was removed") from None
            except ArchiveError:
                tmp.unlink(missing_ok=True)
                raise
        data = "".join(manifest_lines).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode = len(data), 0o644
        joined.addfile(info, io.BytesIO(data))
    os.chmod(tmp, 0o600)
    os.replace(tmp, out)
    verified = verify(out)
    return ArchiveSummary(out, verified, volumes, out.stat().st_size, _sha256(out.open("rb")))


class _HashingReader:
    def __init__(self, stream):
        self.stream, self.digest = stream, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.digest.update(data)
        return data

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def _renamed(info: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
    copy = tarfile.TarInfo(name)
    copy.size, copy.mode, copy.mtime, copy.type = info.size, info.mode, info.mtime, info.type
    copy.uid, copy.gid, copy.uname, copy.gname = info.uid, info.gid, info.uname, info.gname
    return copy


def verify(path: Path) -> int:
    """Read the archive back from disk; every file must match the manifest. Returns the file count."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            expected = parse_manifest(tar.extractfile(tar.getmember(MANIFEST)).read().decode())
            seen = 0
            for info in tar:
                if info.isfile() and info.name != MANIFEST:
                    if expected.get(info.name) != _sha256(tar.extractfile(info)):
                        raise ArchiveError(f"{path}: {info.name} does not match its checksum")
                    seen += 1
    except (tarfile.TarError, KeyError, OSError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"{path} cannot be read back ({exc}); nothing was removed") from None
    if seen != len(expected):
        raise ArchiveError(f"{path} holds {seen} files but its manifest lists {len(expected)}")
    return seen
