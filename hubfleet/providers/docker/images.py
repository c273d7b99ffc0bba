"""hubfleet's container images, built on this machine and cached by content.

Five images: `hubfleet/base` (a debootstrapped Debian 12), `hubfleet/stock` (a stock Debian 12
"VM": systemd, sshd, python3, cloud-init, nothing else), `hubfleet/host` (stock baked by the
roles' install steps, `playbooks/bake.yml`), `hubfleet/notebook` (the students' single-user
server) and `hubfleet/desktop` (the notebook and a remote desktop behind the hub, an environment
a course may offer). Each tag is a short hash of everything that goes into the image, so an unchanged recipe
is a single `docker image inspect` and never a rebuild.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterator, Sequence

from hubfleet.errors import ProvisionError

Progress = Callable[[str], None]

PROJECT_ROOT = Path(__file__).resolve().parents[3]
IMAGES_DIR = PROJECT_ROOT / "images"
ROLES_DIR = PROJECT_ROOT / "roles"
PLAYBOOKS_DIR = PROJECT_ROOT / "playbooks"
MACHINE_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

BASE_REPO = "hubfleet/base"
STOCK_REPO = "hubfleet/stock"
HOST_REPO = "hubfleet/host"
NOTEBOOK_REPO = "hubfleet/notebook"
DESKTOP_REPO = "hubfleet/desktop"
LATEST = "latest"
TAG_LENGTH = 12
LOG_TAIL_LINES = 30

# Bump when the build logic in this module changes in a way the recipe files do not show.
RECIPE_VERSION = "1"
DEBOOTSTRAP_ARGS = {
    "suite": "bookworm",
    "variant": "minbase",
    "mirror": "http://deb.debian.org/debian",
}
# Where the machine's CA bundle lands in every image (pip.conf, npmrc and /etc/environment point here).
IMAGE_CA_BUNDLE = "etc/hubfleet/ca-bundle.crt"


@dataclass(frozen=True)
class Recipe:
    """Everything that goes into one image: the files of its build context and its parameters."""

    repo: str
    files: dict[str, Path]  # path inside the build context -> file on this machine
    params: dict[str, str] = field(default_factory=dict)  # parent image, debootstrap arguments...

    @property
    def tag(self) -> str:
        return content_tag(self)

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.tag}"

    @property
    def latest(self) -> str:
        return f"{self.repo}:{LATEST}"


# --- content hashing (pure, no Docker) -------------------------------------------------------


def content_tag(recipe: Recipe) -> str:
    """A short hash of the recipe's parameters, file names, executable bits and file contents."""
    digest = hashlib.sha256()
    digest.update(f"recipe {RECIPE_VERSION} {recipe.repo}\n".encode())
    for key in sorted(recipe.params):
        digest.update(f"param {key}={recipe.params[key]}\n".encode())
    for name in sorted(recipe.files):
        source = recipe.files[name]
        try:
            data = source.read_bytes()
            executable = os.access(source, os.X_OK)
        except OSError as exc:
            raise ProvisionError(
                f"cannot read {source}, an input of image {recipe.repo}: {exc.strerror}",
                hint="run hubfleet from its source tree (the images/ and roles/ folders must be there)",
            ) from None
        digest.update(f"file {name} {len(data)} {'x' if executable else '-'}\n".encode())
        digest.update(data)
    return digest.hexdigest()[:TAG_LENGTH]


def files_under(directory: Path, prefix: str = "") -> dict[str, Path]:
    """Every regular file below `directory`, keyed by its relative path (with `prefix`)."""
    if not directory.is_dir():
        raise ProvisionError(
            f"image source folder {directory} is missing",
            hint="run hubfleet from its source tree (the images/ folder must be there)",
        )
    found: dict[str, Path] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            found[prefix + path.relative_to(directory).as_posix()] = path
    return found


def base_recipe() -> Recipe:
    files = files_under(IMAGES_DIR / "base" / "overlay", prefix="overlay/")
    files[IMAGE_CA_BUNDLE] = MACHINE_CA_BUNDLE
    return Recipe(BASE_REPO, files, dict(DEBOOTSTRAP_ARGS))


