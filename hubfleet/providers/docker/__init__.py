"""The Docker provider: hosts as containers on this machine, their images, the embedded ACME server."""

from hubfleet.providers.docker.provider import (
    HOST_CPU_SHARES,
    LABEL_COURSE,
    LABEL_MANAGED,
    LABEL_ROLE,
    DockerProvider,
)

__all__ = ["DockerProvider", "HOST_CPU_SHARES", "LABEL_COURSE", "LABEL_MANAGED", "LABEL_ROLE"]
