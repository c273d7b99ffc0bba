"""The course's peers (LMS, LDAP server, ACME server, image registry) against the hosts' own ranges.

A peer whose address falls in a range the hosts' Docker engines or the Swarm use is unreachable
from the hub: the host routes it to its own bridge or overlay. `plan` and `create` refuse such a
course before anything is made, naming the descriptor's field and the site setting.
"""

from __future__ import annotations

import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from typing import Callable
from urllib.parse import urlsplit

from hubfleet.descriptor import AcmeTls, Course
from hubfleet.errors import FieldProblem
from hubfleet.site import Addresses

Resolver = Callable[[str], list[str]]
RESOLVE_TIMEOUT_S = 3.0
# RFC 2606 / 6761 names resolve nowhere (or to this machine): no lookup, nothing to compare.
UNRESOLVED_SUFFIXES = (".example", ".invalid", ".test", ".localhost", "example.com", "example.net", "example.org",
                       "example.edu")
PEER_FIELDS = ("lms_origin", "issuer", "authorize_url", "jwks_url", "server_uri")  # on any authenticator kind


def course_peers(course: Course) -> list[tuple[str, str]]:
    """(descriptor field, host name or address) of every peer the hub or the hosts must reach."""
    found = []
    for name in PEER_FIELDS:
        value = getattr(course.authenticator, name, None)
        if value:
            found.append((f"authenticator.{name}", urlsplit(value).hostname or ""))
    if isinstance(course.tls, AcmeTls) and "://" in course.tls.acme_server:
        found.append(("tls.acme_server", urlsplit(course.tls.acme_server).hostname or ""))
    first, slash, _ = course.image.partition("/")
    if slash and ("." in first or ":" in first):
        found.append(("image", first.rsplit(":", 1)[0] if first.count(":") == 1 else first))
    return [(field, host) for field, host in found if host]


def system_resolver(host: str) -> list[str]:
    """The IPv4 addresses the operator's machine resolves a name to ([] when it does not, within a few seconds)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    if host.lower().rstrip(".").endswith(UNRESOLVED_SUFFIXES) or host.lower() == "localhost":
        return []
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(socket.getaddrinfo, host, None, socket.AF_INET, socket.SOCK_STREAM)
    try:
        return sorted({info[4][0] for info in future.result(timeout=RESOLVE_TIMEOUT_S)})
    except (OSError, FutureTimeout):
        return []
    finally:
        pool.shutdown(wait=False)


def colliding(course: Course, addresses: Addresses, resolve: Resolver = system_resolver) -> list[FieldProblem]:
    """A problem per peer that resolves into a range the hosts' engines or the Swarm use."""
    ranges = addresses.ranges()
    problems = []
    for field, host in course_peers(course):
        for address in resolve(host):
            ip = ipaddress.ip_address(address)
            clash = next(((setting, net) for setting, net in ranges if ip in net), None)
            if clash:
                setting, net = clash
                where = str(ip) if host == str(ip) else f"{host} is at {ip}, which is"
                problems.append(FieldProblem(field, (
                    f"{where} inside {net} that the hosts' Docker engines or Swarm use "
                    f"({setting}), so the hub could not reach it — set other ranges under `addresses:` in the site "
                    "file (e.g. engine_pools: [10.250.0.0/17]), or use an address of the peer outside them")))
                break
    return problems
