"""The Docker provider: each host of a course is a container booting systemd ("a VM") on this machine.

Hosts boot a stock Debian 12 image (`hubfleet/stock`) or the same baked by the roles' install steps
(`hubfleet/host`); cloud-init reads a NoCloud seed at first boot (login user `debian`, the course's
key), as on a cloud. Their own Docker engine keeps its storage on a named volume. They sit on one
network per course and publish SSH, HTTP and HTTPS on 127.0.0.1 only. Everything the provider
creates carries the labels `hubfleet.managed`, `hubfleet.course` and `hubfleet.role`.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

from hubfleet.errors import ProvisionError
from hubfleet.providers.base import Host, HostSpec, Provider
from hubfleet.providers.docker.images import (
    baked_image,
    ensure_baked_image,
    ensure_notebook_image,
    ensure_stock_image,
    image_id,
    run_docker,
)

NOTEBOOK_REPO = "hubfleet/notebook"
HUB_ROLE = "hub"
WORKER_ROLE = "worker"
MAX_PARALLEL_TRANSFERS = 4
PUBLIC_KEY_TYPES = ("ssh-", "ecdsa-", "sk-")
MIN_MEMORY_BYTES = 256 * 1024**2  # below this systemd, sshd and dockerd do not all fit
LABEL_COURSE = "hubfleet.course"
LABEL_ROLE = "hubfleet.role"
LABEL_MANAGED = "hubfleet.managed"
LOGIN_USER = "debian"  # the stock image's cloud-init user, as on Debian's cloud images
CLOUD_DIR = "/var/lib/cloud"  # the seed goes to seed/nocloud below it (a baked image has no seed directory)
BOOT_FINISHED = "/var/lib/cloud/instance/boot-finished"  # cloud-init's last stage is done

# A host is a container that can run systemd and its own Docker engine; --privileged fails here.
HOST_RUN_FLAGS = [
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--restart", "unless-stopped",
]
PUBLISHED_PORTS = {"ssh": 22, "http": 80, "https": 443}
# The students' containers are not nested in their host here: on this machine's cgroup v1 tree the
# host's engine puts them beside it, each with Docker's default weight of 1024. A host (its hub,
# proxy, engine) weighs as much as 64 of them, so a crowd of servers starting at once cannot starve
# the hub. (Nesting them under the host with the systemd cgroup driver was tried: 100 students
# starting at once spent the machine in the kernel, 100 % system time, and started slower.)
HOST_CPU_SHARES = 64 * 1024


@dataclass(frozen=True)
class PlannedHost:
    """One host to create: its container name, short name and role, and the spec it comes from."""

    name: str  # container and inventory name, e.g. "workshop-worker-1"
    short: str  # "hub", "worker-1"
    role: str
    spec: HostSpec


class DockerProvider(Provider):
    name = "docker"
    acme_server = "local"  # hosts on this machine: the embedded ACME server, no internet needed
    ready_timeout_s: float = 180.0  # boot to SSH and cloud-init done takes ~5 s; leave room for a busy machine

    @property
    def settings(self):
        """The site's settings for this provider (the site file beside the state; defaults without one)."""
        from hubfleet.site import load_site_wide

        # workdir is <state-dir>/instances/<course>: the site file sits in the state dir.
        return load_site_wide(self.workdir.parent.parent).docker

    # --- naming --------------------------------------------------------------------------

    @property
    def network_name(self) -> str:
        return f"hubfleet-{self.course_name}"

    def _labels(self, role: str | None = None) -> list[str]:
        labels = {LABEL_MANAGED: "true", LABEL_COURSE: self.course_name}
        if role:
            labels[LABEL_ROLE] = role
        return [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]

    def _course_filter(self) -> list[str]:
        return ["--filter", f"label={LABEL_COURSE}={self.course_name}"]

    def plan(self, specs: Sequence[HostSpec]) -> list[PlannedHost]:
        """Container names for the specs: the first (hub) is `<course>-hub`, then `<course>-worker-<n>`."""
        problems = plan_problems(specs)
        if problems:
            raise ProvisionError("cannot create the Docker hosts: " + "; ".join(problems))
        planned = [PlannedHost(f"{self.course_name}-hub", "hub", HUB_ROLE, specs[0])]
        for number, spec in enumerate(specs[1:], start=1):
            short = f"worker-{number}"
            planned.append(PlannedHost(f"{self.course_name}-{short}", short, WORKER_ROLE, spec))
        return planned

    # --- the interface -------------------------------------------------------------------

    def check(self, specs: list[HostSpec]) -> list[str]:
        problems = plan_problems(specs)
        if run_docker(["info", "--format", "{{.ServerVersion}}"], check=False, timeout=30).returncode != 0:
            problems.append("the Docker engine does not answer (run scripts/ensure-docker.sh)")
        return problems

    def ensure_hosts(self, specs: list[HostSpec], ssh_public_key: str) -> list[Host]:
        planned = self.plan(specs)
        check_public_key(ssh_public_key)
        image = self.host_image()
        self._ensure_network()
        machine = machine_resources()
        for host in planned:
            self._ensure_running(host, image, machine, ssh_public_key)
        self._wait_until_ready([host.name for host in planned])
        by_name = {host.name: host for host in self.hosts()}
        return [by_name[host.name] for host in planned]

    def hosts(self) -> list[Host]:
        names = run_docker(["ps", "-a", *self._course_filter(), "--format", "{{.Names}}"]).stdout.split()
        if not names:
            return []
        details = json.loads(run_docker(["container", "inspect", *names]).stdout)
        found = [self._host_from_inspect(item) for item in details]
        return sorted(found, key=lambda host: (host.role != HUB_ROLE, _worker_number(host.name)))

    def host_image(self) -> str:
        """The image new hosts boot, as the site asks: the baked one, the stock one, or (auto) baked when current."""
        choice = self.settings.host_image
        if choice != "stock":
            found = baked_image(self.progress)
            if found:
                return found
            if choice == "baked":
                raise ProvisionError("the site asks for baked hosts, but no host image is baked for the current roles",
                                     hint="run `hubfleet bake docker` (a few minutes), then run the command again")
            self.progress("hosts start from the stock image (no current baked one: `hubfleet bake docker` makes it)")
        return ensure_stock_image(self.progress)

    def ensure_image(self, image: str) -> bool:
        """Copy the image into every host's engine with docker exec: the fast path, when every engine runs."""
        wanted = self._outer_image_id(image)
        hosts = self.hosts()
        if not hosts:
            raise ProvisionError(f"course {self.course_name} has no Docker hosts to put {image} on")
        for host in hosts:
            if host.extra.get("state") != "running":
                raise ProvisionError(
                    f"host {host.name} is {host.extra.get('state')}, so {image} cannot be copied to it",
                    hint="run the deployment again: it starts stopped hosts",
                )
        if not all(self._engine_answers(host.name) for host in hosts):
            return False  # a stock host has no engine before the roles run: roles/image sends it over SSH
        # Hosts load in parallel so that a course's workers do not queue behind each other.
        with ThreadPoolExecutor(max_workers=min(len(hosts), MAX_PARALLEL_TRANSFERS)) as pool:
            list(pool.map(lambda host: self._ensure_image_on(host.name, image, wanted), hosts))
        return True

    def bake(self, ssh_public_key: str, configure: Callable[[Host], None]) -> str:
        """hubfleet/host: a stock host container configured by `configure`, then committed as an image."""
        check_public_key(ssh_public_key)

        def bake_into(stock: str, ref: str) -> None:
            planned = PlannedHost(f"{self.course_name}-hub", "hub", HUB_ROLE, HostSpec(HUB_ROLE, "bake", 2, 4 * 1024**3, 0))
            self.destroy_hosts()  # what an interrupted bake left
            try:
                self._ensure_network()
                self._ensure_running(planned, stock, machine_resources(), ssh_public_key)
                self._wait_until_ready([planned.name])
                configure(self.hosts()[0])
                self.progress(f"saving {planned.name} as {ref}")
                run_docker(["stop", "--time", "60", planned.name], timeout=120)
                run_docker(["commit", "--change", "LABEL hubfleet.image=host", "--change", f"LABEL {LABEL_COURSE}=",
                            "--change", f"LABEL {LABEL_MANAGED}=", "--change", f"LABEL {LABEL_ROLE}=",
                            planned.name, ref], timeout=600)
            finally:
                self.destroy_hosts()

        return ensure_baked_image(bake_into, self.progress)

    def destroy_hosts(self) -> None:
        containers = self._labelled("ps", "-aq")
        if containers:
            self.progress(f"removing {len(containers)} host container(s) of {self.course_name}")
            remove_containers(containers)
        volumes = self._labelled("volume", "ls", "-q")
        if volumes:
            self.progress(f"removing {len(volumes)} volume(s) of {self.course_name}")
            run_docker(["volume", "rm", "-f", *volumes], timeout=600)
        networks = self._labelled("network", "ls", "-q")
        if networks:
            run_docker(["network", "rm", *networks])

    def remove_hosts(self, names: list[str]) -> None:
        ours = {h.name for h in self.hosts()}
        for name in names:
            if name not in ours:
                continue
            self.progress(f"removing host {name}")
            remove_containers([name])
            run_docker(["volume", "rm", "-f", f"{name}-docker"], timeout=600)

    def leftovers(self) -> list[str]:
        found = [f"container {name}" for name in self._labelled("ps", "-a", "--format", "{{.Names}}")]
        found += [f"volume {name}" for name in self._labelled("volume", "ls", "--format", "{{.Name}}")]
        found += [f"network {name}" for name in self._labelled("network", "ls", "--format", "{{.Name}}")]
        return found

    def inventory_vars(self) -> dict:
        return {
            # Host keys are new at each boot and ports are ephemeral: known_hosts would only mislead.
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "ansible_python_interpreter": "/usr/bin/python3",
        }

    # --- hosts ---------------------------------------------------------------------------

    def cpu_cores(self, hosts: list[Host]) -> float | None:
        """The hosts' CPU limits together, and never more than this machine's cores, which they share."""
        if not hosts:
            return None
        limits = run_docker(["container", "inspect", "--format", "{{.HostConfig.NanoCpus}}",
                             *[host.name for host in hosts]]).stdout.split()
        machine = float(machine_resources().cpus)
        return min(machine, sum(int(nano) / 1e9 if int(nano) else machine for nano in limits))

    def _labelled(self, *command: str) -> list[str]:
        return run_docker([*command, *self._course_filter()]).stdout.split()

    def _ensure_network(self) -> None:
        if run_docker(["network", "inspect", self.network_name], check=False).returncode == 0:
            return
        self.progress(f"creating network {self.network_name}")
        run_docker(["network", "create", *self._labels(), self.network_name])

    def _ensure_running(
        self, host: PlannedHost, image: str, machine: "MachineResources", public_key: str
    ) -> None:
        """Keep a running host, start a stopped one, create a missing one with its cloud-init seed."""
        state = container_state(host.name)
        if state is None:
            self._create_container(host, image, machine)
            self._write_seed(host.name, public_key)  # before the first boot: cloud-init reads it then
        if state is not None and state["Running"]:
            self._note_stale_image(host.name, image)
            run_docker(["update", "--cpu-shares", str(HOST_CPU_SHARES), host.name])  # hosts made before the weight
            self.progress(f"{host.name} is already running")
            return
        if state is not None:
            self.progress(f"starting the stopped host {host.name}")
        run_docker(["start", host.name])

    def _create_container(self, host: PlannedHost, image: str, machine: "MachineResources") -> None:
        volume = f"{self.course_name}-{host.short}-docker"
        run_docker(["volume", "create", *self._labels(host.role), volume])
        memory, cpus = machine.clamp(host.spec)
        if (memory, cpus) != (host.spec.ram_bytes, float(host.spec.vcpus)):
            self.progress(f"{host.name}: asked {host.spec.ram_bytes // 1024**2} MiB and {host.spec.vcpus:g} CPU, "
                          f"this machine allows {memory // 1024**2} MiB and {cpus:g}")
        self.progress(f"creating host {host.name} ({memory // 1024**2} MiB, {cpus:g} CPU)")
        ports = [arg for port in PUBLISHED_PORTS.values() for arg in ("-p", f"127.0.0.1::{port}")]
        run_docker([
            "create", "--name", host.name, "--hostname", host.name,
            *self._labels(host.role), *HOST_RUN_FLAGS,
            "--network", self.network_name,
            "-v", f"{volume}:/var/lib/docker",
            "--memory", str(memory), "--cpus", f"{cpus:g}", "--cpu-shares", str(HOST_CPU_SHARES),
            *ports, image,
        ])

    def _note_stale_image(self, name: str, image: str) -> None:
        """Tell (never act) when a kept host runs an older host image."""
        result = run_docker(["container", "inspect", "--format", "{{.Config.Image}}", name], check=False)
        current = result.stdout.strip()
        if result.returncode == 0 and current and current != image:
            self.progress(f"{name} runs {current}, not {image}; destroy and recreate the hosts to update it")

    def _write_seed(self, name: str, public_key: str) -> None:
        """cloud-init's NoCloud seed: this host's name and id, and the course's key for the login user."""
        meta = f"instance-id: {name}-{int(time.time())}\nlocal-hostname: {name}\n"
        user = "#cloud-config\n" + json.dumps({"ssh_authorized_keys": [public_key.strip()]}) + "\n"
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for directory in ("seed", "seed/nocloud"):
                info = tarfile.TarInfo(directory)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
                archive.addfile(info)
            for filename, text in (("meta-data", meta), ("user-data", user)):
                data = text.encode()
                info = tarfile.TarInfo(f"seed/nocloud/{filename}")
                info.size, info.mode, info.uid, info.gid, info.mtime = len(data), 0o600, 0, 0, int(time.time())
                archive.addfile(info, io.BytesIO(data))
        run_docker(["cp", "-", f"{name}:{CLOUD_DIR}"], input=buffer.getvalue())

    def _wait_until_ready(self, names: list[str]) -> None:
        """Wait until every host's sshd sends its banner and cloud-init has finished (the key is in place)."""
        deadline = time.monotonic() + self.ready_timeout_s
        started = time.monotonic()
        pending = {name: "not checked yet" for name in names}
        while pending:
            for name in list(pending):
                reason = self._not_ready_reason(name)
                if reason is None:
                    del pending[name]
                    self.progress(f"{name} answers SSH ({time.monotonic() - started:.0f} s)")
                else:
                    pending[name] = reason
            if pending and time.monotonic() > deadline:
                name, reason = next(iter(pending.items()))
                raise ProvisionError(
                    f"host {name} was not ready within {self.ready_timeout_s:.0f} s: {reason}",
                    hint=f"look at `docker logs {name}` and `docker exec {name} systemctl --failed`",
                )
            if pending:
                time.sleep(1)

    def _not_ready_reason(self, name: str) -> str | None:
        state = container_state(name)
        if state is None:
            return "the container disappeared"
        if not state["Running"]:
            raise ProvisionError(
                f"host {name} stopped while booting (exit code {state.get('ExitCode')})",
                hint=f"look at `docker logs {name}`",
            )
        if run_docker(["exec", name, "test", "-e", BOOT_FINISHED], check=False, timeout=30).returncode != 0:
            return "cloud-init has not finished"
        port = published_port(name, PUBLISHED_PORTS["ssh"])
        if port is None or not ssh_banner_answers(port):
            return "SSH does not answer"
        return None

    def _engine_answers(self, name: str) -> bool:
        return run_docker(["exec", name, "docker", "info", "--format", "{{.ServerVersion}}"],
                          check=False, timeout=30).returncode == 0

    def _host_from_inspect(self, item: dict) -> Host:
        name = item["Name"].lstrip("/")
        ports = (item.get("NetworkSettings") or {}).get("Ports") or {}
        networks = (item.get("NetworkSettings") or {}).get("Networks") or {}
        return Host(
            name=name,
            role=item["Config"]["Labels"].get(LABEL_ROLE, WORKER_ROLE),
            address="127.0.0.1",
            ssh_port=_port_from(ports, PUBLISHED_PORTS["ssh"]) or 0,  # 0 while the host is stopped
            ssh_user=LOGIN_USER,
            private_address=(networks.get(self.network_name) or {}).get("IPAddress", ""),
            http_port=_port_from(ports, PUBLISHED_PORTS["http"]),
            https_port=_port_from(ports, PUBLISHED_PORTS["https"]),
            extra={"container_id": item["Id"], "state": item["State"]["Status"], "image": item["Config"]["Image"]},
        )

    # --- images on the hosts -------------------------------------------------------------

    def _outer_image_id(self, image: str) -> str:
        """The image's ID on this machine, building the notebook image when that is what is asked."""
        repo, _, tag = image.partition(":")
        if repo == NOTEBOOK_REPO and tag in ("", "latest"):
            ensure_notebook_image(self.progress)  # hubfleet's :latest follows the current recipe (a cheap check)
        found = image_id(image)
        if found is None and repo == NOTEBOOK_REPO:
            ensure_notebook_image(self.progress)
            found = image_id(image)
        if found is None:
            raise ProvisionError(
                f"image {image} is not on this machine, and hosts cannot pull from a registry here",
                hint=f"load it with `docker load -i FILE.tar` or build it with `docker build -t {image} DIR`, "
                "then run again",
            )
        return found

    def _ensure_image_on(self, host: str, image: str, wanted: str) -> None:
        inner = run_docker(["exec", host, "docker", "image", "inspect", "--format", "{{.Id}}", image],
                           check=False, timeout=60)
        if inner.returncode == 0 and inner.stdout.strip() == wanted:
            self.progress(f"{image} is already on {host}")
            return
        if run_docker(["exec", host, "docker", "image", "inspect", wanted], check=False, timeout=60).returncode == 0:
            run_docker(["exec", host, "docker", "tag", wanted, image])  # same image under another name
            self.progress(f"{image} is already on {host} (named it)")
            return
        self.progress(f"copying {image} to {host}")
        started = time.monotonic()
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        load = subprocess.run(["docker", "exec", "-i", host, "docker", "load"], stdin=save.stdout,
                              capture_output=True, check=False)
        assert save.stdout is not None
        save.stdout.close()
        if save.wait() != 0 or load.returncode != 0:
            raise ProvisionError(
                f"copying {image} to {host} failed: {load.stderr.decode(errors='replace').strip()}",
                hint=f"check the space left on the host's volume: `docker exec {host} df -h /var/lib/docker`",
            )
        self.progress(f"copied {image} to {host} in {time.monotonic() - started:.0f} s")


