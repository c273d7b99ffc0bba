"""OpenStack provider: a course's hosts as real servers, through openstacksdk or Terraform.

Pre-flight first (preflight.py: login, flavors, image, networks, volumes, quotas), then the site's
engine (sdk.py or terraform.py) makes what is missing; both hand back the same Host values, which
this class makes reachable the same way (the hub by its floating IP, workers through the hub) and
waits for until every host takes the course's SSH key. The roles then take the stock Debian
image to a course; a baked image (`hubfleet bake openstack`) only makes their install steps no-ops.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from hubfleet.errors import ProvisionError
from hubfleet.flavors import Catalogue, GiB
from hubfleet.providers.base import Host, HostSpec, Progress, Provider
from hubfleet.providers.openstack.cloud import CourseResources, cloud_errors, connect, find, first_line, real_flavors
from hubfleet.providers.openstack.preflight import preflight_specs, real_catalogue, smallest_fitting
from hubfleet.providers.openstack.sdk import SdkEngine
from hubfleet.providers.openstack.terraform import TerraformEngine

if TYPE_CHECKING:
    from hubfleet.providers.openstack.settings import OpenStackSite

BAKED_PREFIX = "hubfleet-host-"  # + the bake's content tag: what `host_image: auto` looks for
SSH_RETRY = 3.0  # seconds between login attempts
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR")


class OpenStackProvider(Provider):
    """Servers on an OpenStack cloud; `engine: sdk` (openstacksdk) or `engine: terraform` in site.yaml."""

    name = "openstack"
    baked_prefix = BAKED_PREFIX
    acme_server = "letsencrypt"  # public hosts: a certificate every browser trusts

    def __init__(self, course_name: str, workdir: Path, progress: Progress | None = None, *,
                 site: "OpenStackSite | None" = None, connection=None):
        super().__init__(course_name, workdir, progress)
        report = self.progress
        self._step = "connecting"

        def progress_and_remember(message: str) -> None:
            self._step = message  # so a cloud error can say which step it broke
            report(message)

        self.progress = progress_and_remember
        self._site = site
        self._conn = connection

    # --- plumbing ----------------------------------------------------------------------

    @property
    def site(self) -> "OpenStackSite":
        if self._site is None:
            from hubfleet.providers.openstack.settings import load_openstack_site

            # workdir is <state-dir>/instances/<course> (or <state-dir>/bake/openstack): the site file sits in the state dir.
            self._site = load_openstack_site(self.workdir.parent.parent)
        return self._site

    @property
    def conn(self):
        if self._conn is None:
            self._conn = connect(self.site)
        return self._conn

    @property
    def found(self) -> CourseResources:
        return CourseResources(self.conn, self.course_name)

    @property
    def key_path(self) -> Path:
        """The course's private SSH key, where hubfleet keeps it (ansible.ensure_ssh_key)."""
        return self.workdir / "secrets" / "id_ed25519"

    def engine(self, kind: str | None = None) -> SdkEngine | TerraformEngine:
        kind = kind or self.site.engine
        if kind == "terraform":
            return TerraformEngine(self.conn, self.site, self.course_name, self.workdir, self.progress,
                                   self._record_name, lambda: {f.name: f for f, _ in real_flavors(self.conn)})
        return SdkEngine(self.conn, self.site, self.course_name, self.progress, self._record_name, self._write_note)

    @contextmanager
    def _cloud_errors(self, action: str) -> Iterator[None]:
        """Cloud API errors as one ProvisionError naming the step; nothing else is swallowed."""
        try:
            yield
        except cloud_errors() as exc:
            raise ProvisionError(f"{action} of course {self.course_name!r} failed while {self._step!r}: "
                                 f"{first_line(exc)}",
                                 hint="fix the cause and run the same command again: it resumes") from None

    def _record_name(self) -> str | None:
        if self.domain:
            return self.domain.rstrip(".") + "."
        return f"{self.course_name}.{self.site.dns_zone}" if self.site.dns_zone else None

    def _write_note(self, name: str, text: str) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / name).write_text(text)

    # --- the interface -------------------------------------------------------------------

    def catalogue(self) -> Catalogue:
        return real_catalogue(self.site, connection=self._conn)

    def check(self, specs: list[HostSpec]) -> list[str]:
        report = preflight_specs(self.site, self.course_name, specs, connection=self._conn)
        if report.ok:
            with self._cloud_errors("pre-flight"):
                try:
                    self.boot_image(say=False)
                except ProvisionError as exc:
                    report.problems.append(exc.message + (f" — {exc.hint}" if exc.hint else ""))
        return report.problems

    def ensure_hosts(self, specs: list[HostSpec], ssh_public_key: str) -> list[Host]:
        if not specs or specs[0].role != "hub":
            raise ProvisionError("the first host of a plan must be the hub")
        self.progress(f"pre-flight on {self.site.cloud_name() or 'the OS_* cloud'}")
        report = preflight_specs(self.site, self.course_name, specs, connection=self._conn)
        report.raise_for_problems()
        for note in report.notes:
            self.progress(note)
        with self._cloud_errors("create"):
            image = self.boot_image()
            hosts = self.reachable(self.engine().apply(specs, ssh_public_key, report.flavors, image))
        if self.site.wait_ssh:
            self.wait_for_logins(hosts)
        self._save_hosts(hosts)
        return hosts

    def hosts(self) -> list[Host]:
        with self._cloud_errors("listing the hosts"):
            return self.reachable(self.engine().hosts())

    def remove_hosts(self, names: list[str]) -> None:
        """These servers and what is theirs alone (floating IPs, ports, data volumes); nothing else."""
        if not names:
            return
        with self._cloud_errors("removing hosts"):
            self.engine().remove(names)
            if self.site.engine != "sdk":
                self.engine("sdk").remove(names)  # anything of theirs the module's state did not know
            left = [s.name for s in self.found.servers() if s.name in names]
        if left:
            raise ProvisionError(f"server(s) {', '.join(left)} of course {self.course_name!r} are still there",
                                 hint="run the same command again")
        self._save_hosts(self.hosts())

    def destroy_hosts(self) -> None:
        with self._cloud_errors("destroy"):
            if self.site.engine != "sdk":
                self.engine().destroy()
            self.engine("sdk").destroy()  # also sweeps anything tagged that Terraform's state did not know
            left = self.leftovers()
        if left:
            raise ProvisionError(
                f"{len(left)} resource(s) of course {self.course_name!r} are still there after destroy:\n"
                + "\n".join(f"  - {item}" for item in left),
                hint="run destroy again; if they stay, delete them in the cloud's dashboard and report it")
        (self.workdir / "hosts.json").unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        with self._cloud_errors("listing what is left"):
            return self.found.leftovers(self.site.dns_zone)

    # --- reaching the hosts ----------------------------------------------------------------------

    def reachable(self, hosts: list[Host]) -> list[Host]:
        """The hosts with how Ansible reaches them: the hub at its floating IP, the others through it."""
        hub = next((h for h in hosts if h.role == "hub" and h.extra.get("floating_ip")), None)
        if hub is None:
            return hosts
        jump = shlex.join(["ssh", "-i", str(self.key_path), *SSH_OPTIONS, "-W", "%h:%p",
                           f"{hub.ssh_user}@{hub.address}"])
        out = []
        for host in hosts:
            if host.role != "hub":
                host = Host.from_dict({**host.to_dict(), "extra": {
                    **host.extra, "ansible_ssh_common_args": f"-o ProxyCommand={shlex.quote(jump)}"}})
            out.append(host)
        return out

    def login_command(self, host: Host, command: str = "true") -> list[str]:
        """ssh as Ansible will: the course key, the host's user, through the hub for a worker."""
        return ["ssh", "-i", str(self.key_path), "-p", str(host.ssh_port), *SSH_OPTIONS, "-o", "ConnectTimeout=10",
                *shlex.split(host.extra.get("ansible_ssh_common_args", "")), f"{host.ssh_user}@{host.address}",
                command]

    def wait_for_logins(self, hosts: list[Host]) -> None:
        """Until every host takes the course's key (cloud-init has put it in place); bounded by ssh_timeout."""
        started = time.monotonic()
        deadline = started + self.site.ssh_timeout
        pending = list(hosts)
        last: dict[str, str] = {}
        self.progress(f"waiting until {len(pending)} host(s) take SSH logins with the course's key")

        def attempt(host: Host) -> str:
            try:
                result = subprocess.run(self.login_command(host), capture_output=True, text=True, timeout=30)
            except subprocess.TimeoutExpired:
                return "no answer in 30 s"
            return "" if result.returncode == 0 else (result.stderr.strip().splitlines() or ["refused"])[-1]

        while pending:
            with ThreadPoolExecutor(max_workers=min(8, len(pending))) as pool:
                answers = list(zip(pending, pool.map(attempt, pending)))
            for host, problem in answers:
                if problem:
                    last[host.name] = problem
                else:
                    self.progress(f"{host.name} takes SSH logins ({time.monotonic() - started:.0f} s)")
            pending = [host for host, problem in answers if problem]
            if pending and time.monotonic() > deadline:
                raise ProvisionError(
                    f"{', '.join(h.name for h in pending)} took no SSH login within {self.site.ssh_timeout} s ("
                    + "; ".join(f"{h.name}: {last[h.name]}" for h in pending) + ")",
                    hint=f"check that operator_cidr {self.site.operator_cidr} is where you connect from and the "
                    "servers' console logs (`openstack console log show`); then run the same command again")
            if pending:
                time.sleep(SSH_RETRY)

    def _save_hosts(self, hosts: list[Host]) -> None:
        self._write_note("hosts.json", json.dumps([h.to_dict() for h in hosts], indent=2) + "\n")

    # --- images ----------------------------------------------------------------------------------

    def _image(self, name_or_id: str):
        image = find(self.conn.image.find_image, name_or_id)
        return image if image is not None and image.status == "active" else None

    def baked_image_name(self, stock) -> str:
        """The name of the image baked from `stock` with the current roles' install steps."""
        from hubfleet.baking import baked_tag  # what a bake runs is the bake's to say

        return self.baked_prefix + baked_tag(f"glance:{stock.id}")

    def boot_image(self, *, say: bool = True):
        """The image new servers boot, as the site's host_image asks (see settings.py)."""
        progress = self.progress if say else (lambda message: None)
        choice = self.site.host_image
        if choice not in ("auto", "baked", "stock"):
            image = self._image(choice)
            if image is None:
                raise ProvisionError(f"host_image {choice!r} is not an active image in the cloud",
                                     hint="bake one (`hubfleet bake openstack`) or fix host_image in site.yaml")
            return image
        stock = self._image(self.site.image)
        if stock is None:
            raise ProvisionError(f"image {self.site.image!r} is not an active image in the cloud",
                                 hint="upload a Debian 12 cloud image or change `image:` in site.yaml")
        if choice == "stock":
            progress(f"hosts start from the stock image {stock.name}")
            return stock
        baked = self._image(self.baked_image_name(stock))
        if baked is not None:
            progress(f"hosts start from the baked image {baked.name}")
            return baked
        if choice == "baked":
            raise ProvisionError(f"host_image is baked, but no image is baked from {self.site.image} for the "
                                 "current roles", hint="run `hubfleet bake openstack`, or set host_image: auto")
        progress(f"hosts start from the stock image {stock.name} (`hubfleet bake openstack` makes them start "
                 "faster)")
        return stock

    def bake(self, ssh_public_key: str, configure: Callable[[Host], None]) -> str:
        """A server from the stock image, configured by `configure` (playbooks/bake.yml), stopped and
        saved to Glance as hubfleet-host-<tag>; the server and its network are removed after."""
        with self._cloud_errors("bake"):
            stock = self._image(self.site.image)
            if stock is None:
                raise ProvisionError(f"image {self.site.image!r} is not an active image in the cloud",
                                     hint="upload a Debian 12 cloud image or change `image:` in site.yaml")
            name = self.baked_image_name(stock)
            if self._image(name) is not None:
                self.progress(f"{name} is baked already for the current roles")
                return name
            flavor = smallest_fitting([f for f, _ in real_flavors(self.conn)], 1, 2 * GiB)
            if flavor is None:
                raise ProvisionError("the cloud has no flavor with 1 vCPU and 2 GiB to bake on")
            spec = HostSpec("hub", flavor.name, flavor.vcpus, flavor.ram_bytes, 0)
            sdk = self.engine("sdk")
            self.destroy_hosts()  # what an interrupted bake left
            try:
                host = self.reachable(sdk.apply([spec], ssh_public_key, {}, stock))[0]
                self.wait_for_logins([host])
                configure(host)
                server = self.conn.compute.get_server(host.extra["server_id"])
                self.progress(f"stopping {server.name} and saving it to the image service as {name}")
                self.conn.compute.stop_server(server)
                self.conn.compute.wait_for_server(server, status="SHUTOFF", interval=2, wait=self.site.active_timeout)
                image = self.conn.compute.create_server_image(
                    server, name, metadata={"hubfleet_baked_from": stock.id, "hubfleet_image": "host"},
                    wait=True, timeout=self.site.active_timeout)
                self.progress(f"baked {name} ({image.id})")
            finally:
                self.destroy_hosts()
        return name
