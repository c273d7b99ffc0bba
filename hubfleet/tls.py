"""HTTPS for a course: what roles/tls and roles/proxy need, the checks made before any host is touched
or any ACME request is sent, the URL students open, and the certificate the hub really serves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import socket
import ssl
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import requests

from hubfleet.providers.docker import acme_local
from hubfleet.descriptor import AcmeTls, Course, FileTls
from hubfleet.environ import environ
from hubfleet.errors import FieldProblem, InvalidInput, ProvisionError
from hubfleet.providers.base import Host

DIRECTORIES = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
ACME_LIVE_DIR = "/etc/letsencrypt/live"  # certbot's lineage, named after the domain (--cert-name)
FILES_DIR = "/etc/hubfleet/tls"  # the institution's certificate on the host
ACME_WEBROOT = "/var/www/acme"
WARN_DAYS = 14
Progress = Callable[[str], None]


class TlsPreflightError(ProvisionError):
    """The domain, port 80 or the ACME server is not ready: nothing was requested, no host was changed."""


# --- role variables and the URL -------------------------------------------------------------


def _hub(hosts: list[Host]) -> Host:
    return next(h for h in hosts if h.role == "hub")


def _on_loopback(host: Host) -> bool:
    return host.address in ("127.0.0.1", "localhost")


def _reached_at(hub: Host) -> str:
    """The address an ACME server (or a browser) reaches the proxy at: a host on this machine by its
    container address (its published ports are loopback only), a cloud's by its public address."""
    return hub.private_address if _on_loopback(hub) else hub.address


def role_variables(course: Course, hosts: list[Host]) -> dict:
    """The inventory variables of roles/tls and of roles/proxy's HTTPS side; none of them secret."""
    # Every course is HTTPS (the descriptor has no way back to plain HTTP).
    variables: dict = {"tls_enabled": True, "tls_domain": course.domain,
                       "tls_webroot": ACME_WEBROOT, "proxy_acme_webroot": ACME_WEBROOT}
    hub = _hub(hosts)
    if isinstance(course.tls, AcmeTls):
        live = f"{ACME_LIVE_DIR}/{course.domain}"
        chain = f"{live}/chain.pem"
        variables.update(tls_mode="acme", tls_acme_email=course.tls.email or "")
        if course.tls.acme_server != "local":
            variables["tls_acme_directory"] = DIRECTORIES.get(course.tls.acme_server, course.tls.acme_server)
    else:
        live = f"{FILES_DIR}/{course.domain}"
        chain = f"{live}/fullchain.pem"
        variables.update(tls_mode="files", tls_certificate_source=str(Path(course.tls.certificate).resolve()),
                         tls_key_source=str(Path(course.tls.key).resolve()))
    variables.update(
        proxy_tls_certificate=f"{live}/fullchain.pem", proxy_tls_key=f"{live}/privkey.pem",
        proxy_tls_trusted_certificate=chain,
        # Hosts on this machine publish 443 on another port: HTTP redirects there.
        proxy_https_port=hub.https_port if _on_loopback(hub) and hub.https_port else 443,
    )
    return variables


def public_url(course: Course, hosts: list[Host]) -> str:
    """Where students open the hub: https on the course's domain (on the published port for hosts on this machine)."""
    hub = _hub(hosts)
    if _on_loopback(hub) and hub.https_port:
        return f"https://{course.domain}:{hub.https_port}"
    return f"https://{course.domain}"


def summary(course: Course) -> dict[str, str | None]:
    """How the course's hub is served, for `plan` and `validate`: always HTTPS, with which certificate."""
    url = f"https://{course.domain}"
    if isinstance(course.tls, FileTls):
        return {"url": url, "certificate": f"the institution's certificate {course.tls.certificate}",
                "acme_directory": None, "needs": f"the certificate must name {course.domain} and match its key"}
    server = course.tls.acme_server
    http01 = f"{course.domain} must resolve to the hub host and its port 80 be reachable from the ACME server (HTTP-01)"
    described = {
        "local": ("the embedded ACME server on this machine (pebble); `create` prints its root CA for browsers "
                  "to trust", "nothing: hubfleet starts it and answers its DNS"),
        "letsencrypt": ("Let's Encrypt, trusted by every browser", http01.replace("the ACME server", "the internet")),
        "letsencrypt-staging": ("Let's Encrypt's staging server (browsers do not trust it: for trials)", http01),
    }
    certificate, needs = described.get(server, (f"the ACME server {server}", http01))
    return {"url": url, "certificate": certificate, "acme_directory": DIRECTORIES.get(server, server), "needs": needs}