# --- helpers -------------------------------------------------------------------------------


def remove_containers(containers: list[str], timeout: float = 600) -> None:
    """`docker rm -f -v`, also when a run killed half-way left the engine removing them: wait for that one."""
    deadline = time.monotonic() + timeout
    while True:
        result = run_docker(["rm", "-f", "-v", *containers], check=False, timeout=timeout)
        if result.returncode == 0:
            return
        if "already in progress" not in result.stderr or time.monotonic() > deadline:
            raise ProvisionError(f"`docker rm -f -v` failed: {result.stderr.strip() or result.stdout.strip()}")
        time.sleep(1)
        containers = [c for c in containers if run_docker(["container", "inspect", c], check=False).returncode == 0]
        if not containers:
            return


@dataclass(frozen=True)
class MachineResources:
    """What the engine's machine has; a container cannot ask for more CPUs than exist."""

    memory_bytes: int
    cpus: int

    def clamp(self, spec: HostSpec) -> tuple[int, float]:
        memory = max(MIN_MEMORY_BYTES, min(spec.ram_bytes, self.memory_bytes))
        cpus = max(0.1, min(float(spec.vcpus), float(self.cpus)))
        return memory, round(cpus, 2)


def machine_resources() -> MachineResources:
    info = run_docker(["info", "--format", "{{.MemTotal}} {{.NCPU}}"]).stdout.split()
    return MachineResources(memory_bytes=int(info[0]), cpus=int(info[1]))


