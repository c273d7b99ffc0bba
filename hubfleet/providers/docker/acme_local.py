"""The embedded ACME server: pebble with pebble-challtestsrv as its DNS, one pair per state dir.

`tls: {acme_server: local}` gets its certificate from this real ACME server through the same role
and the same HTTP-01 validation as from Let's Encrypt, with no internet:

- pebble-challtestsrv is the DNS pebble asks: hubfleet maps each course's domain to its proxy
  host (`add-a`), and nothing else resolves.
- pebble validates by fetching http://<domain>/.well-known/acme-challenge/... from the proxy host's
  private address (port 80), exactly as Let's Encrypt would.
- Hosts reach pebble's ACME listener at the gateway of a small Docker network of its own: an
  address of this machine that every course network routes to, that no host's inner Docker engine
  shadows (its subnet is outside Docker's default pools) and that is not public. Everything else
  (management, DNS) listens on 127.0.0.1 only.
- pebble's own listener has no certificate in Debian's package: hubfleet makes a small CA for it
  (kept under the state dir, trusted by the hosts' certbot). pebble's *issuing* root is new at each
  pebble start; it is saved as `root.pem`, the file a browser or client must trust.

Usage outside hubfleet (molecule, demos):
  python -m hubfleet.providers.docker.acme_local ensure STATE_DIR          prints the server as JSON
  python -m hubfleet.providers.docker.acme_local add-a STATE_DIR DOMAIN IP
  python -m hubfleet.providers.docker.acme_local stop STATE_DIR
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from hubfleet.errors import HubfleetError, ProvisionError
from hubfleet.state import write_private

PEBBLE = "pebble"
CHALLTESTSRV = "pebble-challtestsrv"
NETWORK_PREFIX = "hubfleet-acme-"
LABEL_ACME = "hubfleet.acme-local"
# Outside Docker's default pools (172.17-31/16, 192.168/16), so no host's inner engine picks it.
SUBNET_POOL = os.environ.get("HUBFLEET_LOCAL_ACME_SUBNETS", "10.213.0.0/16")
CERT_VALIDITY_S = 90 * 86400  # like Let's Encrypt: renewals happen in a course's lifetime
START_TIMEOUT_S = 20.0


class LocalAcmeError(ProvisionError):
    pass


@dataclass(frozen=True)
class LocalAcme:
    """A running embedded ACME server, as the hosts and hubfleet reach it."""

    directory_url: str  # what the hosts' certbot uses: https://<gateway>:<port>/dir
    listener_ca: str  # path: the CA of pebble's own HTTPS listener (certbot on the hosts trusts it)
    root_ca: str  # path: pebble's issuing root, what browsers and clients trust
    dns_port: int  # pebble-challtestsrv's DNS on 127.0.0.1
    management_port: int  # pebble-challtestsrv's management API on 127.0.0.1
    pebble_management_port: int  # pebble's own management (roots, intermediates) on 127.0.0.1

    def to_dict(self) -> dict:
        return asdict(self)


def acme_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "acme-local"


def network_name(state_dir: Path) -> str:
    digest = hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:10]
    return NETWORK_PREFIX + digest


# --- starting, reusing and stopping ---------------------------------------------------------


def ensure_local_acme(state_dir: Path, progress=lambda message: None) -> LocalAcme:
    """Start pebble and its DNS for this state dir, or reuse the ones already running; idempotent."""
    for binary in (PEBBLE, CHALLTESTSRV):
        if shutil.which(binary) is None:
            raise LocalAcmeError(f"{binary} is not installed: the embedded ACME server (tls.acme_server: local) "
                                 "needs it", hint="apt-get install pebble (Debian's package ships both programs)")
    directory = acme_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    gateway = _ensure_network(state_dir)
    ports = _ensure_ports(directory, gateway)
    listener_ca = _ensure_listener_certificate(directory, gateway)
    server = LocalAcme(
        directory_url=f"https://{gateway}:{ports['acme']}/dir",
        listener_ca=str(listener_ca), root_ca=str(directory / "root.pem"),
        dns_port=ports["dns"], management_port=ports["dns_management"],
        pebble_management_port=ports["pebble_management"],
    )
    if not _running(directory, "challtestsrv", ports["dns_management"]):
        progress(f"starting pebble-challtestsrv (DNS on 127.0.0.1:{ports['dns']})")
        _start(directory, "challtestsrv", [
            CHALLTESTSRV, "-dns01", f"127.0.0.1:{ports['dns']}", "-management", f"127.0.0.1:{ports['dns_management']}",
            "-http01", "", "-https01", "", "-tlsalpn01", "",
            "-defaultIPv4", "", "-defaultIPv6", "",  # only the domains hubfleet maps resolve
        ], ports["dns_management"], "127.0.0.1")
    if not _running(directory, "pebble", ports["acme"], gateway):
        progress(f"starting pebble (ACME directory {server.directory_url})")
        _write_pebble_config(directory, gateway, ports)
        _start(directory, "pebble", [PEBBLE, "-config", str(directory / "pebble-config.json"),
                                     "-dnsserver", f"127.0.0.1:{ports['dns']}"],
               ports["acme"], gateway,
               # No random 0-15 s sleep before validating, no injected bad nonces: a test server, quickly.
               env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"})
        _forget_pebble_root(directory)
    _ensure_root(directory, server)
    for domain, address in _mapped_domains(directory).items():  # challtestsrv keeps records in memory only
        ensure_dns_record(server, domain, address, state_dir=state_dir)
    return server


def stop_local_acme(state_dir: Path) -> None:
    """Stop this state dir's pebble and DNS and remove their network; what is on disk stays."""
    directory = acme_dir(state_dir)
    for name in ("pebble", "challtestsrv"):
        _stop(directory, name)
    from hubfleet.providers.docker.images import run_docker

    network = network_name(state_dir)
    if run_docker(["network", "inspect", network], check=False).returncode == 0:
        run_docker(["network", "rm", network], check=False)


