"""hubfleet's Terraform driver, end to end with the real terraform binary.

No Terraform provider can be downloaded here, so the driver runs against
tests/fixtures/terraform-builtin: a module with the same inputs and outputs as
terraform/openstack, built only from Terraform's built-in resources (terraform_data). The
OpenStack module itself is checked with `terraform fmt -check`; `terraform validate` needs the
openstack provider and is not run here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hubfleet.errors import ProvisionError
from hubfleet.flavors import Flavor
from hubfleet.providers.base import HostSpec
from hubfleet.providers.openstack.settings import parse_openstack_site
from hubfleet.providers.openstack.terraform import (
    TerraformRunner,
    default_module_dir,
    hosts_from_terraform_outputs,
    terraform_variables,
)

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = ROOT / "tests" / "fixtures" / "terraform-builtin"
ADOPT = ROOT / "tests" / "fixtures" / "terraform-adopt"  # test_openstack_e2e's: servers that already run
GiB = 1024**3
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOb8Jm3mG0hYV9wq8gYdKkR0eI3bT1m0E0d7n6m3n8Qx hubfleet-test"
FLAVORS = {"m1.medium": Flavor("m1.medium", 2, 4 * GiB, 40 * GiB)}

pytestmark = pytest.mark.skipif(shutil.which("terraform") is None, reason="needs the terraform binary")


def site(**overrides):
    data = {"cloud": "hubfleet-dev", "image": "debian-12", "external_network": "public",
            "operator_cidr": "198.51.100.7/32", "engine": "terraform", "wait_ssh": False,
            "terraform_module": str(BUILTIN)}
    return parse_openstack_site({**data, **overrides})


def specs(workers: int) -> list[HostSpec]:
    spec = dict(flavor="m1.medium", vcpus=2, ram_bytes=4 * GiB, disk_bytes=40 * GiB)
    return [HostSpec(role="hub", **spec)] + [HostSpec(role="worker", **spec) for _ in range(workers)]


def declared(module: Path, kind: str) -> set[str]:
    text = "".join(p.read_text() for p in module.glob("*.tf"))
    return set(re.findall(rf'^{kind} "([a-z_]+)"', text, flags=re.M))


@pytest.mark.parametrize("stand_in", [BUILTIN, ADOPT], ids=["builtin", "adopt"])
def test_stand_in_modules_have_the_same_inputs_and_outputs_as_the_openstack_module(stand_in):
    module = default_module_dir()
    assert declared(stand_in, "variable") == declared(module, "variable")
    assert declared(stand_in, "output") == declared(module, "output")
    # Every key hubfleet writes into the .tfvars.json is a declared input, and nothing else.
    values = terraform_variables(site(), "course", specs(1), KEY, {}, FLAVORS, record=None)
    assert set(values) == declared(module, "variable")


def test_openstack_module_passes_terraform_fmt_check():
    result = subprocess.run(["terraform", "fmt", "-check", "-recursive", "-diff", str(default_module_dir())],
                            capture_output=True, text=True, env={"CHECKPOINT_DISABLE": "1", "PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_terraform_driver_end_to_end_on_builtin_resources_module(tmp_path):
    steps: list[str] = []
    runner = TerraformRunner(BUILTIN, tmp_path / "course", progress=steps.append)
    the_site = site()

    outputs = runner.ensure_applied(terraform_variables(the_site, "tfcourse", specs(1), KEY, {}, FLAVORS,
                                                        record=None))
    hosts = hosts_from_terraform_outputs(outputs)
    assert [(h.name, h.role) for h in hosts] == [("tfcourse-hub", "hub"), ("tfcourse-worker-1", "worker")]
    hub, worker = hosts
    assert hub.address == outputs["floating_ip"] == "203.0.113.100"
    assert hub.private_address == "10.42.0.10" and worker.address == worker.private_address == "10.42.0.11"
    assert hub.http_port == 80 and hub.https_port == 443 and hub.ssh_user == "debian"
    assert hub.extra["floating_ip"] == "203.0.113.100" and worker.extra["floating_ip"] == ""
    assert hub.data_volume_id == worker.data_volume_id == ""  # m1.medium's 40 GiB hold the 40 GiB planned
    assert outputs["dns_record"] == ""

    # Variables and state live in the course's state dir, never in the module's directory.
    tfvars = json.loads((tmp_path / "course" / "terraform" / "hubfleet.tfvars.json").read_text())
    assert tfvars["course_name"] == "tfcourse" and tfvars["hosts"][0]["flavor"] == "m1.medium"
    assert (tmp_path / "course" / "terraform" / "terraform.tfstate").exists()
    assert not list(BUILTIN.glob("*.tfstate*")) and not (BUILTIN / ".terraform").exists()
    assert "terraform.tfstate" in {p.name for p in runner.dir.iterdir()}
    assert 'terraform_data.host["tfcourse-worker-1"]' in runner.resources()

    # Idempotent: the same inputs plan no change; one more worker adds only that host.
    steps.clear()
    again = runner.ensure_applied(terraform_variables(the_site, "tfcourse", specs(1), KEY, {}, FLAVORS, record=None))
    assert "terraform: nothing to change" in steps and "terraform apply" not in steps
    assert again["hosts"] == outputs["hosts"]
    # A worker whose students' data outgrows its flavor's disk gets a data volume: its id comes out.
    large = specs(2)[:2] + [HostSpec(role="worker", flavor="m1.medium", vcpus=2, ram_bytes=4 * GiB, disk_bytes=60 * GiB)]
    bigger = runner.ensure_applied(terraform_variables(the_site, "tfcourse", large, KEY, {}, FLAVORS,
                                                       record="tfcourse.hub.example.edu."))
    assert [h["id"] for h in bigger["hosts"][:2]] == [h["id"] for h in outputs["hosts"]]
    assert len(bigger["hosts"]) == 3
    volumes = [h.data_volume_id for h in hosts_from_terraform_outputs(bigger)]
    assert volumes[:2] == ["", ""] and volumes[2] and 'terraform_data.volume["tfcourse-worker-2"]' in runner.resources()

    runner.destroy()
    assert runner.resources() == []
    runner.destroy()  # a second destroy (as after an interruption) is harmless


def test_terraform_failure_says_which_command_failed(tmp_path):
    runner = TerraformRunner(BUILTIN, tmp_path / "course")
    values = terraform_variables(site(), "tfcourse", specs(0), KEY, {}, FLAVORS, record=None)
    values["hosts"][0]["role"] = "worker"  # the module refuses a plan whose first host is no hub
    with pytest.raises(ProvisionError, match=r"terraform plan failed[\s\S]*first host must be the hub"):
        runner.ensure_applied(values)


def test_terraform_runner_refuses_a_directory_without_a_module(tmp_path):
    with pytest.raises(ProvisionError, match="no Terraform module"):
        TerraformRunner(tmp_path / "nothing", tmp_path / "course").ensure_workspace()
