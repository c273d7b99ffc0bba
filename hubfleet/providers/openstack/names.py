"""How a course's resources are named and tagged on a cloud, so that a re-run finds them again.

Neutron resources carry the tag (and description) `hubfleet-course=<course>`, servers and volumes
the metadata `hubfleet-course: <course>`; the keypair, security group, network, subnet and router
are all `hubfleet-<course>`; servers are `<course>-hub`, `<course>-worker-<i>`, as `plan` shows.
"""

from __future__ import annotations

TAG_KEY = "hubfleet-course"
ROLE_KEY = "hubfleet-role"


def course_tag(course: str) -> str:
    return f"{TAG_KEY}={course}"


def resource_name(course: str) -> str:
    return f"hubfleet-{course}"


def host_name(course: str, index: int, role: str) -> str:
    """Same names as `hubfleet plan` shows: <course>-hub, then <course>-worker-<index>."""
    return f"{course}-hub" if role == "hub" else f"{course}-worker-{index}"


def volume_name(host: str) -> str:
    return f"{host}-data"


def worker_index(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0
