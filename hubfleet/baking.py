"""Baked host images: a stock host configured by the roles' install steps (playbooks/bake.yml), then
saved by its provider (a committed container, a cloud's image snapshot), as Packer bakes with Ansible.

A host that boots the baked image runs the same playbooks as a stock one; their install steps
find everything done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from hubfleet import ansible
from hubfleet.providers import Host, get_provider

BAKE_NAME = "hubfleet-bake"  # the bake's own host and network names: never a course's

Progress = Callable[[str], None]


def bake_image(provider_name: str, state_dir: Path, progress: Progress, verbosity: int = 0) -> str:
    """The provider's baked host image for the current roles, made now when missing; returns its name."""
    workdir = Path(state_dir) / "bake" / provider_name
    provider = get_provider(provider_name, BAKE_NAME, workdir, progress)
    key, public_key = ansible.ensure_ssh_key(workdir / "secrets")

    def configure(host: Host) -> None:
        inventory = ansible.write_inventory(workdir, [host], provider.inventory_vars(), key)

        def report(kind: str, message: str) -> None:
            if kind in ("step", "task", "failed"):
                progress(f"bake: {message}")

        ansible.run_playbook("bake.yml", workdir=workdir, inventory=inventory, progress=report, verbosity=verbosity)

    return provider.bake(public_key, configure)


def baked_tag(parent: str) -> str:
    """The content tag of a bake that starts from `parent`: what the bake runs (the baked host
    recipe's playbooks and install steps) and the image it starts from. A cloud names its baked
    image after it, so a current bake is found and a stale one is not used."""
    from dataclasses import replace

    from hubfleet.providers.docker.images import host_recipe

    return replace(host_recipe(), params={"parent": parent}).tag

