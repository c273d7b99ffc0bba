"""How a playbook run ends: an interrupted run stops hubfleet, a failed one is a ProvisionError.

ansible-runner itself is a stand-in here (it answers as it does after catching SIGINT: status
"canceled", rc 254); every real run goes through it in the integration tests.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from hubfleet import ansible
from hubfleet.errors import ProvisionError


def runner_ending(monkeypatch, status: str, rc: int) -> None:
    monkeypatch.setitem(sys.modules, "ansible_runner", SimpleNamespace(run=lambda **_: SimpleNamespace(status=status,
                                                                                                       rc=rc)))


def test_a_run_cancelled_by_a_signal_interrupts_hubfleet(monkeypatch, tmp_path):
    runner_ending(monkeypatch, "canceled", 254)
    with pytest.raises(KeyboardInterrupt):
        ansible.run_playbook("site.yml", workdir=tmp_path, inventory=tmp_path / "inventory.yml")
    assert not (tmp_path / "runner" / "secrets.yml").exists(), "the secrets file is gone however it ends"


def test_a_failed_run_is_a_provision_error(monkeypatch, tmp_path):
    runner_ending(monkeypatch, "failed", 2)
    with pytest.raises(ProvisionError, match="site.yml: ansible-runner ended failed"):
        ansible.run_playbook("site.yml", workdir=tmp_path, inventory=tmp_path / "inventory.yml")


def test_a_role_beginning_is_a_step_and_its_tasks_are_detail(monkeypatch, tmp_path):
    """The events ansible-runner hands over, in the order a run sends them: each role's argument check
    becomes a step named by the role's description; every other task start is a task."""
    starts = ["Validating arguments against arg spec 'main' - JupyterHub for one course, students in Docker containers",
              "Install the institution's certificate", "Write jupyterhub_config.py"]

    def run(**kwargs):
        for task in starts:
            kwargs["event_handler"]({"event": "playbook_on_task_start", "event_data": {"task": task}})
        return SimpleNamespace(status="successful", rc=0)

    monkeypatch.setitem(sys.modules, "ansible_runner", SimpleNamespace(run=run))
    seen: list[tuple[str, str]] = []
    ansible.run_playbook("site.yml", workdir=tmp_path, inventory=tmp_path / "inventory.yml",
                         progress=lambda kind, message: seen.append((kind, message)))
    assert seen == [("step", "JupyterHub for one course, students in Docker containers"),
                    ("task", "Install the institution's certificate"), ("task", "Write jupyterhub_config.py")]
