"""Removing host containers converges after a run killed half-way (the engine still removing them)."""

from __future__ import annotations

import subprocess

import pytest

from hubfleet.errors import ProvisionError
from hubfleet.providers.docker import provider


def fake_engine(monkeypatch, answers):
    calls = []

    def run_docker(args, check=True, timeout=300, input=None):
        calls.append(args[:2])
        code, err = answers.pop(0)
        return subprocess.CompletedProcess(args, code, "", err)

    monkeypatch.setattr(provider, "run_docker", run_docker)
    monkeypatch.setattr(provider.time, "sleep", lambda s: None)
    return calls


def test_a_removal_already_in_progress_is_waited_for(monkeypatch):
    calls = fake_engine(monkeypatch, [
        (1, "Error response from daemon: removal of container c048 is already in progress"),
        (0, ""),  # still there
        (1, "Error response from daemon: removal of container c048 is already in progress"),
        (1, "No such container: c048"),  # gone
    ])
    provider.remove_containers(["c048"])
    assert calls == [["rm", "-f"], ["container", "inspect"], ["rm", "-f"], ["container", "inspect"]]


def test_any_other_failure_is_an_error_with_the_engines_words(monkeypatch):
    fake_engine(monkeypatch, [(1, "Error response from daemon: device or resource busy")])
    with pytest.raises(ProvisionError, match="device or resource busy"):
        provider.remove_containers(["c048"])
