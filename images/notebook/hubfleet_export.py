"""Take your work home: a Jupyter Server extension that gives the student a zip of all their files.

    GET <server>/hubfleet/export             a page: how many files, how large, and the download link
    GET <server>/hubfleet/export/files.zip   every file of the student's home, streamed as one zip

The server is the student's own (JupyterHub lets only them, and those the course allows to reach
their server, in), and it only sees their volume: the zip can hold nobody else's files. Streamed
file by file in chunks, so a large home never sits in memory. Left out, and said so in the zip's
EXPORT-NOTES.txt: Jupyter's own secrets (.local/share/jupyter/runtime: the server's cookie secret
and kernels' keys), sockets and other special files, and what a symbolic link points to (the link
is listed). A name that is not valid UTF-8 (a file copied from elsewhere) is written with each bad
byte as \\xNN and listed, since a zip stores names as text.
"""

from __future__ import annotations

import html
import os
import stat
import time
import zipfile
from typing import Iterator

AUTH_RESOURCE = "contents"
CHUNK = 1 << 20
SKIPPED_DIRS = (".local/share/jupyter/runtime",)
NOTES = "EXPORT-NOTES.txt"


def _arcname(relative: bytes) -> tuple[str, bool]:
    """The zip name of a path relative to the home, and whether it had to be escaped."""
    try:
        return relative.decode("utf-8"), False
    except UnicodeDecodeError:
        return relative.decode("utf-8", "backslashreplace"), True


def walk(root: str):
    """(relative bytes, kind, size) of every entry under root; kind: file, dir, link, skipped (its reason)."""
    broot = os.fsencode(root)
    skipped = {os.path.join(broot, os.fsencode(d)) for d in SKIPPED_DIRS}
    stack = [broot]
    while stack:
        current = stack.pop()
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as exc:
            yield os.path.relpath(current, broot), f"skipped: unreadable ({exc.strerror})", 0
            continue
        for entry in entries:
            relative = os.path.relpath(entry.path, broot)
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISLNK(info.st_mode):
                yield relative, "link", 0
            elif stat.S_ISDIR(info.st_mode):
                if entry.path in skipped:
                    yield relative, "skipped: Jupyter's secrets", 0
                    continue
                if os.path.ismount(entry.path):  # the course's shared folder: the course's, not the student's
                    yield relative, "skipped: a folder the course shares, not yours", 0
                    continue
                yield relative, "dir", 0
                stack.append(entry.path)
            elif stat.S_ISREG(info.st_mode):
                yield relative, "file", info.st_size
            else:
                yield relative, "skipped: not a regular file", 0


class _Sink:
    """A write-only stream the zip writes into; the handler sends what piles up."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.size = 0
        self.position = 0

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts, self.size = b"".join(self.parts), [], 0
        return data


def summary(root: str) -> tuple[int, int]:
    """(files, bytes) the zip will hold."""
    files = size = 0
    for _, kind, length in walk(root):
        if kind == "file":
            files += 1
            size += length
    return files, size


def zip_stream(root: str) -> Iterator[bytes]:
    """Every file under root as one zip, in pieces of about CHUNK bytes (never the whole in memory)."""
    sink, notes = _Sink(), []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for relative, kind, _ in walk(root):
            name, escaped = _arcname(relative)
            if escaped and kind in ("file", "dir"):
                notes.append(f"renamed (its name is not UTF-8): {name}")
            if kind == "dir":
                archive.writestr(zipfile.ZipInfo(name + "/"), b"")
            elif kind == "link":
                target = _arcname(os.readlink(os.path.join(os.fsencode(root), relative)))[0]
                notes.append(f"symbolic link, not followed: {name} -> {target}")
            elif kind.startswith("skipped"):
                notes.append(f"{kind}: {name}")
            else:
                yield from _add(archive, sink, os.path.join(os.fsencode(root), relative), name, notes)
        archive.writestr(NOTES, "\n".join(["Left out or renamed:", *notes] if notes else ["Nothing left out."]) + "\n")
    yield sink.take()


def _add(archive: zipfile.ZipFile, sink: _Sink, path: bytes, name: str, notes: list[str]) -> Iterator[bytes]:
    try:
        source = open(path, "rb")
    except OSError as exc:
        notes.append(f"skipped: unreadable ({exc.strerror}): {name}")
        return
    with source:
        info = zipfile.ZipInfo.from_file(path, name, strict_timestamps=False)
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as target:
            while chunk := source.read(CHUNK):
                target.write(chunk)
                if sink.size >= CHUNK:
                    yield sink.take()
    if sink.size >= CHUNK:
        yield sink.take()


PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Download all your files</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto; padding: 0 1em">
<h1>Download all your files</h1>
<p id="summary">{files} file(s), {mib:.1f} MiB in all (before compression).</p>
<p><a id="download" href="{link}" download>Download them as one zip file</a></p>
<p>Keep it somewhere safe: when the course ends, its hub and your files on it are removed.
Jupyter's own secrets and special files are left out; EXPORT-NOTES.txt in the zip lists anything
left out or renamed.</p>
<p><a href="{home}">Back to JupyterLab</a></p></body></html>"""


def _handlers(base: str) -> list[tuple]:
    from jupyter_server.auth.decorator import authorized
    from jupyter_server.base.handlers import JupyterHandler
    from jupyter_server.utils import url_path_join
    from tornado import web
    from tornado.escape import url_escape

    class ExportPage(JupyterHandler):
        auth_resource = AUTH_RESOURCE

        @web.authenticated
        @authorized("read")
        def get(self):
            files, size = summary(self.settings["server_root_dir"])
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.set_header("Cache-Control", "no-store")
            self.write(PAGE.format(files=files, mib=size / 2**20,
                                   link=html.escape(url_path_join(self.base_url, "hubfleet/export/files.zip")),
                                   home=html.escape(url_path_join(self.base_url, "lab"))))

    class ExportZip(JupyterHandler):
        auth_resource = AUTH_RESOURCE

        @web.authenticated
        @authorized("read")
        async def get(self):
            user = os.environ.get("JUPYTERHUB_USER", "my")
            stamp = time.strftime("%Y%m%d")
            self.set_header("Content-Type", "application/zip")
            self.set_header("Content-Disposition", f'attachment; filename="files-{stamp}.zip"; '
                                                   f"filename*=UTF-8''{url_escape(user, plus=False)}-files-{stamp}.zip")
            self.set_header("Cache-Control", "no-store")
            for piece in zip_stream(self.settings["server_root_dir"]):
                self.write(piece)
                await self.flush()

    return [(url_path_join(base, "hubfleet/export/files.zip"), ExportZip),
            (url_path_join(base, "hubfleet/export/?"), ExportPage)]


def _load_jupyter_server_extension(serverapp) -> None:
    serverapp.web_app.add_handlers(".*$", _handlers(serverapp.web_app.settings["base_url"]))


def _jupyter_server_extension_points():
    return [{"module": "hubfleet_export"}]
