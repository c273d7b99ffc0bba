"""A kernel running code counts as the student's activity, so the idle culler never stops a computation.

Jupyter Server reports to the hub the last time anything happened: an API request, a message from a
kernel, a terminal's output. A long computation that prints nothing (a model training for an hour,
`time.sleep`) sends no message after its first "busy", so for the hub the student is idle and
jupyterhub-idle-culler stops the server mid-computation after the course's idle_timeout, losing the
kernel's state. hubfleet's pressure service already spares servers whose kernel is busy; this makes the
idle culler agree: while any kernel is busy, the server's last activity is now.

Jupyter Server counts every setting whose name ends with `_last_activity` (ServerApp.last_activity), and
jupyterhub-singleuser sends that time to the hub each activity interval, so the hub's record, the idle
culler and the server's /api/status all see it. The course's max_age still stops a server that runs
for ever.
"""

from __future__ import annotations

from datetime import datetime, timezone

from tornado.ioloop import PeriodicCallback

SETTING = "hubfleet_computing_last_activity"
EVERY_MS = 20_000  # well inside the hub's activity interval (60 s on hubfleet's courses)


def busy_kernels(kernel_manager) -> int:
    """How many of the server's kernels are running code now."""
    count = 0
    for kernel_id in list(kernel_manager.list_kernel_ids()):
        try:
            kernel = kernel_manager.get_kernel(kernel_id)
        except KeyError:  # shut down between the two calls
            continue
        if getattr(kernel, "execution_state", None) == "busy":
            count += 1
    return count


def mark(settings: dict, kernel_manager, now: datetime | None = None) -> bool:
    """Record `now` as activity when a kernel is busy; True when it did."""
    if not busy_kernels(kernel_manager):
        return False
    settings[SETTING] = now or datetime.now(timezone.utc)
    return True


def _load_jupyter_server_extension(serverapp) -> None:
    settings = serverapp.web_app.settings
    callback = PeriodicCallback(lambda: mark(settings, serverapp.kernel_manager), EVERY_MS)
    callback.start()
    settings["hubfleet_computing_callback"] = callback  # kept alive with the server


def _jupyter_server_extension_points():
    return [{"module": "hubfleet_computing"}]
