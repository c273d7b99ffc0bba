"""A real OpenLDAP server (Debian's slapd) for the LDAP tests: its own config, data and TLS.

It listens on one address and port only (the course network's gateway), refuses simple binds
below a TLS-strength security factor (`security simple_bind=128`), and logs every operation
(`-d stats`) so a test can see the hub's StartTLS. Debian's slapd and ldap-utils are installed
non-interactively when missing, with service start-up blocked so no system-wide slapd appears.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.test_ca import ServerCertificate

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SUFFIX = "dc=hubfleet,dc=test"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
POLICY_RC = Path("/usr/sbin/policy-rc.d")


@dataclass(frozen=True)
class Account:
    uid: str
    password: str

    @property
    def dn(self) -> str:
        return f"uid={self.uid},{PEOPLE}"


def ensure_slapd_installed() -> None:
    """Install Debian's slapd and ldap-utils if missing, without starting the system's slapd."""
    if Path(SLAPD).exists() and shutil.which("ldapwhoami"):
        return
    blocker = not POLICY_RC.exists()
    if blocker:  # Debian's way to keep a package's daemon from starting on install
        POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "slapd", "ldap-utils"],
                       env=env, check=True, capture_output=True, timeout=900)
    finally:
        if blocker:
            POLICY_RC.unlink(missing_ok=True)


def ssha(password: str) -> str:
    """{SSHA} userPassword value, as slappasswd makes it."""
    salt = os.urandom(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


class Slapd:
    """One slapd process with a directory of people, one group and a read-only search account."""

    def __init__(self, directory: Path, address: str, port: int, certificate: ServerCertificate, ca: Path, *,
                 members: list[Account], others: list[Account], group: str, reader_password: str):
        self.directory, self.address, self.port = directory, address, port
        self.uri = f"ldap://{address}:{port}"
        self.group_dn = f"cn={group},{GROUPS}"
        self.reader_dn = f"cn=hub-reader,{SUFFIX}"
        self.log_path = directory / "slapd.log"
        self._certificate, self._ca = certificate, ca
        self._members, self._others, self._group, self._reader_password = members, others, group, reader_password
        self._process: subprocess.Popen | None = None

    def _config(self) -> str:
        includes = "".join(f"include /etc/ldap/schema/{name}.schema\n" for name in SCHEMAS)
        return f"""{includes}
pidfile {self.directory}/slapd.pid
argsfile {self.directory}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile {self._ca}
TLSCertificateFile {self._certificate.certificate}
TLSCertificateKeyFile {self._certificate.key}
# No password crosses the wire in clear: simple binds need TLS.
security simple_bind=128
database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "cn=admin,{SUFFIX}"
directory {self.directory}/db
access to attrs=userPassword by anonymous auth by self read by * none
access to * by users read by * none
"""

    def _data(self) -> str:
        entries = [
            f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: hubfleet test\ndc: hubfleet\n",
            f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
            f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
            f"dn: {self.reader_dn}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
            f"cn: hub-reader\nuserPassword: {ssha(self._reader_password)}\n",
        ]
        for account in self._members + self._others:
            entries.append(f"dn: {account.dn}\nobjectClass: inetOrgPerson\nuid: {account.uid}\ncn: {account.uid}\n"
                           f"sn: {account.uid}\nuserPassword: {ssha(account.password)}\n")
        members = "".join(f"member: {account.dn}\n" for account in self._members)
        entries.append(f"dn: {self.group_dn}\nobjectClass: groupOfNames\ncn: {self._group}\n{members}")
        return "\n".join(entries)

    def start(self) -> "Slapd":
        (self.directory / "db").mkdir(parents=True, exist_ok=True)
        config = self.directory / "slapd.conf"
        config.write_text(self._config())
        data = self.directory / "data.ldif"
        data.write_text(self._data())
        subprocess.run([SLAPADD, "-f", str(config), "-l", str(data)], check=True, capture_output=True, timeout=60)
        log = open(self.log_path, "wb")
        self._process = subprocess.Popen([SLAPD, "-f", str(config), "-h", f"{self.uri}/", "-d", "stats"],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"slapd exited {self._process.returncode}:\n{self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection((self.address, self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("slapd did not listen within 30 s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def connections_from(self, address: str) -> dict[str, list[str]]:
        """The operations of each connection opened from `address`, in order (conn id -> lines)."""
        text = self.log()
        conns = set(re.findall(rf"conn=(\d+) fd=\d+ ACCEPT from IP={re.escape(address)}:", text))
        found: dict[str, list[str]] = {c: [] for c in conns}
        for line in text.splitlines():
            m = re.search(r"conn=(\d+) ", line)
            if m and m.group(1) in found:
                found[m.group(1)].append(line)
        return found

    def whoami(self, account: Account, *, starttls: bool) -> subprocess.CompletedProcess[str]:
        """ldapwhoami from this machine, with or without StartTLS (-ZZ: fail if it cannot)."""
        cmd = ["ldapwhoami", "-x", "-H", self.uri, "-D", account.dn, "-w", account.password]
        env = {**os.environ, "LDAPTLS_CACERT": str(self._ca), "LDAPTLS_REQCERT": "demand"}
        return subprocess.run(cmd + (["-ZZ"] if starttls else []), capture_output=True, text=True, env=env,
                              timeout=30)