def ca_certificate(state_dir: Path, course: Course) -> Path | None:
    """The CA certificate a browser must trust for this course: the embedded pebble's root, else none."""
    if isinstance(course.tls, AcmeTls) and course.tls.acme_server == "local":
        return acme_local.acme_dir(state_dir) / "root.pem"
    return None


def trust(state_dir: Path, course: Course) -> bool | str:
    """What a client of the hub verifies against (requests' `verify`)."""
    ca = ca_certificate(state_dir, course)
    return str(ca) if ca else True


# --- checks before any host is touched ------------------------------------------------------


def check_files(course: Course, *, now: dt.datetime | None = None) -> None:
    """An institution's certificate: readable, the key matches, the name covers the domain, not expired."""
    if not isinstance(course.tls, FileTls):
        return
    problems = certificate_file_problems(Path(course.tls.certificate), Path(course.tls.key), course.domain, now=now)
    if problems:
        raise InvalidInput(problems, source="tls")


def certificate_file_problems(cert_path: Path, key_path: Path, domain: str, *,
                              now: dt.datetime | None = None) -> list[FieldProblem]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    except OSError as exc:
        return [FieldProblem("tls.certificate", f"cannot read {cert_path}: {exc.strerror or exc}")]
    except ValueError:
        return [FieldProblem("tls.certificate", f"{cert_path} holds no PEM certificate — give the certificate "
                                                "(and its chain) in PEM, -----BEGIN CERTIFICATE-----")]
    leaf = chain[0]
    problems = []
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except OSError as exc:
        problems.append(FieldProblem("tls.key", f"cannot read {key_path}: {exc.strerror or exc}"))
        key = None
    except TypeError:
        problems.append(FieldProblem("tls.key", f"{key_path} is encrypted — nginx needs it unencrypted "
                                                "(`openssl pkey -in KEY -out KEY.plain`)"))
        key = None
    except ValueError:
        problems.append(FieldProblem("tls.key", f"{key_path} holds no PEM private key"))
        key = None
    if key is not None and _public_bytes(key.public_key()) != _public_bytes(leaf.public_key()):
        problems.append(FieldProblem("tls.key", f"{key_path} does not match the certificate in {cert_path} — "
                                                "give the key the certificate was issued for"))
    names = certificate_names(leaf)
    if not name_matches(domain, names):
        problems.append(FieldProblem("tls.certificate", f"is for {', '.join(names) or 'no DNS name'}, "
                                                        f"not for the course's domain {domain}"))
    if leaf.not_valid_after_utc <= now:
        problems.append(FieldProblem("tls.certificate", f"expired on {leaf.not_valid_after_utc:%Y-%m-%d} — "
                                                        "ask the institution for a current one"))
    elif leaf.not_valid_before_utc > now:
        problems.append(FieldProblem("tls.certificate", f"is not valid before {leaf.not_valid_before_utc:%Y-%m-%d}"))
    return problems


