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


def provider_class(name: str) -> type[Provider]:
    try:
        module_name, _, cls_name = _BACKENDS[name].partition(":")
    except (KeyError, TypeError):
        raise HubfleetError(f"unknown provider {name!r}", hint=f"use one of: {', '.join(_BACKENDS)}") from None
    return getattr(import_module(module_name), cls_name)


def get_provider(name: str, course_name: str, workdir: Path, progress: Progress | None = None) -> Provider:
    return provider_class(name)(course_name, workdir, progress)


def default_acme_server(name: str) -> str | None:
    """The ACME server a course on this provider gets when its descriptor names none (None: unknown provider)."""
    try:
        return provider_class(name).acme_server
    except HubfleetError:
        return None


__all__ = ["Host", "HostSpec", "Progress", "Provider", "default_acme_server", "get_provider", "provider_class"]
