#!/usr/bin/env python3
"""Archive this host's student volumes: one verified GNU tar per student, all in one part for the controller.

Runs on the host as root with python3 and GNU tar only (playbooks/archive.yml). The students'
servers are stopped. For each volume:

1. GNU tar writes <name>.tar.gz (--format=gnu: names kept as bytes however long, symlinks as
   links, hard links, empty directories, modes, numeric owners, mtimes, sparse files as sparse).
2. `tar --compare` reads it back against the volume: contents, modes, owners, mtimes, link
   targets and hard links.
3. `tar --compare` cannot see what the archive lacks, so the archive's entries are listed and
   matched, both ways and by kind, against GNU find's walk of the volume.

Jupyter's own secrets in the home volume (the server's cookie secret and token, kernels' keys,
the notebook-trust key: RUNTIME_SECRETS) are written by Jupyter, not the student, and must not
reach the teacher: they go into a second archive per student, verified the same way, for the
operator. A failure names the volume and the entry, and exits non-zero: nothing is removed. The
archives then go into PART (a plain tar: students/, secrets/) with index.json (sha256, size,
entries of each), so the controller checks what it fetched. With --restore, the hub's data
directory (database, cookie secret) goes into a separate, verified archive for the operator.

With --teaching NAME=DIR (the hub host of a graded course), the teachers' own folders (nbgrader's
course directory with its gradebook, the exchange) are archived and verified the same way.

usage: hubfleet_archive.py --prefix P --out PART [--exclude V,...] [--restore FILE --hub-data DIR]
                           [--teaching NAME=DIR ...]
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time

TAR_CREATE = ["tar", "--create", "--format=gnu", "--sparse", "--numeric-owner", "--gzip"]
FIND_KINDS = {"d": "directory", "f": "file", "l": "symlink", "p": "fifo", "c": "character device",
              "b": "block device", "s": "socket"}
SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,127}")
# Written into the home volume by Jupyter, not by the student: the server's cookie secret and token,
# kernels' connection keys, the notebook-trust key. Kept for the operator, never given to the teacher.
RUNTIME_SECRETS = [re.compile(p) for p in (rb"\.local/share/jupyter/runtime", rb"\.local/share/jupyter/notebook_secret",
                                           rb"\.local/share/jupyter/nbsignatures\.db",
                                           rb"\.ipython/profile_[^/]*/security")]


class Refused(Exception):
    """The volume cannot be archived faithfully: the message says which entry and why."""


def shown(raw: bytes) -> str:
    """An entry's name for a message: any byte visible, nothing that breaks a log line."""
    return ascii(raw.decode("utf-8", "surrogateescape"))[1:-1]


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def volumes(prefix: str, exclude: set[str]) -> list[tuple[str, str]]:
    names = docker("volume", "ls", "-q", "--filter", f"name={prefix}").split()
    found = []
    for name in sorted(n for n in names if n.startswith(prefix) and n not in exclude):
        found.append((name, json.loads(docker("volume", "inspect", name))[0]["Mountpoint"]))
    return found