def stock_recipe() -> Recipe:
    return Recipe(STOCK_REPO, files_under(IMAGES_DIR / "stock"), {"parent": base_recipe().ref})


# What the bake runs: its playbooks and the install steps (with what they read) of the roles it bakes.
BAKED_ROLES = ("engine", "proxy", "tls", "hub")
BAKE_INPUTS = ("playbooks/bake.yml", "playbooks/forget.yml", "roles/hub/files/hub-requirements.txt",
               *(f"roles/{role}/{part}" for role in BAKED_ROLES
                 for part in ("tasks/install.yml", "defaults/main.yml", "meta/argument_specs.yml")))


def host_recipe() -> Recipe:
    """The baked host: the stock image after playbooks/bake.yml (the roles' install steps)."""
    files = {path.relative_to(PROJECT_ROOT).as_posix(): path
             for pattern in BAKE_INPUTS for path in sorted(PROJECT_ROOT.glob(pattern))}
    return Recipe(HOST_REPO, files, {"parent": stock_recipe().ref})


def notebook_recipe() -> Recipe:
    return Recipe(NOTEBOOK_REPO, files_under(IMAGES_DIR / "notebook"), {"parent": base_recipe().ref})


def desktop_recipe() -> Recipe:
    return Recipe(DESKTOP_REPO, files_under(IMAGES_DIR / "desktop"), {"parent": notebook_recipe().ref})


def notebook_image_ref() -> str:
    """The reference `ensure_notebook_image` returns, computed without Docker or a build."""
    return notebook_recipe().ref


# --- the docker CLI --------------------------------------------------------------------------


