"""Benchmark archiving and the identity pieces that sit on every launch, on this machine, without Docker.

Prints figures; asserts nothing. Students' volumes are folders in a temp dir; the on-host script
(playbooks/files/hubfleet_archive.py) runs for real with GNU tar and find, only `docker volume`
is a stand-in naming them, then the parts are joined and read back as destroy does.

    .venv/bin/python bench/archive.py                       # 10 students x (500 small files + 20 MiB)
    .venv/bin/python bench/archive.py --students 30 --mib 50
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report  # noqa: E402
from hubfleet.archive import join_parts, verify  # noqa: E402
from hubfleet.usernames import hub_username  # noqa: E402
from tests.unit.test_archive import FAKE_DOCKER, PREFIX, SCRIPT  # noqa: E402

NONCES = Path(__file__).resolve().parent.parent / "roles" / "lti" / "files"


def make_volumes(root: Path, students: int, files: int, mib: int) -> dict[str, str]:
    volumes = {}
    for n in range(students):
        volume = root / f"student-{n}"
        (volume / "notebooks").mkdir(parents=True)
        for i in range(files):
            (volume / "notebooks" / f"cell-{i}.ipynb").write_text('{"cells": [%d]}\n' % i * 20)
        with open(volume / "data.bin", "wb") as handle:
            for _ in range(mib):
                handle.write(os.urandom(2**20))
        volumes[f"{PREFIX}student-{n}"] = str(volume)
    return volumes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=10)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--mib", type=int, default=20)
    args = parser.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory(prefix="hubfleet-bench-archive-") as tmp:
        root = Path(tmp)
        volumes = make_volumes(root / "volumes", args.students, args.files, args.mib)
        size = sum(f.stat().st_size for f in (root / "volumes").rglob("*") if f.is_file())
        (root / "bin").mkdir()
        (root / "bin" / "docker").write_text(FAKE_DOCKER)
        (root / "bin" / "docker").chmod(0o755)
        env = {**os.environ, "PATH": f"{root / 'bin'}:{os.environ['PATH']}", "FAKE_VOLUMES": json.dumps(volumes)}
        started = time.monotonic()
        subprocess.run([sys.executable, str(SCRIPT), "--prefix", PREFIX, "--out", str(root / "host" / "part.tar")],
                       env=env, check=True, capture_output=True)
        on_host = time.monotonic() - started
        started = time.monotonic()
        summary = join_parts("bench", {"hub": root / "host" / "part.tar"}, root / "bench.tar")
        joined = time.monotonic() - started
        started = time.monotonic()
        verify(summary.path)
        read_back = time.monotonic() - started
        figures.update({
            "students": args.students, "volume data MiB": round(size / 2**20, 1),
            "entries": summary.files,
            "host: archive+compare s": round(on_host, 1),
            "host: MiB/s": round(size / 2**20 / on_host, 1),
            "controller: join+verify s": round(joined, 1),
            "controller: read back s": round(read_back, 1),
        })

        sys.path.insert(0, str(NONCES))
        from hubfleet_nonces import NonceStore

        store = NonceStore(str(root / "nonces.sqlite"))
        count = 5000
        started = time.monotonic()
        for n in range(count):
            store.seen_before(f"1.1\0key\0nonce-{n}", time.time() + 600)
        figures["nonce record ms/launch"] = round((time.monotonic() - started) / count * 1000, 3)
        store.close()

    identities = [f"Student Nämé {n} 李" for n in range(20000)]
    started = time.monotonic()
    for identity in identities:
        hub_username(identity)
    figures["username mapping us/id"] = round((time.monotonic() - started) / len(identities) * 1e6, 1)
    report(figures)


if __name__ == "__main__":
    main()
