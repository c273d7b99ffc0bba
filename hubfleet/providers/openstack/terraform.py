"""The Terraform engine: terraform/openstack run for one course, its outputs turned into hosts.

The module is copied into `<workdir>/terraform/` on every run (so `.terraform/`, the lock file
and `terraform.tfstate` stay with the course, never in hubfleet's tree) and driven through
python-terraform. python-terraform 0.10.1 imports and runs on Python 3.11, but some of its
helpers predate Terraform 0.15: `destroy()` passes `-force` (removed in 0.15) and `output()`
returns None on any error. So every command goes through `Terraform.cmd()` with the flags
Terraform 1.x takes, and failures are raised with Terraform's own message.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from hubfleet.environ import environ
from hubfleet.errors import ProvisionError
from hubfleet.flavors import Flavor
from hubfleet.providers.base import Host, HostSpec, Progress
from hubfleet.providers.openstack.names import host_name, worker_index
from hubfleet.providers.openstack.preflight import data_volume_gib
from hubfleet.providers.openstack.userdata import cloud_init

if TYPE_CHECKING:
    from hubfleet.providers.openstack.settings import OpenStackSite

TFVARS = "hubfleet.tfvars.json"
PLAN_FILE = "hubfleet.tfplan"
SKIP = {".terraform", ".terraform.lock.hcl", "terraform.tfstate", "terraform.tfstate.backup", TFVARS, PLAN_FILE}


def default_module_dir() -> Path:
    """hubfleet's own terraform/openstack module (next to the package in a source checkout)."""
    return Path(__file__).resolve().parents[3] / "terraform" / "openstack"


