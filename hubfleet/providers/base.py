"""The provider interface. Everything outside hubfleet/providers/ talks to this, never to a backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

Progress = Callable[[str], None]


@dataclass(frozen=True)
class HostSpec:
    """One host the plan asks for."""

    role: str  # "hub" (hub + proxy, Swarm manager) or "worker"
    flavor: str
    vcpus: float
    ram_bytes: int
    disk_bytes: int


@dataclass(frozen=True)
class Host:
    """One provisioned host, as Ansible and the health check reach it."""

    name: str  # inventory hostname, e.g. "workshop-hub"
    role: str  # "hub" or "worker"
    address: str  # what Ansible connects to (127.0.0.1 for Docker hosts)
    ssh_port: int
    ssh_user: str = "root"  # a non-root user must have passwordless sudo (the playbooks become root)
    private_address: str = ""  # what the other hosts of the course reach it at
    http_port: int | None = None  # where the proxy's port 80 answers from this machine
    https_port: int | None = None  # where the proxy's port 443 answers from this machine
    data_volume_id: str = ""  # the cloud's id of an attached data volume (roles/engine mounts it), "" = none
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Host":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


class Provider(ABC):
    """Where a course's hosts come from. One subclass per backend, in its own module."""

    name: ClassVar[str]

    def __init__(self, course_name: str, workdir: Path, progress: Progress | None = None):
        self.course_name = course_name
        self.workdir = Path(workdir)  # the course's private state directory (keys, tfstate...)
        self.progress: Progress = progress or (lambda message: None)
        self.domain: str | None = None  # the course's DNS name, for backends that manage DNS records

    @abstractmethod
    def ensure_hosts(self, specs: list[HostSpec], ssh_public_key: str) -> list[Host]:
        """Create what is missing so that one host per spec runs and answers SSH; idempotent."""

    @abstractmethod
    def hosts(self) -> list[Host]:
        """The course's hosts as they are now (empty when none exist)."""

    def ensure_image(self, image: str) -> bool:
        """Put the course image on every host by a faster way than Ansible's, when the backend has one.

        True: every host has it now. False (the default): roles/image pulls it or sends it over SSH.
        """
        return False

    @abstractmethod
    def destroy_hosts(self) -> None:
        """Remove every resource of the course; idempotent, resumable after an interruption."""

    def remove_hosts(self, names: list[str]) -> None:
        """Remove these hosts (already emptied of students' work) and what belongs to them alone."""
        from hubfleet.errors import HubfleetError

        raise HubfleetError(f"the {self.name} provider cannot remove single hosts yet",
                            hint="keep the hosts, or archive and recreate the course with fewer")

    def bake(self, ssh_public_key: str, configure: Callable[["Host"], None]) -> str:
        """Make a baked host image: start a stock host that takes this key, `configure(host)` it (the
        bake playbook runs there), save it as an image, remove the host; returns the image's name."""
        from hubfleet.errors import HubfleetError

        raise HubfleetError(f"the {self.name} provider cannot bake host images yet",
                            hint="its hosts start from the stock image; the roles install everything")

    @abstractmethod
    def leftovers(self) -> list[str]:
        """Anything still labelled/tagged with the course (should be empty after destroy)."""

    def inventory_vars(self) -> dict:
        """Extra Ansible variables every host of this backend needs."""
        return {}

    def cpu_cores(self, hosts: list[Host]) -> float | None:
        """Cores these hosts really have together, when less than their flavors say (None: as planned)."""
        return None

    def catalogue(self):
        """The flavors this backend really offers (a flavors.Catalogue), or None for the packaged one."""
        return None

    def check(self, specs: list[HostSpec]) -> list[str]:
        """Pre-flight: reasons the plan cannot be provisioned (empty when it can)."""
        return []
