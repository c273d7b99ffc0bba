"""A Nova compute driver for hubfleet's development cloud: every server is a container that boots.

Each server runs its Glance image (a `docker save` archive, container_format `docker`) on this
machine's Docker engine as a whole Debian system: systemd as PID 1, sshd, cloud-init and, later,
its own Docker engine, with the run flags hubfleet's Docker provider uses for its hosts. What a
hypervisor gives a VM, this driver gives the container:

- its Neutron ports as network interfaces (eth0, eth1...) with the ports' MAC and fixed IPs, on
  the bridge of each port's network (see net.py; routers and floating IPs are net.py's agent's);
- a NoCloud seed (meta-data with the instance id, hostname and key pair; the user data as given),
  read by the image's own cloud-init, as a config drive would be;
- a disk for its Docker engine (a volume on /var/lib/docker, as a VM's disk is not an overlay);
- Cinder volumes as real block devices (loop devices from hubfleet_devcloud.volumes) at the
  mount point Nova chose, with /dev/disk/by-id/virtio-<volume id> as udev names a virtio disk;
- snapshots: the container's file system committed and uploaded to Glance, bootable as any image.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import threading

import os_resource_classes as orc
from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_utils import versionutils

import nova.conf
from nova import exception
from nova.compute import power_state, task_states
from nova.image import glance
from nova.objects import fields as obj_fields
from nova.virt import driver, hardware

from hubfleet_devcloud import net
from hubfleet_devcloud.guest import (
    HOST_RUN_FLAGS,
    IMAGE_REPO,
    LABEL,
    LOOP_MAJOR,
    container_name,
    dns_servers,
    docker_volume,
    seed_files,
    server_ports,
)

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)
STATES = {"running": power_state.RUNNING, "paused": power_state.PAUSED, "restarting": power_state.RUNNING,
          "created": power_state.SHUTDOWN, "exited": power_state.SHUTDOWN, "dead": power_state.CRASHED}


class ContainerDriver(driver.ComputeDriver):
    """Servers as containers booting a stock Debian system on this machine's Docker engine."""

    capabilities = {
        "has_imagecache": False,
        "supports_evacuate": False,
        "supports_migrate_to_same_host": False,
        "supports_attach_interface": False,
        "supports_device_tagging": False,
        "supports_tagged_attach_interface": False,
        "supports_tagged_attach_volume": False,
        "supports_extend_volume": False,
        "supports_multiattach": False,
        "supports_trusted_certs": False,
        "supports_pcpus": False,
        "supports_accelerators": False,
        "supports_remote_managed_ports": False,
        "supports_image_type_raw": True,
    }

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi)
        self._image_api = glance.API()
        self._host = None
        self._image_lock = threading.Lock()

    # --- helpers ------------------------------------------------------------------------

    @staticmethod
    def _docker(*args: str, check: bool = True) -> str:
        try:
            out, _ = processutils.execute("docker", *args, check_exit_code=check)
        except processutils.ProcessExecutionError as exc:
            raise exception.NovaException(f"docker {args[0]} failed: {(exc.stderr or '').strip()[-500:]}")
        return out

    def _inspect(self, instance_uuid: str) -> dict | None:
        try:
            out, _ = processutils.execute("docker", "container", "inspect", container_name(instance_uuid))
        except processutils.ProcessExecutionError:
            return None
        return json.loads(out)[0]

    def _instance_dir(self, instance) -> str:
        return os.path.join(CONF.instances_path, instance.uuid)

    # --- host ----------------------------------------------------------------------------

    def init_host(self, host):
        self._host = host
        self._docker("info", "--format", "{{.ServerVersion}}")

    def get_available_nodes(self, refresh=False):
        return [self._host or CONF.host]

    def get_host_ip_addr(self):
        return CONF.my_ip

    def _memory_mb(self) -> int:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
        return 0

    def _disk_gb(self) -> tuple[int, int]:
        root = self._docker("info", "--format", "{{.DockerRootDir}}").strip() or "/"
        usage = shutil.disk_usage(root)
        return usage.total // 1024**3, usage.used // 1024**3

    def get_available_resource(self, nodename):
        total_disk, used_disk = self._disk_gb()
        return {
            "vcpus": os.cpu_count() or 1, "memory_mb": self._memory_mb(), "local_gb": total_disk,
            "vcpus_used": 0, "memory_mb_used": 0, "local_gb_used": used_disk,
            "hypervisor_type": "docker", "hypervisor_version": versionutils.convert_version_to_int("1.0"),
            "hypervisor_hostname": nodename, "cpu_info": json.dumps({"arch": "x86_64"}),
            "disk_available_least": total_disk - used_disk, "numa_topology": None,
            "supported_instances": [(obj_fields.Architecture.X86_64, obj_fields.HVType.DOCKER,
                                     obj_fields.VMMode.EXE)],
        }

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        # The servers share this machine like overcommitted VMs: nova.conf's allocation ratios say how far.
        inventory = provider_tree.data(nodename).inventory
        ratios = self._get_allocation_ratios(inventory)
        total_disk, _ = self._disk_gb()
        sizes = {orc.VCPU: os.cpu_count() or 1, orc.MEMORY_MB: self._memory_mb(), orc.DISK_GB: max(1, total_disk)}
        reserved = {orc.VCPU: CONF.reserved_host_cpus, orc.MEMORY_MB: CONF.reserved_host_memory_mb,
                    orc.DISK_GB: self._get_reserved_host_disk_gb_from_config()}
        # One server may be as large as the overcommitted machine (a flavor's 16 vCPU share its 2 cores).
        provider_tree.update_inventory(nodename, {
            rc: {"total": total, "min_unit": 1, "max_unit": int(total * ratios[rc]), "step_size": 1,
                 "allocation_ratio": ratios[rc], "reserved": reserved[rc]}
            for rc, total in sizes.items()})

    def default_root_device_name(self, instance, image_meta, root_bdm):
        return "/dev/vda"  # as on a KVM cloud: volumes then become /dev/vdb, /dev/vdc...

    def get_volume_connector(self, instance):
        return {"ip": CONF.my_block_storage_ip, "host": CONF.host, "initiator": "hubfleet-devcloud",
                "multipath": False, "platform": "x86_64", "os_type": "linux"}

    # --- instances -------------------------------------------------------------------------

    def list_instances(self):
        return self.list_instance_uuids()

    def list_instance_uuids(self):
        out = self._docker("ps", "-a", "--filter", f"label={LABEL}", "--format", f'{{{{.Label "{LABEL}"}}}}')
        return [line.strip() for line in out.splitlines() if line.strip()]

    def instance_exists(self, instance):
        return self._inspect(instance.uuid) is not None

    def get_info(self, instance, use_cache=True):
        details = self._inspect(instance.uuid)
        if details is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        return hardware.InstanceInfo(state=STATES.get(details["State"]["Status"], power_state.NOSTATE))

    def instance_on_disk(self, instance):
        return False

    def spawn(self, context, instance, image_meta, injected_files, admin_password, allocations,
              network_info=None, block_device_info=None, power_on=True, accel_info=None):
        image = self._ensure_image(context, image_meta)
        seed = os.path.join(self._instance_dir(instance), "seed")
        os.makedirs(seed, exist_ok=True)
        for name, text in seed_files(instance, network_info).items():
            with open(os.path.join(seed, name), "w") as handle:
                handle.write(text)
        flavor = instance.flavor
        cpus = min(float(flavor.vcpus), float(os.cpu_count() or 1))
        args = ["create", "--name", container_name(instance.uuid), "--label", f"{LABEL}={instance.uuid}",
                "--hostname", instance.hostname or instance.uuid, "--network", "none",
                "--memory", f"{flavor.memory_mb}m", "--cpus", f"{cpus:g}",
                "--device-cgroup-rule", f"b {LOOP_MAJOR}:* rwm",
                "--add-host", f"{instance.hostname or instance.uuid}:127.0.1.1",
                "-v", f"{seed}:/var/lib/cloud/seed/nocloud:ro",
                "-v", f"{docker_volume(instance.uuid)}:/var/lib/docker", *HOST_RUN_FLAGS]
        for server in dns_servers(network_info):
            args += ["--dns", server]
        self._docker("volume", "create", "--label", f"{LABEL}={instance.uuid}", docker_volume(instance.uuid))
        self._docker(*args, image)
        if power_on:
            self._start(instance, network_info, block_device_info)

    def _start(self, instance, network_info, block_device_info=None):
        self._docker("start", container_name(instance.uuid))
        self.plug_vifs(instance, network_info)
        for bdm in driver.block_device_info_get_mapping(block_device_info):
            self.attach_volume(None, bdm["connection_info"], instance, bdm["mount_device"])

    def plug_vifs(self, instance, network_info):
        details = self._inspect(instance.uuid)
        if not details or not details["State"]["Running"]:
            return
        net.plug_server(instance.uuid, int(details["State"]["Pid"]), server_ports(network_info))

    def unplug_vifs(self, instance, network_info):
        net.unplug_server(instance.uuid, [vif["id"] for vif in network_info or []])

    def destroy(self, context, instance, network_info, block_device_info=None, destroy_disks=True,
                destroy_secrets=True):
        self._docker("rm", "-f", container_name(instance.uuid), check=False)
        self.unplug_vifs(instance, network_info)
        self._docker("volume", "rm", "-f", docker_volume(instance.uuid), check=False)
        shutil.rmtree(self._instance_dir(instance), ignore_errors=True)

    def cleanup(self, context, instance, network_info, block_device_info=None, destroy_disks=True,
                migrate_data=None, destroy_vifs=True, destroy_secrets=True):
        if destroy_vifs:
            self.unplug_vifs(instance, network_info)

    def power_off(self, instance, timeout=0, retry_interval=0):
        self._docker("stop", "-t", str(max(int(timeout or 0), 10)), container_name(instance.uuid))
        net.unplug_server(instance.uuid, [])

    def power_on(self, context, instance, network_info, block_device_info=None, accel_info=None):
        self._start(instance, network_info, block_device_info)

    def reboot(self, context, instance, network_info, reboot_type, block_device_info=None,
               bad_volumes_callback=None, accel_info=None):
        self._docker("stop", "-t", "10", container_name(instance.uuid), check=False)
        self._start(instance, network_info, block_device_info)

    def get_console_output(self, context, instance):
        if self._inspect(instance.uuid) is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        try:
            out, err = processutils.execute("docker", "logs", "--tail", "500", container_name(instance.uuid))
        except processutils.ProcessExecutionError as exc:
            return exc.stdout or ""
        return out + err

    # --- images ---------------------------------------------------------------------------------

    def _ensure_image(self, context, image_meta) -> str:
        """The image as a local Docker image, downloaded from Glance and loaded the first time it boots."""
        tag = f"{IMAGE_REPO}:{image_meta.id}"
        with self._image_lock:
            if self._docker("images", "-q", tag).strip():
                return tag
            if image_meta.obj_attr_is_set("container_format") and image_meta.container_format != "docker":
                raise exception.ImageUnacceptable(
                    image_id=image_meta.id,
                    reason="the hubfleet development cloud boots container images only: upload a `docker save` "
                           "archive with container_format docker")
            base = os.path.join(CONF.instances_path, "_base")
            os.makedirs(base, exist_ok=True)
            archive = os.path.join(base, f"{image_meta.id}.tar")
            try:
                LOG.info("downloading image %s from Glance", image_meta.id)
                self._image_api.download(context, image_meta.id, dest_path=archive)
                loaded = self._docker("load", "-q", "-i", archive).strip().splitlines()
                reference = loaded[-1].split(": ", 1)[-1].strip() if loaded else archive_image_id(archive)
                self._docker("tag", reference, tag)
            finally:
                if os.path.exists(archive):
                    os.unlink(archive)
        return tag

    def snapshot(self, context, instance, image_id, update_task_state):
        if self._inspect(instance.uuid) is None:
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        snapshot = self._image_api.get(context, image_id)
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        tag = f"{IMAGE_REPO}:{image_id}"
        # The root file system as it is now; the engine's disk (/var/lib/docker) and the seed are not in it.
        self._docker("commit", container_name(instance.uuid), tag)
        update_task_state(task_state=task_states.IMAGE_UPLOADING, expected_state=task_states.IMAGE_PENDING_UPLOAD)
        base = os.path.join(CONF.instances_path, "_base")
        os.makedirs(base, exist_ok=True)
        archive = os.path.join(base, f"snapshot-{image_id}.tar")
        metadata = {"status": "active", "name": snapshot["name"], "disk_format": "raw",
                    "container_format": "docker",
                    "properties": {"image_location": "snapshot", "image_state": "available",
                                   "owner_id": instance.project_id}}
        try:
            self._docker("save", "-o", archive, tag)
            with open(archive, "rb") as data:
                self._image_api.update(context, image_id, metadata, data)
        finally:
            if os.path.exists(archive):
                os.unlink(archive)

    # --- volumes --------------------------------------------------------------------------------

    def attach_volume(self, context, connection_info, instance, mountpoint, disk_bus=None, device_type=None,
                      encryption=None):
        details = self._inspect(instance.uuid)
        if not details or not details["State"]["Running"]:
            return  # attached at the next start, from the block device mapping
        device = connection_info["data"]["device_path"]
        number = os.stat(device).st_rdev
        serial = (connection_info.get("serial") or connection_info["data"].get("volume_id") or "")[:20]
        pid = str(details["State"]["Pid"])
        name = os.path.basename(mountpoint)
        enter = ["nsenter", "-t", pid, "-m", "--"]
        try:
            processutils.execute(*enter, "rm", "-f", f"/dev/{name}")
            # mknod -m would chmod through /proc/self, which is not ours in the server's mount namespace.
            processutils.execute(*enter, "mknod", f"/dev/{name}", "b", str(os.major(number)), str(os.minor(number)))
            processutils.execute(*enter, "chmod", "0660", f"/dev/{name}")
            if serial:
                processutils.execute(*enter, "mkdir", "-p", "/dev/disk/by-id")
                processutils.execute(*enter, "ln", "-sfn", f"../../{name}", f"/dev/disk/by-id/virtio-{serial}")
        except processutils.ProcessExecutionError as exc:
            raise exception.VolumeAttachFailed(volume_id=serial, reason=(exc.stderr or "").strip())

    def detach_volume(self, context, connection_info, instance, mountpoint, encryption=None):
        details = self._inspect(instance.uuid)
        if not details or not details["State"]["Running"]:
            return
        serial = (connection_info.get("serial") or connection_info["data"].get("volume_id") or "")[:20]
        enter = ["nsenter", "-t", str(details["State"]["Pid"]), "-m", "--"]
        processutils.execute(*enter, "rm", "-f", f"/dev/{os.path.basename(mountpoint)}",
                             f"/dev/disk/by-id/virtio-{serial}", check_exit_code=False)


def archive_image_id(archive: str) -> str:
    """The image id in a `docker save` archive (its config file's digest), when `docker load` printed none."""
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    return "sha256:" + manifest[0]["Config"].split("/")[-1].removesuffix(".json")