def run_docker(
    args: Sequence[str], *, check: bool = True, input: bytes | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run one `docker` command and capture its output; a failure becomes a ProvisionError."""
    try:
        result = subprocess.run(
            ["docker", *args], input=input, capture_output=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise ProvisionError(
            "the docker command is not installed", hint="run scripts/ensure-docker.sh"
        ) from None
    except subprocess.TimeoutExpired:
        raise ProvisionError(f"`docker {' '.join(args[:3])}` did not finish within {timeout:.0f} s") from None
    completed = subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    )
    if check and completed.returncode != 0:
        raise ProvisionError(
            f"`docker {' '.join(args[:3])}` failed: {completed.stderr.strip() or completed.stdout.strip()}"
        )
    return completed


def image_id(ref: str) -> str | None:
    """The local image ID of `ref`, or None when this engine does not have it."""
    result = run_docker(["image", "inspect", "--format", "{{.Id}}", ref], check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def _image_ids(refs: Sequence[str]) -> list[str | None]:
    """IDs of several refs in one call (None for the missing ones)."""
    result = run_docker(["image", "inspect", "--format", "{{.Id}}", *refs], check=False)
    if result.returncode == 0:
        return list(result.stdout.split())
    return [image_id(ref) for ref in refs]  # some are missing: ask one by one to know which


def _stream(
    commands: Sequence[Sequence[str]], progress: Progress, summarize: Callable[[str], str | None], what: str,
    env: dict[str, str] | None = None,
) -> None:
    """Run a pipeline, turn some log lines into progress messages, raise with the log's tail."""
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    procs: list[subprocess.Popen[bytes]] = []
    errors: list[IO[bytes] | None] = []
    stdin = None
    for index, command in enumerate(commands):
        last = index == len(commands) - 1
        # Upstream stderr goes to a file: a full, unread pipe would stall the pipeline.
        error_file = None if last else tempfile.NamedTemporaryFile()
        proc = subprocess.Popen(
            list(command), stdin=stdin, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if last else error_file, env=env,
        )
        errors.append(error_file)
        if stdin is not None:
            stdin.close()  # only the next process holds the pipe, so a crash propagates
        stdin = proc.stdout
        procs.append(proc)
    assert procs[-1].stdout is not None
    for raw in procs[-1].stdout:
        line = raw.decode(errors="replace").rstrip()
        tail.append(line)
        message = summarize(line)
        if message:
            progress(message)
    failures = []
    for command, proc, error_file in zip(commands, procs, errors):
        if proc.wait() != 0:
            failures.append(f"{command[0]} exited with {proc.returncode}")
        if error_file is not None:
            error_file.seek(0)
            tail.extend(error_file.read().decode(errors="replace").splitlines()[-5:])
            error_file.close()
    if failures:
        log = "\n".join(tail)
        raise ProvisionError(f"{what} failed ({'; '.join(failures)}); last log lines:\n{log}")


# --- builds ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _build_lock(ref: str, progress: Progress) -> Iterator[None]:
    """One build per image content at a time on this machine, across hubfleet processes (and source trees:
    another tree's recipe has another tag and builds beside this one)."""
    path = Path(tempfile.gettempdir()) / f"hubfleet-build-{ref.replace('/', '-').replace(':', '-')}.lock"
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another hubfleet process that is building {ref}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ensure(recipe: Recipe, build: Callable[[Recipe, Progress], None], progress: Progress) -> str:
    """Return the recipe's image, building it only when no image has this content tag."""
    ref = recipe.ref
    if _point_latest(recipe):
        return ref
    with _build_lock(recipe.ref, progress):
        if not _point_latest(recipe):  # another process may have built it meanwhile
            started = time.monotonic()
            progress(f"building {ref} (first time for this content; takes minutes)")
            build(recipe, progress)
            run_docker(["tag", ref, recipe.latest])
            progress(f"built {ref} in {time.monotonic() - started:.0f} s")
    return ref


def _point_latest(recipe: Recipe) -> bool:
    """True when the content-tagged image exists; then make `:latest` name it too."""
    wanted, latest = _image_ids([recipe.ref, recipe.latest])
    if wanted is None:
        return False
    if latest != wanted:
        run_docker(["tag", recipe.ref, recipe.latest])
    return True


def _debootstrap_summary() -> Callable[[str], str | None]:
    """Report each debootstrap phase once (not every package)."""
    seen: set[str] = set()

    def summarize(line: str) -> str | None:
        if not line.startswith("I: "):
            return None
        phase = line[3:].split(" ", 1)[0]
        if phase in seen:
            return None
        seen.add(phase)
        return f"base: debootstrap: {line[3:][:90]}"

    return summarize


def _docker_build_summary(name: str) -> Callable[[str], str | None]:
    """Report each Dockerfile step, shortened to one line."""

    def summarize(line: str) -> str | None:
        if line.startswith("Step "):
            return f"{name}: {line[:110]}"
        return None

    return summarize


def _unmount_below(root: Path) -> None:
    """Unmount anything a failed debootstrap left mounted inside its target, before deleting it."""
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p.startswith(str(root) + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _build_base(recipe: Recipe, progress: Progress) -> None:
    if os.geteuid() != 0:
        raise ProvisionError("building the base image needs root (debootstrap)", hint="run as root")
    if shutil.which("debootstrap") is None:
        raise ProvisionError("debootstrap is not installed", hint="run scripts/setup.sh")
    workdir = Path(tempfile.mkdtemp(prefix="hubfleet-base-", dir="/var/tmp"))
    rootfs = workdir / "rootfs"
    try:
        args = recipe.params
        _stream(
            [["debootstrap", f"--variant={args['variant']}", args["suite"], str(rootfs), args["mirror"]]],
            progress, _debootstrap_summary(), "debootstrap of the base image",
        )
        _overlay_base_files(recipe, rootfs)
        progress(f"base: importing the root file system as {recipe.ref}")
        _stream(
            [
                ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
                ["docker", "import", "--change", 'CMD ["/bin/bash"]',
                 "--change", "LABEL hubfleet.image=base", "-", recipe.ref],
            ],
            progress, lambda line: None, "docker import of the base image",
        )
    finally:
        _unmount_below(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


def _overlay_base_files(recipe: Recipe, rootfs: Path) -> None:
    """Put the recipe's files into the root file system and drop what debootstrap cached."""
    for name, source in recipe.files.items():
        target = rootfs / name.removeprefix("overlay/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        target.chmod(0o755 if os.access(source, os.X_OK) else 0o644)
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (rootfs / leftover).glob("*"):
            if path.is_file():
                path.unlink()
    # The docs filter only applies to later installs; debootstrap's own docs go now.
    for path in (rootfs / "usr/share/doc").glob("*/*"):
        if path.name != "copyright" and path.is_file():
            path.unlink()
    shutil.rmtree(rootfs / "usr/share/man", ignore_errors=True)


def _build_dockerfile_image(recipe: Recipe, progress: Progress) -> None:
    name = recipe.repo.split("/")[-1]
    parent = recipe.params["parent"]
    with tempfile.TemporaryDirectory(prefix=f"hubfleet-{name}-") as context:
        for rel, source in recipe.files.items():
            target = Path(context) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the classic builder: no buildx here
        _stream(
            [["docker", "build", "--force-rm", "--build-arg", f"BASE={parent}",
              "--label", f"hubfleet.image={name}", "-t", recipe.ref, context]],
            progress, _docker_build_summary(name), f"docker build of {recipe.ref}", env=env,
        )


def ensure_base_image(progress: Progress) -> str:
    """hubfleet/base:<content tag>: Debian 12 minbase from debootstrap, plus the machine's CA bundle."""
    return _ensure(base_recipe(), _build_base, progress)


def _ensure_child(recipe: Recipe, progress: Progress) -> str:
    def build(recipe: Recipe, progress: Progress) -> None:
        ensure_base_image(progress)
        _build_dockerfile_image(recipe, progress)

    return _ensure(recipe, build, progress)


def ensure_stock_image(progress: Progress) -> str:
    """hubfleet/stock:<content tag>: a stock Debian 12 host, as a cloud's image is."""
    return _ensure_child(stock_recipe(), progress)


def baked_image(progress: Progress) -> str | None:
    """hubfleet/host:<content tag> when it is baked for the current roles, else None."""
    recipe = host_recipe()
    return recipe.ref if _point_latest(recipe) else None


def ensure_baked_image(bake: Callable[[str, str], None], progress: Progress) -> str:
    """hubfleet/host:<content tag>, baked by `bake(stock image, new ref)` when the roles changed."""
    def build(recipe: Recipe, progress: Progress) -> None:
        bake(ensure_stock_image(progress), recipe.ref)

    return _ensure(host_recipe(), build, progress)


def ensure_notebook_image(progress: Progress) -> str:
    """hubfleet/notebook:<content tag>: the students' single-user server image."""
    return _ensure_child(notebook_recipe(), progress)


def ensure_desktop_image(progress: Progress) -> str:
    """hubfleet/desktop:<content tag>: the notebook image with a remote desktop behind the hub (images/desktop)."""
    def build(recipe: Recipe, progress: Progress) -> None:
        ensure_notebook_image(progress)
        _build_dockerfile_image(recipe, progress)

    return _ensure(desktop_recipe(), build, progress)


def remove_stale_images(progress: Progress) -> list[str]:
    """Untag hubfleet images whose content tag is no longer current; images a container uses are kept."""
    current = {base_recipe().ref, stock_recipe().ref, host_recipe().ref, notebook_recipe().ref, desktop_recipe().ref}
    listed = run_docker(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                         "--filter", "reference=hubfleet/*"]).stdout.split()
    removed = []
    for ref in listed:
        repo, _, tag = ref.partition(":")
        if repo not in (BASE_REPO, STOCK_REPO, HOST_REPO, NOTEBOOK_REPO, DESKTOP_REPO) or tag == LATEST \
                or ref in current:
            continue
        # Without --force, docker refuses to remove an image that any container (even stopped) uses.
        if run_docker(["image", "rm", ref], check=False).returncode == 0:
            removed.append(ref)
            progress(f"removed the stale image {ref}")
    return removed


def main(argv: list[str]) -> int:
    """Build one image now: base, stock, notebook or desktop (scripts/images.sh)."""
    builders = {"base": ensure_base_image, "stock": ensure_stock_image, "notebook": ensure_notebook_image,
                "desktop": ensure_desktop_image}
    if len(argv) != 1 or argv[0] not in builders:
        print(f"usage: main([{'|'.join(builders)}])", file=sys.stderr)
        return 2
    try:
        print(builders[argv[0]](lambda message: print(f"  {message}", file=sys.stderr)))
    except ProvisionError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 5
    return 0