def _public_bytes(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate_names(cert) -> list[str]:
    from cryptography import x509

    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                    .get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        return []


def name_matches(domain: str, names: list[str]) -> bool:
    """RFC 6125: an exact name, or a wildcard standing for exactly the leftmost label."""
    domain = domain.lower().rstrip(".")
    for name in (n.lower().rstrip(".") for n in names):
        if name == domain:
            return True
        if name.startswith("*.") and "." in domain and domain.split(".", 1)[1] == name[2:]:
            return True
    return False


# --- pre-flight before any ACME request -----------------------------------------------------


def ensure_ready(state_dir: Path, course: Course, hosts: list[Host], progress: Progress) -> dict:
    """Before roles/tls may ask an ACME server: it answers, the domain resolves to the proxy host and
    port 80 there is reachable. Starts the embedded pebble for `local`. Returns the role variables
    that depend on the live server."""
    if not isinstance(course.tls, AcmeTls):
        return {}
    hub = _hub(hosts)
    local = course.tls.acme_server == "local"
    if local:
        server = acme_local.ensure_local_acme(state_dir, progress)
        acme_local.ensure_dns_record(server, course.domain, _reached_at(hub), state_dir=state_dir)
        directory, verify = server.directory_url, server.listener_ca
        ca_pem = Path(server.listener_ca).read_text()
    else:
        directory, verify, ca_pem = DIRECTORIES.get(course.tls.acme_server, course.tls.acme_server), True, ""
    problems = [problem for problem in [_directory_problem(directory, course.tls.acme_server, verify)] if problem]
    if local:
        resolved, asked = acme_local.resolve(server, course.domain), "pebble-challtestsrv's DNS"
        expected = {_reached_at(hub)}
    else:
        resolved, asked = _resolve(course.domain), "this machine's resolver"
        expected = {a for a in (hub.address, hub.private_address) if a and not _is_loopback(a)}
    proxy = f"the proxy host {hub.name} ({', '.join(sorted(expected)) or 'no public address'})"
    if not resolved:
        problems.append(f"domain: {course.domain} does not resolve ({asked} has no address for it) — "
                        f"point it at {proxy}")
    elif not set(resolved) & expected:
        problems.append(f"domain: {course.domain} resolves to {', '.join(resolved)}, not to {proxy} — "
                        "fix its DNS record")
    else:
        target = next(a for a in resolved if a in expected)
        if not _port_reachable(target, 80):
            problems.append(f"domain: port 80 of {course.domain} ({target}) is not reachable, and ACME HTTP-01 "
                            "validation needs it — open it to the proxy host (security group, firewall)")
    if problems:
        raise TlsPreflightError("TLS pre-flight failed, no certificate was requested and the hub was not changed:\n  - "
                                + "\n  - ".join(problems), hint="fix the above, then run create again")
    force = local and _served_by_an_older_pebble(state_dir, course, hosts)
    if force:
        progress("the embedded ACME server was restarted (new root CA): the hub gets a new certificate")
    return {"tls_acme_directory": directory, "tls_acme_ca_certificate": ca_pem, "tls_force_renewal": force}


def _directory_problem(url: str, field_value: str, verify: bool | str) -> str | None:
    try:
        response = requests.get(url, timeout=10, verify=verify)
        if response.status_code == 200 and "newOrder" in response.json():
            return None
        reason = f"it answered {response.status_code} without an ACME directory"
    except (requests.RequestException, ValueError) as exc:
        reason = f"{type(exc).__name__}: {_short(exc)}"
    where = url if url == field_value else f"{url} ({field_value})"
    return f"tls.acme_server: the ACME directory {where} is not reachable — {reason}"


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "…"


def _resolve(domain: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(domain, 80, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    return sorted({info[4][0] for info in infos})


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _port_reachable(address: str, port: int, timeout: float = 5.0) -> bool:
    """Whether the network lets us reach the port: an answer, or a refusal from a host that does not
    listen there yet (a stock host gets nginx later); a timeout or no route is a closed path."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def _served_by_an_older_pebble(state_dir: Path, course: Course, hosts: list[Host]) -> bool:
    """pebble makes a new root at each start: a certificate from before no longer chains to it."""
    served = served_certificate(state_dir, course, hosts)
    return served is not None and served.for_domain and not served.trusted


# --- what the hub serves --------------------------------------------------------------------


@dataclass
class ServedCertificate:
    subject: str
    issuer: str
    names: list[str]
    not_after: str
    days_left: int
    for_domain: bool
    trusted: bool
    trust_error: str = ""
    problems: list[str] = field(default_factory=list)  # the hub is not usable over HTTPS
    warnings: list[str] = field(default_factory=list)  # usable, but act soon

    def to_dict(self) -> dict:
        return asdict(self)


def served_certificate(state_dir: Path, course: Course, hosts: list[Host], *,
                       now: dt.datetime | None = None) -> ServedCertificate | None:
    """The certificate the proxy serves for the course's domain (None when nothing answers on HTTPS)."""
    from cryptography import x509

    hub = _hub(hosts)
    port = hub.https_port if _on_loopback(hub) else 443
    if not port:
        return None
    der = _peer_certificate(hub.address, port, course.domain)
    if der is None:
        return None
    cert = x509.load_der_x509_certificate(der)
    now = now or dt.datetime.now(dt.timezone.utc)
    names = certificate_names(cert)
    days_left = (cert.not_valid_after_utc - now).days
    trusted, trust_error = _verifies(hub.address, port, course.domain, trust(state_dir, course))
    served = ServedCertificate(
        subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(), names=names,
        not_after=cert.not_valid_after_utc.isoformat(timespec="seconds"), days_left=days_left,
        for_domain=name_matches(course.domain, names), trusted=trusted, trust_error=trust_error)
    if not served.for_domain:
        served.problems.append(f"the hub serves a certificate for {', '.join(names) or served.subject}, not for "
                               f"{course.domain} (a default certificate?); `hubfleet create` installs the course's")
    elif days_left < 0:
        served.problems.append(f"the hub's certificate expired {-days_left} day(s) ago")
    elif not trusted:
        served.problems.append(f"the hub's certificate does not verify: {trust_error}")
    if served.for_domain and 0 <= days_left < WARN_DAYS:
        served.warnings.append(f"the hub's certificate expires in {days_left} day(s) ({served.not_after}); "
                               "renewal should have happened — see `systemctl status hubfleet-tls-renew` on the hub")
    return served


def _peer_certificate(address: str, port: int, domain: str) -> bytes | None:
    loose = ssl.create_default_context()
    loose.check_hostname, loose.verify_mode = False, ssl.CERT_NONE  # read whatever is served, judge it after
    try:
        with socket.create_connection((address, port), timeout=10) as raw:
            with loose.wrap_socket(raw, server_hostname=domain) as conn:
                return conn.getpeercert(binary_form=True)
    except OSError:
        return None


def _verifies(address: str, port: int, domain: str, verify: bool | str) -> tuple[bool, str]:
    if verify is True:
        import certifi

        # What requests, and so hubfleet's clients, trust.
        verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    context = ssl.create_default_context(cafile=verify)
    try:
        with socket.create_connection((address, port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=domain):
                return True, ""
    except ssl.SSLCertVerificationError as exc:
        return False, exc.verify_message or str(exc)
    except (OSError, ssl.SSLError) as exc:
        return False, str(exc)


# --- reaching a hub on this machine by its name ---------------------------------------------

_loopback_names: dict[str, str] = {}
_lock = threading.Lock()
_original_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    mapped = _loopback_names.get((name or "").lower().rstrip("."))
    return _original_getaddrinfo(mapped or host, *args, **kwargs)


@contextmanager
def reaching(state_dir: Path, course: Course, hosts: list[Host]) -> Iterator[None]:
    """Inside, clients in this process reach the course's hub as a browser trusting its CA would.

    The domain resolves to the hub when that hub is on this machine (Chromium resolves *.localhost to
    loopback, RFC 6761; glibc here does not), or to the hub's public address when only the embedded
    ACME server's DNS knows the name (as a DNS record would): so SNI, Host, hostname checks and
    websocket Origin are a browser's; and the course's CA is trusted even where REQUESTS_CA_BUNDLE is
    set (see `trusting`).
    """
    hub = _hub(hosts)
    ca = ca_certificate(state_dir, course)
    with ExitStack() as stack:
        if _on_loopback(hub):
            stack.enter_context(resolving_to_loopback(course.domain))
        elif isinstance(course.tls, AcmeTls) and course.tls.acme_server == "local" and hub.address:
            stack.enter_context(resolving_to(course.domain, hub.address))
        if ca is not None:
            stack.enter_context(trusting(ca))
        yield


@contextmanager
def trusting(ca: Path) -> Iterator[None]:
    """Inside, requests trusts `ca` besides the bundle it trusted before.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's own `verify`: for the while,
    they name that bundle (or certifi's) plus `ca`.
    """
    import certifi

    names = [name for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if os.environ.get(name)] or ["REQUESTS_CA_BUNDLE"]
    bundles = {}
    for name in names:
        base = os.environ.get(name) or certifi.where()
        combined = ca.parent / f"with-{hashlib.sha256(base.encode()).hexdigest()[:12]}.pem"
        text = Path(base).read_text() + "\n" + ca.read_text()
        if not combined.exists() or combined.read_text() != text:
            combined.write_text(text)
        bundles[name] = str(combined)
    with environ(**bundles):
        yield


def resolving_to_loopback(domain: str):
    """Inside, `domain` resolves to 127.0.0.1 for this process (as *.localhost does in Chromium)."""
    return resolving_to(domain, "127.0.0.1")


@contextmanager
def resolving_to(domain: str, address: str) -> Iterator[None]:
    """Inside, `domain` resolves to `address` for this process (as a hosts-file line would)."""
    key = domain.lower().rstrip(".")
    with _lock:
        socket.getaddrinfo = _getaddrinfo  # idempotent: the wrapper only answers for registered names
        previous = _loopback_names.get(key)
        _loopback_names[key] = address
    try:
        yield
    finally:
        with _lock:
            if previous is None:
                _loopback_names.pop(key, None)
            else:
                _loopback_names[key] = previous
