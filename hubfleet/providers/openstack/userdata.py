"""The cloud-init user data every server of a course boots with (both engines send the same)."""

from __future__ import annotations

import yaml


def cloud_init(hostname: str, ssh_public_key: str) -> str:
    """Its name and the course key for the image's login user: nothing more, the roles do the rest.

    No packages here: apt running at boot would hold its lock while Ansible's first tasks need it
    (python3 is in every Debian cloud image; Ansible's apt module brings python3-apt itself).
    """
    data = {"hostname": hostname, "ssh_authorized_keys": [ssh_public_key.strip()]}
    return "#cloud-config\n" + yaml.safe_dump(data, sort_keys=False)
