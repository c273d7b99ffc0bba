"""Peers for the egress tests: networks and servers this run creates, for the workshop's hub host to reach.

Three Docker networks stand for the world outside a course: "internet" (a slice of TEST-NET-3,
203.0.113.0/24) with a package index and another web server, "operator" (a slice of TEST-NET-1,
192.0.2.0/24, listed in the site's egress.operator_networks) and "metadata" (169.254.169.240/28, with a
server at the cloud metadata address 169.254.169.254). The hub host is connected to all three, so it
reaches every peer itself: what its students' servers do not reach is the egress policy's doing, not
routing's. Every server answers GET /who with its own name; the index serves one wheel the test builds.
"""

from __future__ import annotations

import hashlib
import base64
import ipaddress
import secrets
import subprocess
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

IMAGE = "hubfleet/notebook:latest"  # has Python; built by scripts/images.sh before the suite
PORT = 8080
PACKAGE = "hubfleet-egress-probe"
ANSWER = "installed through the course's package-index proxy"


@dataclass
class Peers:
    tag: str
    internet: ipaddress.IPv4Network
    operator: ipaddress.IPv4Network
    metadata: ipaddress.IPv4Network = ipaddress.ip_network("169.254.169.240/28")
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)

    @property
    def index(self) -> str:
        return str(self.internet.network_address + 2)

    @property
    def elsewhere(self) -> str:
        return str(self.internet.network_address + 3)

    @property
    def operator_server(self) -> str:
        return str(self.operator.network_address + 2)

    metadata_server = "169.254.169.254"

    @property
    def servers(self) -> dict[str, str]:
        """name -> address of each peer web server (each answers /who with its name)."""
        return {"index": self.index, "elsewhere": self.elsewhere, "operator": self.operator_server,
                "metadata": self.metadata_server}

    def site_egress(self) -> dict:
        """The site file's `egress` for this run: the index is the only package index, the operator's slice blocked."""
        from hubfleet.egress import DEFAULT_OPERATOR_NETWORKS

        return {"package_indexes": [self.index], "operator_networks": [*DEFAULT_OPERATOR_NETWORKS, str(self.operator)]}


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def plan_peers(tag: str) -> Peers:
    """A /28 of each test range for this run, picked at random so that runs sharing the engine rarely meet."""
    slot = secrets.randbelow(16)
    return Peers(tag=tag, internet=ipaddress.ip_network(f"203.0.113.{slot * 16}/28"),
                 operator=ipaddress.ip_network(f"192.0.2.{slot * 16}/28"))


def build_index(root: Path) -> Path:
    """A PEP 503 index (python -m http.server's listing is one) holding one pure-Python wheel made here."""
    module = "hubfleet_egress_probe"
    name = f"{module}-1.0-py3-none-any.whl"
    files = {
        f"{module}.py": f"ANSWER = {ANSWER!r}\n",
        f"{module}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 1.0\n",
        f"{module}-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hubfleet-tests\nRoot-Is-Purelib: true\n"
                                         "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{module}-1.0.dist-info/RECORD,,")
    files[f"{module}-1.0.dist-info/RECORD"] = "\n".join(record) + "\n"
    folder = root / "simple" / PACKAGE
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / name, "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
    return root


def start(peers: Peers, directory: Path) -> None:
    """The three networks and the four web servers."""
    for kind, net in (("internet", peers.internet), ("operator", peers.operator), ("metadata", peers.metadata)):
        name = f"{peers.tag}-{kind}"
        docker("network", "create", "--subnet", str(net), "--label", f"hubfleet.test={peers.tag}", name)
        peers.networks.append(name)
    roots = {}
    for name in peers.servers:
        root = directory / name
        root.mkdir(parents=True)
        if name == "index":
            build_index(root)
        (root / "who").write_text(name)
        roots[name] = root
    placement = {"index": "internet", "elsewhere": "internet", "operator": "operator", "metadata": "metadata"}
    for name, address in peers.servers.items():
        container = f"{peers.tag}-{name}"
        docker("run", "-d", "--name", container, "--label", f"hubfleet.test={peers.tag}",
               "--network", f"{peers.tag}-{placement[name]}", "--ip", address, "-v", f"{roots[name]}:/srv:ro",
               "--user", "0", "--entrypoint", "python3", IMAGE, "-m", "http.server", str(PORT),
               "--directory", "/srv")
        peers.containers.append(container)


def connect(peers: Peers, host: str) -> None:
    """Put the host (a Docker host of the course) on every peer network, as a router would reach them."""
    for network in peers.networks:
        result = docker("network", "connect", network, host, check=False)
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise RuntimeError(result.stderr)


def stop(peers: Peers, hosts: list[str]) -> None:
    for container in peers.containers:
        docker("rm", "-f", container, check=False)
    for network in peers.networks:
        for host in hosts:
            docker("network", "disconnect", "-f", network, host, check=False)
        docker("network", "rm", network, check=False)


# Run in a student's kernel: every peer, the other student's server, the host's own services, each as
# "open", or the error; pip through the proxy (when PIP is set). Printed as one JSON line.
PROBE = r'''
import json, os, socket, subprocess, sys, urllib.request
TARGETS = {targets!r}
def tcp(address, port):
    s = socket.socket(); s.settimeout(5)
    try:
        s.connect((address, port)); return "open"
    except OSError as exc:
        return type(exc).__name__
    finally:
        s.close()
found = {{name: tcp(*where) for name, where in TARGETS.items()}}
def via_proxy(url):
    try:
        return urllib.request.urlopen(url, timeout=10).read().decode()
    except Exception as exc:
        return f"{{type(exc).__name__}} {{getattr(exc, 'code', '')}}".strip()
found["via-proxy"] = {{name: via_proxy(f"http://{{address}}:{port}/who") for name, address in {servers!r}.items()}}
found["proxy-variable"] = os.environ.get("HTTPS_PROXY", "")
pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
                      "--retries", "0", "--timeout", "10", "--target", "/tmp/egress-probe-{attempt}",
                      "--index-url", "http://{index}:{port}/simple/", "--trusted-host", "{index}", "{package}"],
                     capture_output=True, text=True, timeout=180)
found["pip"] = pip.returncode
found["pip-said"] = (pip.stdout + pip.stderr)[-600:]
if pip.returncode == 0:
    sys.path.insert(0, "/tmp/egress-probe-{attempt}")
    import hubfleet_egress_probe
    found["probe"] = hubfleet_egress_probe.ANSWER
print(json.dumps(found))
'''


def probe_code(peers: Peers, targets: dict[str, tuple[str, int]], attempt: str) -> str:
    """PROBE for these targets (name -> (address, port)); the peers' servers are added."""
    everything = {**{name: (address, PORT) for name, address in peers.servers.items()}, **targets}
    return PROBE.format(targets=everything, servers=peers.servers, port=PORT, index=peers.index, package=PACKAGE,
                        attempt=attempt)
