"""Molecule's hosts are hubfleet's own Docker hosts: the same containers a course gets, made by the provider.

usage: host.py create COURSE DIR NAME [NAME...] | host.py destroy COURSE DIR
`create` makes one host per NAME in one course (the first is its hub, the others workers, on one
network, so they can form a Swarm) and prints molecule's instance config entries (a JSON list).
The hosts boot the image the site file asks for (HUBFLEET_SITE_CONFIG, `docker: {host_image: ...}`):
stock, or baked by the roles' install steps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hubfleet.ansible import ensure_ssh_key
from hubfleet.providers import HostSpec, get_provider

GiB = 1024**3


def main(argv: list[str]) -> int:
    action, course, directory, *names = argv
    workdir = Path(directory) / course
    workdir.mkdir(parents=True, exist_ok=True)
    provider = get_provider("docker", course, workdir, lambda message: print(message, file=sys.stderr))
    if action == "destroy":
        provider.destroy_hosts()
        return 0
    key, public = ensure_ssh_key(workdir)
    specs = [HostSpec("hub", "d.small", 2, 4 * GiB, 20 * GiB)]
    specs += [HostSpec("worker", "d.small", 1, 2 * GiB, 20 * GiB) for _ in names[1:]]
    hosts = provider.ensure_hosts(specs, public)
    print(json.dumps([{"instance": name, "address": host.address, "user": host.ssh_user, "port": host.ssh_port,
                       "identity_file": str(key)} for name, host in zip(names, hosts)]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
