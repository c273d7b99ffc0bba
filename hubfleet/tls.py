"""HTTPS for a course: the variables roles/tls needs and the URL students open."""

from __future__ import annotations

from hubfleet.descriptor import Course
from hubfleet.providers import Host


def role_variables(course: Course, hosts: list[Host]) -> dict:
    return {"tls_enabled": course.tls is not None, "tls_domain": course.domain}


def public_url(course: Course, hosts: list[Host]) -> str:
    """Where students open the hub: the published port on this machine, or the course's domain."""
    hub = next(h for h in hosts if h.role == "hub")
    if hub.address in ("127.0.0.1", "localhost") and hub.http_port:
        return f"http://127.0.0.1:{hub.http_port}"
    return f"http://{course.domain}"