def unescape(escaped: str) -> str | None:
    """The username DockerSpawner escaped into a volume name (-XX per byte), when that is certain."""
    raw = re.sub(rb"-([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), escaped.encode())
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    again = "".join(c if re.fullmatch("[a-z0-9]", c) else "".join(f"-{b:x}" for b in c.encode()) for c in name)
    return name if again == escaped else None


def walk(mount: str) -> dict[bytes, str]:
    """Every entry under the volume by GNU find (any depth, any byte in a name): {relative path: kind}."""
    out = subprocess.run(["find", mount, "-mindepth", "1", "-printf", r"%y %P\0"], check=True,
                         capture_output=True).stdout
    entries = {}
    for record in out.split(b"\0"):
        if record:
            entries[record[2:]] = FIND_KINDS.get(record[:1].decode(), "other")
    return entries


def listed(archive: str) -> tuple[dict[bytes, str], int]:
    """Every entry of the archive read back from disk: {relative path: kind}, and their number."""
    entries: dict[bytes, str] = {}
    count = 0
    with tarfile.open(archive, "r:gz", encoding="utf-8", errors="surrogateescape") as tar:
        for member in tar:
            count += 1
            name = member.name.encode("utf-8", "surrogateescape")
            name = b"" if name in (b".", b"./") else name[2:] if name.startswith(b"./") else name
            if not name:
                continue
            if member.islnk():  # a hard link: the same kind as the entry it links to
                target = member.linkname.encode("utf-8", "surrogateescape")
                kind = entries.get(target[2:] if target.startswith(b"./") else target, "file")
            elif member.isdir():
                kind = "directory"
            elif member.issym():
                kind = "symlink"
            elif member.isfifo():
                kind = "fifo"
            elif member.ischr():
                kind = "character device"
            elif member.isblk():
                kind = "block device"
            else:
                kind = "file"
            entries[name] = kind
    return entries, count


def tar_problem(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    return "; ".join(ascii(line)[1:-1] for line in lines[:3]) + (f" (+{len(lines) - 3} more)" if len(lines) > 3 else "")


def write_and_check(mount: str, target: str, members: list, wanted: dict[bytes, str], excludes: list) -> int:
    """GNU tar writes `members` of the volume to `target`, reads it back against the volume, and its
    entries must be exactly `wanted` (by path and kind). Returns the archive's number of entries."""
    made = subprocess.run([*TAR_CREATE, "--file", target, "--directory", mount, *excludes, "--", *members],
                          capture_output=True)
    if made.returncode != 0:
        raise Refused(f"GNU tar could not archive it: {tar_problem(made)}")
    compared = subprocess.run(["tar", "--compare", "--gzip", "--file", target, "--directory", mount],
                              capture_output=True)
    if compared.returncode != 0:
        differences = compared.stdout.decode("utf-8", "replace").strip().splitlines()
        detail = "; ".join(ascii(d)[1:-1] for d in differences[:3]) or tar_problem(compared)
        raise Refused(f"the archive read back differs from the volume: {detail}")
    archived, count = listed(target)
    missing = sorted(set(wanted) - set(archived))
    extra = sorted(set(archived) - set(wanted))
    changed = sorted(p for p in set(wanted) & set(archived) if wanted[p] != archived[p])
    for what, paths in (("missing from the archive", missing), ("in the archive but not in the volume", extra),
                        ("archived as another kind of entry", changed)):
        if paths:
            raise Refused(f"{len(paths)} entr{'y is' if len(paths) == 1 else 'ies are'} {what}: "
                          + ", ".join(shown(p) for p in paths[:3]))
    return count


def archive_volume(name: str, mount: str, target: str, secrets_target: str | None = None) -> dict:
    """Write and verify one student's archive at `target`, and Jupyter's secrets of the volume apart at
    `secrets_target` (when it has any; a teachers' folder, given none, is archived whole); returns what
    index.json says of them."""
    volume = walk(mount)
    sockets = sorted(path for path, kind in volume.items() if kind == "socket")
    roots = sorted(p for p in volume if secrets_target and any(pattern.fullmatch(p) for pattern in RUNTIME_SECRETS))
    apart = {p for p in volume if any(p == r or p.startswith(r + b"/") for r in roots)}
    wanted = {p: kind for p, kind in volume.items() if kind != "socket" and p not in apart}  # sockets hold no data
    excludes = ["--anchored", "--no-wildcards", *[b"--exclude=./" + r for r in roots]]
    count = write_and_check(mount, target, ["."], wanted, excludes)
    kinds: dict[str, int] = {}
    for kind in wanted.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    entry = {"entries": count, "kinds": kinds, "sockets_skipped": [shown(p) for p in sockets],
             "kept_apart": [shown(r) for r in roots], "secrets": None}
    if roots:
        secrets = {p: volume[p] for p in apart if volume[p] != "socket"}
        entries = write_and_check(mount, secrets_target, [b"./" + r for r in roots], secrets, [])
        entry["secrets"] = {"entries": entries, "sha256": sha256_file(secrets_target),
                            "bytes": os.path.getsize(secrets_target)}
    return entry


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_restore(hub_data: str, out: str) -> dict:
    """The hub's data directory for the operator only: the database and cookie secret restoring a hub needs."""
    parent, base = os.path.split(hub_data.rstrip("/"))
    tmp = out + ".part"
    made = subprocess.run([*TAR_CREATE, "--file", tmp, "--directory", parent, base], capture_output=True)
    if made.returncode != 0:
        raise Refused(f"the hub's data {hub_data} could not be archived: {tar_problem(made)}")
    compared = subprocess.run(["tar", "--compare", "--gzip", "--file", tmp, "--directory", parent], capture_output=True)
    if compared.returncode != 0:
        raise Refused(f"the hub's data archive read back differs from {hub_data}: {tar_problem(compared)}")
    os.chmod(tmp, 0o600)
    fsync_file(tmp)
    os.replace(tmp, out)
    return {"sha256": sha256_file(out), "bytes": os.path.getsize(out)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", required=True, help="volume name prefix of the students' volumes")
    parser.add_argument("--out", required=True, help="the part to write (a plain tar)")
    parser.add_argument("--exclude", default="", help="comma-separated volumes that are not students' (the probe)")
    parser.add_argument("--restore", help="where to write the hub's data archive (the hub host only)")
    parser.add_argument("--hub-data", default="/srv/jupyterhub", help="the hub's data directory")
    parser.add_argument("--teaching", action="append", default=[], metavar="NAME=DIR",
                        help="a teachers' folder (grading): archived into teaching/NAME.tar.gz when it exists")
    args = parser.parse_args(argv)

    folder = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    lock = open(os.path.join(folder, ".lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # an earlier run cut off mid-way may still be writing here

    started = time.monotonic()
    exclude = {v for v in args.exclude.split(",") if v}
    index: dict = {"students": [], "restore": None, "teaching": []}
    part_tmp = args.out + ".part"
    for stale in os.listdir(folder):  # what a run cut off mid-way left
        if stale.endswith((".tar.gz", ".part")):
            os.unlink(os.path.join(folder, stale))
    try:
        with tarfile.open(part_tmp, "w", format=tarfile.GNU_FORMAT) as part:
            used: set[str] = set()
            for volume, mount in volumes(args.prefix, exclude):
                user = unescape(volume[len(args.prefix):])
                base = user if user and SAFE_NAME.fullmatch(user) else volume
                while base in used:  # two volumes cannot share a name; this only keeps file names apart
                    base += "_"
                used.add(base)
                target = os.path.join(folder, f"{base}.tar.gz")
                secrets_target = os.path.join(folder, f"{base}.secrets.tar.gz")
                try:
                    entry = archive_volume(volume, mount, target, secrets_target)
                except Refused as exc:
                    raise Refused(f"volume {volume} (student {user or 'unknown'}): {exc}") from None
                entry.update(volume=volume, user=user, file=f"students/{base}.tar.gz", sha256=sha256_file(target),
                             bytes=os.path.getsize(target))
                part.add(target, arcname=entry["file"], recursive=False)
                os.unlink(target)
                if entry["secrets"]:
                    entry["secrets"]["file"] = f"secrets/{base}.tar.gz"
                    part.add(secrets_target, arcname=entry["secrets"]["file"], recursive=False)
                    os.unlink(secrets_target)
                index["students"].append(entry)
            for item in args.teaching:
                name, _, path = item.partition("=")
                if not SAFE_NAME.fullmatch(name) or not path:
                    raise Refused(f"--teaching {item!r}: give NAME=DIR")
                if not os.path.isdir(path):
                    continue  # a course that never graded
                target = os.path.join(folder, f"teaching-{name}.tar.gz")
                try:
                    entry = archive_volume(name, path, target)
                except Refused as exc:
                    raise Refused(f"the teachers' folder {path}: {exc}") from None
                entry.update(name=name, file=f"teaching/{name}.tar.gz", sha256=sha256_file(target),
                             bytes=os.path.getsize(target))
                part.add(target, arcname=entry["file"], recursive=False)
                os.unlink(target)
                index["teaching"].append(entry)
            if args.restore:
                if os.path.isdir(args.hub_data):
                    index["restore"] = make_restore(args.hub_data, args.restore)
                else:
                    raise Refused(f"the hub's data directory {args.hub_data} is missing")
            data = json.dumps(index, indent=2, sort_keys=True).encode()
            info = tarfile.TarInfo("index.json")
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            part.addfile(info, io.BytesIO(data))
        os.chmod(part_tmp, 0o600)
        fsync_file(part_tmp)
        os.replace(part_tmp, args.out)
    except (Refused, subprocess.CalledProcessError, OSError) as exc:
        if isinstance(exc, subprocess.CalledProcessError):
            exc = f"{' '.join(exc.cmd[:3])} failed: {(exc.stderr or '').strip()[:300]}"
        print(f"cannot archive this host's students' work: {exc}", file=sys.stderr)
        for leftover in os.listdir(folder):
            if leftover.endswith((".tar.gz", ".part")):
                os.unlink(os.path.join(folder, leftover))
        return 3
    print(json.dumps({"students": len(index["students"]), "entries": sum(s["entries"] for s in index["students"]),
                      "bytes": os.path.getsize(args.out), "seconds": round(time.monotonic() - started, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