def plan_problems(specs: Sequence[HostSpec]) -> list[str]:
    """Reasons the specs cannot become Docker hosts (empty when they can)."""
    if not specs:
        return ["the plan has no hosts"]
    problems = []
    if specs[0].role != HUB_ROLE:
        problems.append(f"the first host must be the hub, not a {specs[0].role}")
    if any(spec.role != WORKER_ROLE for spec in specs[1:]):
        problems.append("only the first host may be the hub; the others must be workers")
    return problems


def check_public_key(public_key: str) -> None:
    """Refuse what cannot be an OpenSSH public key line, before any host depends on it."""
    parts = public_key.strip().split()
    if len(parts) < 2 or "\n" in public_key.strip() or not parts[0].startswith(PUBLIC_KEY_TYPES):
        raise ProvisionError(
            "the course's SSH public key is not an OpenSSH public key line",
            hint="pass the content of the .pub file (e.g. `ssh-ed25519 AAAA... comment`), never the private key",
        )


def container_state(name: str) -> dict | None:
    """The container's State, or None when no container has that name."""
    result = run_docker(["container", "inspect", "--format", "{{json .State}}", name], check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def published_port(name: str, container_port: int) -> int | None:
    """The 127.0.0.1 port that `docker port` reports for the container's TCP port."""
    result = run_docker(["port", name, f"{container_port}/tcp"], check=False)
    for line in result.stdout.splitlines():
        address, _, port = line.rpartition(":")
        if address in ("127.0.0.1", "0.0.0.0") and port.isdigit():
            return int(port)
    return None


def ssh_banner_answers(port: int, timeout: float = 3.0) -> bool:
    """True when something on 127.0.0.1:port speaks SSH (docker's proxy accepts before sshd runs)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            return conn.recv(64).startswith(b"SSH-2.0")
    except OSError:
        return False


def _port_from(ports: dict, container_port: int) -> int | None:
    bindings = ports.get(f"{container_port}/tcp") or []
    for binding in bindings:
        if binding.get("HostPort", "").isdigit():
            return int(binding["HostPort"])
    return None


def _worker_number(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0
