"""A student's awkward work: every kind of entry a kernel can make, and a manifest to compare archives with.

`WRITE` runs in the student's kernel (the notebook image's Python) and prints the manifest of what
it made; `manifest()` computes the same thing here over an extracted archive. The two must be equal.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

FOLDER = "awkward"

_MANIFEST = r'''
def manifest(root):
    import hashlib, os, stat
    root = os.fsencode(root)
    found, inodes = {}, {}
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISSOCK(st.st_mode):
                continue  # a socket holds no data; the archive reports it as skipped
            entry = {"kind": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
                     "gid": st.st_gid}
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256()
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                entry.update(size=st.st_size, sha256=digest.hexdigest(), mtime=int(st.st_mtime))
                inodes.setdefault(st.st_ino, []).append(rel.hex())
                entry["inode"] = st.st_ino
            elif stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(path).hex()
            found[rel.hex()] = entry
    for entry in found.values():
        if "inode" in entry:
            entry["links"] = sorted(inodes[entry.pop("inode")])
    return found
'''

WRITE = _MANIFEST + r'''
import json, os, socket
base = os.fsencode("/home/jovyan/FOLDER")
os.makedirs(base)
def write(name, data, mode=0o644):
    path = os.path.join(base, name)
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)
write(b"caf\xe9-latin1.txt", b"a Latin-1 byte in the name")
write(b"new\nline.txt", b"a newline in the name")
write("line\u2028separator.py".encode(), b"print('U+2028')\n")
write(b"quote\"back\\slash tab\t$HOME.txt", b"shell specials")
write(b"n" * 255, b"the longest name a file system allows")
write(b"private.ipynb", b'{"cells": []}', 0o600)
write(b"run.sh", b"#!/bin/sh\necho hi\n", 0o755)
write(b"read-only.txt", b"do not touch", 0o444)
write(b"empty.txt", b"")
write(b"large.bin", os.urandom(16 * 2**20))
deep = os.path.join(base, b"/".join([b"level"] * 40))
os.makedirs(deep)
write(os.path.join(deep, b"leaf.txt"), b"deep")
os.makedirs(os.path.join(base, b"empty-dir/inner-empty"))
os.mkdir(os.path.join(base, b"locked"), 0o700)
os.link(os.path.join(base, b"run.sh"), os.path.join(base, b"second-name-of-run.sh"))
os.symlink(b"private.ipynb", os.path.join(base, b"link-to-notebook"))
os.symlink(b"/nonexistent/elsewhere", os.path.join(base, b"dangling-link"))
os.symlink(b"empty-dir", os.path.join(base, b"link-to-dir"))
os.mkfifo(os.path.join(base, b"pipe"))
with open(os.path.join(base, b"sparse.img"), "wb") as handle:
    handle.truncate(256 * 2**20)
    handle.seek(128 * 2**20)
    handle.write(b"middle of a hole")
os.utime(os.path.join(base, b"empty.txt"), (1_000_000_000, 1_000_000_000))
sock = socket.socket(socket.AF_UNIX)
sock.bind(os.path.join(base, b"kernel.sock"))
sock.close()
print(json.dumps(manifest(base)))
'''.replace("FOLDER", FOLDER)


def manifest(root: Path) -> dict:
    namespace: dict = {}
    exec(_MANIFEST, namespace)  # noqa: S102 - the same code the kernel ran
    return namespace["manifest"](root)


def student_archive(course_archive: Path, user: str, into: Path) -> tuple[dict, Path]:
    """The index entry of `user` and their archive extracted (by GNU tar, as a teacher would) into `into`."""
    import subprocess

    with tarfile.open(course_archive) as tar:
        top = tar.getnames()[0].split("/")[0]
        index = json.loads(tar.extractfile(f"{top}/index.json").read())
        entry = next(s for s in index["students"] if s["user"] == user)
        (into / "student.tar.gz").write_bytes(tar.extractfile(f"{top}/{entry['file']}").read())
    out = into / "extracted"
    out.mkdir()
    subprocess.run(["tar", "-xzf", str(into / "student.tar.gz"), "-C", str(out)], check=True)
    return entry, out
