"""A busy kernel is the student's activity (images/notebook/hubfleet_computing.py).

Here against a stand-in kernel manager with Jupyter Server's two calls; the module runs in each
student's server, and tests/integration/test_pressure.py sees a silent computation outlive the
course's idle_timeout on a real hub while an idle server is culled.
"""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from tests.support.modules import load_file

NOW = datetime(2027, 3, 1, 10, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def computing():
    return load_file("images/notebook/hubfleet_computing.py")


class Kernels:
    """Jupyter Server's MappingKernelManager as the extension calls it; `gone` vanish between calls."""

    def __init__(self, states: dict[str, str], gone: tuple[str, ...] = ()):
        self.states, self.gone = states, gone

    def list_kernel_ids(self):
        return list(self.states)

    def get_kernel(self, kernel_id):
        if kernel_id in self.gone:
            raise KeyError(kernel_id)
        return SimpleNamespace(execution_state=self.states[kernel_id])


def test_a_busy_kernel_is_activity_now(computing):
    settings = {}
    assert computing.mark(settings, Kernels({"a": "idle", "b": "busy"}), NOW) is True
    assert settings[computing.SETTING] == NOW
    assert computing.SETTING.endswith("_last_activity"), "Jupyter Server only counts settings named *_last_activity"


@pytest.mark.parametrize("states", [{}, {"a": "idle"}, {"a": "starting", "b": "idle"}, {"a": "dead"}])
def test_idle_or_no_kernels_leave_the_last_activity_alone(computing, states):
    settings = {computing.SETTING: NOW}
    assert computing.mark(settings, Kernels(states), datetime(2027, 3, 2, tzinfo=timezone.utc)) is False
    assert settings == {computing.SETTING: NOW}


def test_a_kernel_shut_down_while_looked_at_is_skipped(computing):
    assert computing.busy_kernels(Kernels({"a": "busy", "b": "busy"}, gone=("a",))) == 1
    settings = {}
    assert computing.mark(settings, Kernels({"a": "busy"}, gone=("a",)), NOW) is False and settings == {}


def test_the_mark_is_timezone_aware_as_jupyter_servers_own_times(computing):
    settings = {}
    computing.mark(settings, Kernels({"a": "busy"}))
    assert settings[computing.SETTING].tzinfo is not None  # max() over aware and naive times raises
