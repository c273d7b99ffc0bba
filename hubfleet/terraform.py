"""Run a Terraform module for one course: per-course variables, state in the course's state dir.

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
from typing import Any

from hubfleet.environ import environ
from hubfleet.errors import ProvisionError
from hubfleet.providers.base import Progress

TFVARS = "hubfleet.tfvars.json"
PLAN_FILE = "hubfleet.tfplan"
SKIP = {".terraform", ".terraform.lock.hcl", "terraform.tfstate", "terraform.tfstate.backup", TFVARS, PLAN_FILE}


def default_module_dir() -> Path:
    """hubfleet's own terraform/openstack module (next to the package in a source checkout)."""
    return Path(__file__).resolve().parent.parent / "terraform" / "openstack"


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
