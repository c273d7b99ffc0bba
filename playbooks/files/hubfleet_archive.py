#!/usr/bin/env python3
"""Archive this host's student volumes and hub database: checksums first, then the tarball.

Runs on the host (python3 only, no dependencies). Writes OUT.tar.gz whose MANIFEST.sha256 was
computed from the volumes in a pass of its own, so the controller can verify the archive
against the volumes and not against itself.
"""
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

PREFIX, OUT, EXCLUDE = sys.argv[1], sys.argv[2], set(sys.argv[3].split(",")) if len(sys.argv) > 3 else set()
HUB_DB = "/srv/jupyterhub/jupyterhub.sqlite"


def volumes():
    names = subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"name={PREFIX}"],
                           check=True, capture_output=True, text=True).stdout.split()
    for name in sorted(n for n in names if n.startswith(PREFIX) and n not in EXCLUDE):
        info = json.loads(subprocess.run(["docker", "volume", "inspect", name], check=True,
                                         capture_output=True, text=True).stdout)[0]
        yield name, info["Mountpoint"]


def files():
    """(path on disk, path in archive) of every regular file, in a stable order."""
    for name, mount in volumes():
        yield None, f"volumes/{name}/"
        for folder, dirs, names in os.walk(mount):
            dirs.sort()
            for n in sorted(names):
                full = os.path.join(folder, n)
                if os.path.isfile(full) and not os.path.islink(full):
                    yield full, f"volumes/{name}/{os.path.relpath(full, mount)}"
    if os.path.exists(HUB_DB):
        yield HUB_DB, "hub/jupyterhub.sqlite"


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


entries = list(files())
manifest = "".join(f"{sha256(disk)}  {arc}\n" for disk, arc in entries if disk)
tmp = OUT + ".part"
with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
    for disk, arc in entries:
        if disk is None:
            info = tarfile.TarInfo(arc.rstrip("/"))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        else:
            tar.add(disk, arcname=arc, recursive=False)
    data = manifest.encode()
    info = tarfile.TarInfo("MANIFEST.sha256")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
os.replace(tmp, OUT)
print(json.dumps({"files": manifest.count("\n"), "volumes": sum(1 for d, _ in entries if d is None),
                  "bytes": os.path.getsize(OUT)}))
