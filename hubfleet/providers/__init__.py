"""Provider registry: the only place that maps a provider name to its backend class."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from hubfleet.errors import HubfleetError
from hubfleet.providers.base import Host, HostSpec, Progress, Provider

_BACKENDS = {
    "docker": "hubfleet.providers.docker.provider:DockerProvider",
    "openstack": "hubfleet.providers.openstack:OpenStackProvider",
}


def get_provider(name: str, course_name: str, workdir: Path, progress: Progress | None = None) -> Provider:
    try:
        module_name, _, cls_name = _BACKENDS[name].partition(":")
    except KeyError:
        raise HubfleetError(f"unknown provider {name!r}", hint=f"use one of: {', '.join(_BACKENDS)}") from None
    cls = getattr(import_module(module_name), cls_name)
    return cls(course_name, workdir, progress)


__all__ = ["Host", "HostSpec", "Progress", "Provider", "get_provider"]
