"""How the course image reaches the hosts: what roles/image is told to do.

An image whose name has a registry host is pulled by each host. Any other image is sent from the
operator's machine: saved once per image id into a tarball (cached under the state directory) that
roles/image copies over SSH and loads, unless the provider already put it on every host.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable

from hubfleet.errors import ProvisionError

Progress = Callable[[str], None]
NOTEBOOK_REPO = "hubfleet/notebook"  # hubfleet's own image, built on this machine when asked for
STALE_AFTER_S = 86400


def names_registry(image: str) -> bool:
    """True when the reference starts with a registry host (a dot or a port in it, or localhost)."""
    first, slash, _ = image.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def local_image_id(image: str) -> str | None:
    """The image's id in this machine's engine, or None (also when no engine answers)."""
    try:
        result = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", image],
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def role_variables(image: str, *, placed: bool, cache: Path, progress: Progress) -> dict:
    """roles/image's variables for this image; saves (or reuses) the tarball when the hosts need it sent."""
    if names_registry(image):
        return {"image_name": image, "image_pull": True}
    found = local_image_id(image)
    if found is None and image.partition(":")[0] == NOTEBOOK_REPO:
        from hubfleet.providers.docker.images import ensure_notebook_image

        ensure_notebook_image(progress)
        found = local_image_id(image)
    if found is None:
        raise ProvisionError(
            f"image {image} is not on this machine and its name has no registry to pull it from",
            hint=f"load it with `docker load -i FILE.tar` or build it with `docker build -t {image} DIR`, "
            "or name it with its registry (registry.example.edu/course/image:tag), then run again")
    if placed:
        return {"image_name": image, "image_id": found}
    return {"image_name": image, "image_id": found, "image_archive": str(saved_archive(image, found, cache, progress))}


def images_variables(images: list[str], *, placed: bool, cache: Path, progress: Progress) -> dict:
    """roles/image's variables for every image a course offers (its environments), the default first."""
    return {"image_list": [role_variables(image, placed=placed, cache=cache, progress=progress) for image in images]}


def saved_archive(image: str, image_id: str, cache: Path, progress: Progress) -> Path:
    """A `docker save` tarball of the image, made once per image id."""
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = cache / f"{image_id.removeprefix('sha256:')[:16]}.tar"
    if path.exists():
        path.touch()  # in use: not stale
        return path
    progress(f"saving {image} for the hosts ({path})")
    partial = path.with_suffix(f".partial-{os.getpid()}")
    result = subprocess.run(["docker", "save", "-o", str(partial), image], capture_output=True, text=True)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise ProvisionError(f"saving {image} failed: {result.stderr.strip()}",
                             hint=f"check the space left under {cache}")
    partial.rename(path)
    stale = time.time() - STALE_AFTER_S
    for old in cache.glob("*.tar"):  # a day unused: an older build no course sends any more
        if old != path and old.stat().st_mtime < stale:
            old.unlink(missing_ok=True)
    return path