class TerraformRunner:
    """init / plan / apply / output / destroy for one course's copy of a module."""

    def __init__(self, module_dir: Path, workdir: Path, *, binary: str = "terraform",
                 progress: Progress | None = None):
        self.module_dir = Path(module_dir)
        self.dir = Path(workdir) / "terraform"
        self.binary = binary
        self.progress: Progress = progress or (lambda message: None)

    # --- files ---------------------------------------------------------------------------

    @property
    def tfvars_path(self) -> Path:
        return self.dir / TFVARS

    @property
    def state_path(self) -> Path:
        return self.dir / "terraform.tfstate"

    def ensure_workspace(self) -> Path:
        """Copy the module's files into the course's terraform dir (state and providers stay)."""
        if not (self.module_dir / "main.tf").is_file():
            raise ProvisionError(f"no Terraform module at {self.module_dir} (main.tf missing)",
                                 hint="set terraform_module in site.yaml to the module's directory")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for entry in self.module_dir.iterdir():
            if entry.name in SKIP or entry.name.startswith("."):
                continue
            target = self.dir / entry.name
            if entry.is_dir():
                shutil.copytree(entry, target, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
            else:
                shutil.copy2(entry, target)
        return self.dir

    def write_tfvars(self, values: dict[str, Any]) -> Path:
        """The course's variables as JSON: the tool writes them, people read them (no secrets in them)."""
        self.ensure_workspace()
        self.tfvars_path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
        os.chmod(self.tfvars_path, 0o600)
        return self.tfvars_path

    # --- commands ------------------------------------------------------------------------

    def _terraform(self):
        try:
            from python_terraform import Terraform
        except ImportError:
            raise ProvisionError("python-terraform is not installed",
                                 hint="pip install 'hubfleet[openstack]'") from None
        if shutil.which(self.binary) is None and not Path(self.binary).is_file():
            raise ProvisionError(f"the terraform command {self.binary!r} was not found",
                                 hint="install Terraform >= 1.5 or set terraform_binary in site.yaml")
        return Terraform(working_dir=str(self.dir), terraform_bin_path=self.binary)

    def run(self, step: str, *args: str, ok_codes: tuple[int, ...] = (0,), **options) -> tuple[int, str]:
        """One terraform command in the course's dir; ProvisionError with Terraform's message otherwise."""
        from python_terraform import IsFlagged

        tf = self._terraform()
        # No prompts, no colour, no call home: the machine may have no network but the cloud's API.
        with environ(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1"):
            code, out, err = tf.cmd(step, *args, no_color=IsFlagged, **options)
        if code not in ok_codes:
            detail = "\n".join(line for line in (err or out or "").strip().splitlines()[-15:] if line.strip())
            raise ProvisionError(f"terraform {step} failed in {self.dir} (exit {code}):\n{detail}",
                                 hint="fix the cause and run the same command again: Terraform resumes from its state")
        return code, out or ""

    def init(self) -> None:
        self.ensure_workspace()
        self.progress("terraform init")
        self.run("init", input=False)

    def plan(self) -> bool:
        """Write a plan file; True when it would change something."""
        from python_terraform import IsFlagged

        self.progress("terraform plan")
        code, _ = self.run("plan", input=False, var_file=str(self.tfvars_path), out=PLAN_FILE,
                           detailed_exitcode=IsFlagged, ok_codes=(0, 2))
        return code == 2

    def apply(self) -> None:
        """Apply the last plan file (only what plan showed is done)."""
        self.progress("terraform apply")
        self.run("apply", PLAN_FILE, input=False)
        (self.dir / PLAN_FILE).unlink(missing_ok=True)

    def output(self) -> dict[str, Any]:
        """Every output as {name: value}."""
        from python_terraform import IsFlagged

        _, out = self.run("output", json=IsFlagged)
        data = json.loads(out or "{}")
        return {name: item.get("value") for name, item in data.items()}

    def destroy(self) -> None:
        """Destroy everything in the course's state; safe to run again after an interruption."""
        from python_terraform import IsFlagged

        if not self.state_path.exists():
            self.progress("no Terraform state: nothing to destroy")
            return
        self.progress("terraform destroy")
        self.run("destroy", input=False, auto_approve=IsFlagged, var_file=str(self.tfvars_path))

    def resources(self) -> list[str]:
        """Addresses of the resources in the course's state (empty when there is none)."""
        if not self.state_path.exists():
            return []
        _, out = self.run("state list", ok_codes=(0, 1))
        return [line.strip() for line in out.splitlines() if line.strip()]

    def ensure_applied(self, values: dict[str, Any]) -> dict[str, Any]:
        """Write the variables, init, plan, apply if anything changes; the outputs."""
        self.write_tfvars(values)
        if not (self.dir / ".terraform").exists():  # modules with no provider or submodule re-init: cheap
            self.init()
        if self.plan():
            self.apply()
        else:
            self.progress("terraform: nothing to change")
            (self.dir / PLAN_FILE).unlink(missing_ok=True)
        return self.output()


def terraform_variables(site: "OpenStackSite", course: str, specs: list[HostSpec], ssh_public_key: str,
                        flavor_map: dict[str, str], flavors: dict[str, Flavor], *, record: str | None) -> dict:
    """Inputs of terraform/openstack (and of the built-in test module): the same names, the same types."""
    hosts = []
    for i, spec in enumerate(specs):
        name = host_name(course, i, spec.role)
        real = flavor_map.get(spec.flavor, spec.flavor)
        size = data_volume_gib(spec, flavors[real]) if real in flavors else 0
        hosts.append({"name": name, "role": spec.role, "flavor": real, "volume_size": size,
                      "user_data": cloud_init(name, ssh_public_key)})
    return {
        "cloud": site.cloud_name() or "",
        "course_name": course,
        "image_name": site.image,
        "external_network": site.external_network,
        "network_name": site.network or "",
        "subnet_cidr": site.subnet_cidr,
        "dns_nameservers": list(site.dns_nameservers),
        "operator_cidr": site.operator_cidr,
        "ssh_public_key": ssh_public_key.strip(),
        "ssh_user": site.ssh_user,
        "hosts": hosts,
        "dns_zone": site.dns_zone or "",
        "dns_record": record or "",
    }


def hosts_from_terraform_outputs(outputs: dict[str, Any]) -> list[Host]:
    """Hosts from the module's `hosts` output (a list of objects, hub first); the provider adds how to reach them."""
    hosts = []
    for row in outputs.get("hosts") or []:
        hub = row.get("role") == "hub"
        extra = {"server_id": row.get("id", ""), "floating_ip": row.get("address", "") if hub else ""}
        hosts.append(Host(name=row["name"], role=row["role"], address=row.get("address") or row.get("private_address", ""),
                          ssh_port=22, ssh_user=row.get("ssh_user", "root"),
                          private_address=row.get("private_address", ""), http_port=80 if hub else None,
                          https_port=443 if hub else None, data_volume_id=row.get("volume_id") or "", extra=extra))
    hosts.sort(key=lambda h: (h.role != "hub", worker_index(h.name)))
    return hosts


class TerraformEngine:
    """Creates, lists and removes one course's resources by running terraform/openstack (or the site's module)."""

    def __init__(self, conn, site: "OpenStackSite", course: str, workdir: Path, progress: Progress,
                 record_name: Callable[[], str | None], flavors: Callable[[], dict[str, Flavor]]):
        self.conn = conn
        self.site = site
        self.course = course
        self.progress = progress
        self.record_name = record_name
        self.flavors = flavors  # the cloud's flavors by name, asked only when variables are written
        self.runner = TerraformRunner(site.terraform_module or default_module_dir(), workdir,
                                      binary=site.terraform_binary, progress=progress)

    def variables(self, specs: list[HostSpec], ssh_public_key: str, flavor_map: dict[str, str], image) -> dict:
        values = terraform_variables(self.site, self.course, specs, ssh_public_key, flavor_map, self.flavors(),
                                     record=self.record_name())
        values["image_name"] = image.name
        return values

    def apply(self, specs: list[HostSpec], ssh_public_key: str, flavor_map: dict[str, str], image) -> list[Host]:
        outputs = self.runner.ensure_applied(self.variables(specs, ssh_public_key, flavor_map, image))
        dns = outputs.get("dns_record") or ""
        self.progress(f"DNS record {dns} created" if dns else
                      f"point the course's DNS name at {outputs.get('floating_ip', '')}")
        return hosts_from_terraform_outputs(outputs)

    def hosts(self) -> list[Host]:
        if not self.runner.state_path.exists():
            return []
        return hosts_from_terraform_outputs(self.runner.output())

    def remove(self, names: list[str]) -> None:
        """Apply the course's last variables without these hosts: Terraform deletes them and theirs."""
        values = json.loads(self.runner.tfvars_path.read_text())
        values["hosts"] = [h for h in values["hosts"] if h["name"] not in names]
        self.runner.ensure_applied(values)

    def destroy(self) -> None:
        self.runner.destroy()
