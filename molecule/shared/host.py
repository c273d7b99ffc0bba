"""Molecule's hosts are hubfleet's own Docker hosts: the same container a course gets, made by the provider.

usage: host.py create NAME DIR [--image IMAGE] | host.py destroy NAME DIR
`create` prints molecule's instance config entry (JSON) for the host.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hubfleet.ansible import ensure_ssh_key
from hubfleet.providers import HostSpec, get_provider

GiB = 1024**3


def main(argv: list[str]) -> int:
    action, name, directory = argv[:3]
    workdir = Path(directory) / name
    workdir.mkdir(parents=True, exist_ok=True)
    provider = get_provider("docker", name, workdir, lambda message: print(message, file=sys.stderr))
    if action == "destroy":
        provider.destroy_hosts()
        return 0
    key, public = ensure_ssh_key(workdir)
    host = provider.ensure_hosts([HostSpec("hub", "d.small", 2, 4 * GiB, 20 * GiB)], public)[0]
    if "--image" in argv:
        provider.ensure_image(argv[argv.index("--image") + 1])
    print(json.dumps({"instance": name, "address": host.address, "user": host.ssh_user, "port": host.ssh_port,
                      "identity_file": str(key)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
