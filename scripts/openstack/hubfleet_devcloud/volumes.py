"""A Cinder volume driver for hubfleet's development cloud: each volume a file, attached as a loop device.

A volume is a sparse file `volume-<id>` under `hubfleet_volumes_dir`. Attaching it (Cinder's
initialize_connection) binds the file to a loop device and hands Nova its path with the `local`
connection type; the compute driver (hubfleet_devcloud.compute) makes that device appear inside
the server. So a server formats and mounts a real block device, and its data lives in the file
until the volume is deleted.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from oslo_config import cfg
from oslo_log import log as logging

from cinder import exception
from cinder.volume import driver

LOG = logging.getLogger(__name__)
GiB = 1024**3

OPTS = [cfg.StrOpt("hubfleet_volumes_dir", default="/var/lib/hubfleet-devcloud/volumes",
                   help="Where the volumes' files live.")]


def _losetup(*args: str) -> str:
    result = subprocess.run(["losetup", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise exception.VolumeBackendAPIException(data=f"losetup {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


class LoopFileDriver(driver.VolumeDriver):
    """Volumes as sparse files on this machine, attached through loop devices."""

    VERSION = "1.0.0"
    CI_WIKI_NAME = "hubfleet"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.configuration:
            self.configuration.append_config_values(OPTS)
        self.backend_name = (self.configuration.safe_get("volume_backend_name") if self.configuration else None) \
            or "hubfleet-loop"

    @property
    def directory(self) -> str:
        return self.configuration.safe_get("hubfleet_volumes_dir") if self.configuration else OPTS[0].default

    def _path(self, volume) -> str:
        return os.path.join(self.directory, f"volume-{volume.id}")

    def _loops(self, path: str) -> list[str]:
        out = _losetup("-j", path, "-O", "NAME", "-n")
        return [line.strip() for line in out.splitlines() if line.strip()]

    def do_setup(self, context):
        os.makedirs(self.directory, exist_ok=True)

    def check_for_setup_error(self):
        if shutil.which("losetup") is None:
            raise exception.VolumeBackendAPIException(data="losetup (util-linux) is missing")

    def create_volume(self, volume):
        with open(self._path(volume), "wb") as handle:
            handle.truncate(int(volume.size) * GiB)
        return {}

    def delete_volume(self, volume):
        path = self._path(volume)
        if os.path.exists(path):
            for loop in self._loops(path):
                _losetup("-d", loop)
            os.unlink(path)

    def extend_volume(self, volume, new_size):
        path = self._path(volume)
        with open(path, "r+b") as handle:
            handle.truncate(int(new_size) * GiB)
        for loop in self._loops(path):
            _losetup("-c", loop)

    def local_path(self, volume):
        return self._path(volume)

    def create_export(self, context, volume, connector):
        return None

    def ensure_export(self, context, volume):
        return None

    def remove_export(self, context, volume):
        return None

    def initialize_connection(self, volume, connector, **kwargs):
        path = self._path(volume)
        loops = self._loops(path)
        device = loops[0] if loops else _losetup("-f", "--show", path).strip()
        LOG.info("volume %s is attached as %s", volume.id, device)
        return {"driver_volume_type": "local", "data": {"device_path": device, "volume_id": volume.id}}

    def terminate_connection(self, volume, connector, **kwargs):
        # A device still open (mounted in a server) is detached by the kernel when it is closed.
        for loop in self._loops(self._path(volume)):
            _losetup("-d", loop)

    def create_snapshot(self, snapshot):
        raise NotImplementedError("the hubfleet development cloud has no volume snapshots")

    def delete_snapshot(self, snapshot):
        return None

    def _update_volume_stats(self):
        os.makedirs(self.directory, exist_ok=True)
        usage = shutil.disk_usage(self.directory)
        self._stats = {
            "volume_backend_name": self.backend_name, "vendor_name": "hubfleet", "driver_version": self.VERSION,
            "storage_protocol": "local", "total_capacity_gb": usage.total // GiB,
            "free_capacity_gb": usage.free // GiB, "reserved_percentage": 0, "thin_provisioning_support": True,
            "max_over_subscription_ratio": 20.0, "multiattach": False,
        }

    def get_volume_stats(self, refresh=False):
        if refresh or not self._stats:
            self._update_volume_stats()
        return self._stats
