"""The course's shared folder: what fills it, packed once on the operator's machine for roles/shared_data.

The descriptor's `shared_data.source` (a directory or a .tar.gz, .tgz, .tar or .zip archive) becomes one
tar.gz in the state directory's cache, made the same way from the same files (sorted, owned by the
notebook user, no timestamps in the gzip header), so its digest says whether the source changed since
the hosts last got it. An archive is read member by member: an absolute path, a `..`, a device or a
link out of the folder is refused, and so is a source larger than the limits below, naming the field.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO, Iterator

from hubfleet.archive import sha256_file
from hubfleet.errors import FieldProblem, InvalidInput

if TYPE_CHECKING:
    from hubfleet.descriptor import Course

FIELD = "shared_data.source"
FOLDER = "/srv/hubfleet/shared/data"  # on every host; mounted at MOUNT in every server
MOUNT = "/home/jovyan/shared"
NOTEBOOK_UID, NOTEBOOK_GID = 1000, 100  # jovyan:users in the notebook image
MAX_BYTES = 20 * 2**30
MAX_ENTRIES = 200_000


@dataclass(frozen=True)
class Packed:
    archive: Path
    digest: str
    files: int
    size: int


def role_variables(course: "Course", packed: Packed | None) -> dict:
    """roles/shared_data's variables and the hub's (the folder servers mount; "" when the course has none)."""
    enabled = course.shared_data is not None
    return {
        "shared_data_enabled": enabled,
        "shared_data_archive": str(packed.archive) if packed else "",
        "shared_data_digest": packed.digest if packed else "",
        "hub_shared_data_dir": FOLDER if enabled else "",
        "hub_shared_data_mount": MOUNT,
    }


def pack(course: "Course", cache: Path) -> Packed | None:
    """The course's source as the hosts get it (None: the course has no source, or no shared folder)."""
    if course.shared_data is None or course.shared_data.source is None:
        return None
    source = Path(course.shared_data.source).expanduser()
    if not source.exists():
        raise _refused(f"{source} does not exist — give a directory or an archive (.tar.gz, .tgz, .tar, .zip) on "
                       "this machine")
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{course.name}.tar.gz"
    partial = target.with_suffix(".partial")
    entries = _directory_entries(source) if source.is_dir() else _archive_entries(source)
    files = size = 0
    try:
        with open(partial, "wb") as handle, gzip.GzipFile(fileobj=handle, mode="wb", mtime=0, filename="") as zipped, \
                tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as out:
            for info, data in entries:
                files += 1
                size += info.size
                if files > MAX_ENTRIES or size > MAX_BYTES:
                    raise _refused(f"{source} holds more than {MAX_ENTRIES} entries or {MAX_BYTES // 2**30} GiB — "
                                   "share less, or give the rest another way")
                info.uid, info.gid, info.uname, info.gname = NOTEBOOK_UID, NOTEBOOK_GID, "", ""
                with data or io.BytesIO() as stream:
                    out.addfile(info, stream if info.isfile() else None)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    return Packed(target, sha256_file(target), files, size)


def _refused(message: str) -> InvalidInput:
    return InvalidInput([FieldProblem(FIELD, message)])


def _directory_entries(root: Path) -> Iterator[tuple[tarfile.TarInfo, BinaryIO | None]]:
    for directory, dirs, names in os.walk(root):
        dirs.sort()
        here = Path(directory)
        for name in sorted([*dirs, *names]):
            path = here / name
            relative = path.relative_to(root).as_posix()
            found = os.lstat(path)
            mode = found.st_mode
            info = tarfile.TarInfo(relative)
            info.mtime = int(found.st_mtime)
            if stat.S_ISLNK(mode):
                target = os.readlink(path)
                _check_link(relative, target)
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
                yield info, None
            elif stat.S_ISDIR(mode):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                yield info, None
            elif stat.S_ISREG(mode):
                info.size, info.mode = found.st_size, 0o755 if mode & 0o111 else 0o644
                yield info, open(path, "rb")
            else:
                raise _refused(f"{path} is neither a file, a folder nor a link — remove it from the source")


def _archive_entries(archive: Path) -> Iterator[tuple[tarfile.TarInfo, BinaryIO | None]]:
    name = archive.name.lower()
    if name.endswith(".zip"):
        yield from _zip_entries(archive)
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        yield from _tar_entries(archive)
    else:
        raise _refused(f"{archive} is neither a directory nor an archive hubfleet reads — give a directory or a "
                       ".tar.gz, .tgz, .tar or .zip")


def _safe(name: str, archive: Path) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    parts = [p for p in path.parts if p not in ("", ".")]
    if path.is_absolute() or ".." in parts or not parts:
        raise _refused(f"{archive}: the entry {name!r} would land outside the shared folder — remove it")
    return "/".join(parts)


def _check_link(name: str, target: str) -> None:
    resolved = PurePosixPath(name).parent / target
    if target.startswith("/") or ".." in PurePosixPath(os.path.normpath(resolved.as_posix())).parts:
        raise _refused(f"the link {name!r} points out of the shared folder ({target}) — copy the file in instead")


def _tar_entries(archive: Path) -> Iterator[tuple[tarfile.TarInfo, BinaryIO | None]]:
    try:
        source = tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        raise _refused(f"{archive} is not a readable tar archive ({exc}) — make it again") from None
    with source:
        for member in source:
            info = tarfile.TarInfo(_safe(member.name, archive))
            info.mtime = int(member.mtime)
            if member.isdir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                yield info, None
            elif member.issym():
                _check_link(info.name, member.linkname)
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, member.linkname, 0o777
                yield info, None
            elif member.isfile():
                info.size, info.mode = member.size, 0o755 if member.mode & 0o111 else 0o644
                yield info, source.extractfile(member)
            else:
                raise _refused(f"{archive}: {member.name!r} is a device, pipe or hard link — remove it")


def _zip_entries(archive: Path) -> Iterator[tuple[tarfile.TarInfo, BinaryIO | None]]:
    try:
        source = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _refused(f"{archive} is not a readable zip archive ({exc}) — make it again") from None
    with source:
        for member in source.infolist():
            info = tarfile.TarInfo(_safe(member.filename, archive))
            info.mtime = 0
            if member.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                yield info, None
            else:
                executable = (member.external_attr >> 16) & 0o111
                info.size, info.mode = member.file_size, 0o755 if executable else 0o644
                yield info, source.open(member)