def _pid(directory: Path, name: str) -> int | None:
    try:
        pid = int((directory / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    binary = PEBBLE if name == "pebble" else CHALLTESTSRV
    # A reused pid belongs to something else: ours runs the binary with our config or ports.
    return pid if cmdline and os.path.basename(cmdline[0].decode(errors="replace")) == binary else None


def _running(directory: Path, name: str, port: int, address: str = "127.0.0.1") -> bool:
    return _pid(directory, name) is not None and _port_answers(address, port)


def _start(directory: Path, name: str, argv: list[str], port: int, address: str, env: dict | None = None) -> None:
    _stop(directory, name)
    log = open(directory / f"{name}.log", "ab")
    proc = subprocess.Popen(argv, cwd=directory, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, **(env or {})})
    log.close()
    (directory / f"{name}.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (directory / f"{name}.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise LocalAcmeError(f"{argv[0]} exited at start ({proc.returncode}): {' / '.join(tail)}",
                                 hint=f"see {directory / (name + '.log')}")
        if _port_answers(address, port):
            return
        time.sleep(0.1)
    raise LocalAcmeError(f"{argv[0]} did not answer on {address}:{port} within {START_TIMEOUT_S:.0f} s",
                         hint=f"see {directory / (name + '.log')}")


def _stop(directory: Path, name: str) -> None:
    pid = _pid(directory, name)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            try:
                os.waitpid(pid, os.WNOHANG)  # reap it when we are its parent
            except ChildProcessError:
                pass
            time.sleep(0.05)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
    (directory / f"{name}.pid").unlink(missing_ok=True)


def _port_answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def _ensure_ports(directory: Path, gateway: str) -> dict[str, int]:
    """Ports chosen once and kept: the hosts' renewal configuration names the ACME port."""
    path = directory / "ports.json"
    ports = json.loads(path.read_text()) if path.exists() else {}
    wanted = {"acme": gateway, "pebble_management": "127.0.0.1", "dns": "127.0.0.1", "dns_management": "127.0.0.1"}
    for key, address in wanted.items():
        if key not in ports:
            ports[key] = _free_port(address)
    path.write_text(json.dumps(ports, indent=2) + "\n")
    return ports


def _ensure_network(state_dir: Path) -> str:
    """The gateway address of this state dir's ACME network, creating the network when missing."""
    from hubfleet.providers.docker.images import run_docker

    name = network_name(state_dir)
    found = run_docker(["network", "inspect", name, "--format", "{{json .IPAM.Config}}"], check=False)
    if found.returncode == 0:
        return json.loads(found.stdout)[0]["Gateway"]
    taken = _networks_in_use()
    for subnet in ipaddress.ip_network(SUBNET_POOL).subnets(new_prefix=28):
        if any(subnet.overlaps(other) for other in taken):
            continue
        gateway = str(next(subnet.hosts()))
        made = run_docker(["network", "create", "--label", "hubfleet.managed=true",
                           "--label", f"{LABEL_ACME}={Path(state_dir).resolve()}",
                           "--subnet", str(subnet), "--gateway", gateway, name], check=False)
        if made.returncode == 0:
            return gateway
        if "overlap" not in made.stderr:
            raise LocalAcmeError(f"cannot create the embedded ACME server's network {name}: {made.stderr.strip()}")
    raise LocalAcmeError(f"no free /28 left in {SUBNET_POOL} for the embedded ACME server's network",
                         hint="set HUBFLEET_LOCAL_ACME_SUBNETS to a private range this machine does not use")


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """This machine's routes: a subnet that overlaps one would shadow a real network."""
    out = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True, check=False).stdout
    found = []
    for line in out.splitlines():
        first = line.split()[0] if line.split() else ""
        if first != "default":
            try:
                found.append(ipaddress.ip_network(first, strict=False))
            except ValueError:
                continue
    return found


# --- certificates ---------------------------------------------------------------------------


def _ensure_listener_certificate(directory: Path, gateway: str) -> Path:
    """A CA kept under the state dir and a certificate for pebble's listener on 127.0.0.1 and the gateway."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert_path, ca_key_path = directory / "listener-ca.pem", directory / "listener-ca.key"
    cert_path, key_path = directory / "listener.pem", directory / "listener.key"
    now = dt.datetime.now(dt.timezone.utc)
    if not ca_cert_path.exists() or not ca_key_path.exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hubfleet embedded ACME listener CA")])
        ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
              .not_valid_after(now + dt.timedelta(days=3650))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        write_private(ca_key_path, ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
        ca_cert_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        cert_path.unlink(missing_ok=True)
    addresses = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address(gateway)}
    if cert_path.exists() and key_path.exists():
        current = x509.load_pem_x509_certificate(cert_path.read_bytes())
        names = set(current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                    .get_values_for_type(x509.IPAddress))
        if addresses <= names and current.not_valid_after_utc > now + dt.timedelta(days=30):
            return ca_cert_path
    ca = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hubfleet embedded ACME")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), *(x509.IPAddress(a) for a in sorted(addresses, key=str))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _stop(directory, "pebble")  # it only reads its certificate at start
    return ca_cert_path


def _write_pebble_config(directory: Path, gateway: str, ports: dict[str, int]) -> None:
    config = {"pebble": {
        "listenAddress": f"{gateway}:{ports['acme']}",
        "managementListenAddress": f"127.0.0.1:{ports['pebble_management']}",
        "certificate": str(directory / "listener.pem"),
        "privateKey": str(directory / "listener.key"),
        "httpPort": 80,  # where the proxy hosts answer HTTP-01, as for Let's Encrypt
        "tlsPort": 443,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
        "certificateValidityPeriod": CERT_VALIDITY_S,
    }}
    (directory / "pebble-config.json").write_text(json.dumps(config, indent=2) + "\n")


def _forget_pebble_root(directory: Path) -> None:
    (directory / "root.pem").unlink(missing_ok=True)


def _ensure_root(directory: Path, server: LocalAcme) -> None:
    """Save pebble's issuing root (new at each pebble start): the CA certificate users trust."""
    root = directory / "root.pem"
    if root.exists():
        return
    context = ssl.create_default_context(cafile=server.listener_ca)
    url = f"https://127.0.0.1:{server.pebble_management_port}/roots/0"
    try:
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            pem = response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise LocalAcmeError(f"pebble's management interface did not give its root CA ({url}): {exc}") from None
    root.write_bytes(pem)


# --- DNS ------------------------------------------------------------------------------------


def _mapped_domains(directory: Path) -> dict[str, str]:
    path = directory / "dns.json"
    return json.loads(path.read_text()) if path.exists() else {}


def ensure_dns_record(server: LocalAcme, domain: str, address: str, *, state_dir: Path) -> None:
    """Make `domain` resolve to `address` in pebble's DNS (pebble-challtestsrv `add-a`); kept across restarts."""
    host = domain.rstrip(".") + "."
    try:
        for path, body in (("clear-a", {"host": host}), ("add-a", {"host": host, "addresses": [address]})):
            request = urllib.request.Request(f"http://127.0.0.1:{server.management_port}/{path}",
                                             data=json.dumps(body).encode(), method="POST")
            urllib.request.urlopen(request, timeout=10).close()  # add-a appends: clear first, so it replaces
    except (urllib.error.URLError, OSError) as exc:
        raise LocalAcmeError(f"pebble-challtestsrv did not take the DNS record {domain} -> {address}: {exc}") from None
    path = acme_dir(state_dir) / "dns.json"
    mapped = _mapped_domains(acme_dir(state_dir))
    if mapped.get(domain) != address:
        path.write_text(json.dumps({**mapped, domain: address}, indent=2, sort_keys=True) + "\n")


def resolve(server: LocalAcme, domain: str, timeout: float = 3.0) -> list[str]:
    """The A records pebble would see for `domain`: a plain DNS query to pebble-challtestsrv."""
    query_id = int.from_bytes(os.urandom(2), "big")
    question = b"".join(bytes([len(label)]) + label.encode("idna") for label in domain.rstrip(".").split("."))
    packet = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question + b"\0" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(packet, ("127.0.0.1", server.dns_port))
            answer, _ = sock.recvfrom(4096)
        except OSError as exc:
            raise LocalAcmeError(f"pebble-challtestsrv's DNS (127.0.0.1:{server.dns_port}) does not answer: {exc}")
    return _a_records(answer, query_id)


def _a_records(message: bytes, query_id: int) -> list[str]:
    ident, _flags, questions, answers = struct.unpack(">HHHH", message[:8])
    if ident != query_id:
        return []
    offset = 12
    for _ in range(questions):
        offset = _skip_name(message, offset) + 4
    found = []
    for _ in range(answers):
        offset = _skip_name(message, offset)
        rtype, _rclass, _ttl, length = struct.unpack(">HHIH", message[offset:offset + 10])
        offset += 10
        if rtype == 1 and length == 4:
            found.append(socket.inet_ntoa(message[offset:offset + 4]))
        offset += length
    return found


def _skip_name(message: bytes, offset: int) -> int:
    while True:
        length = message[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:  # a compression pointer ends the name
            return offset + 2
        offset += length + 1


# --- command line (molecule, demos) ---------------------------------------------------------


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["ensure"] and len(argv) == 2:
            print(json.dumps(ensure_local_acme(Path(argv[1]), lambda m: print(m, file=sys.stderr)).to_dict()))
        elif argv[:1] == ["add-a"] and len(argv) == 4:
            ensure_dns_record(ensure_local_acme(Path(argv[1])), argv[2], argv[3], state_dir=Path(argv[1]))
        elif argv[:1] == ["stop"] and len(argv) == 2:
            stop_local_acme(Path(argv[1]))
        else:
            print(__doc__.split("Usage outside hubfleet (molecule, demos):\n")[1], file=sys.stderr)
            return 2
    except HubfleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
