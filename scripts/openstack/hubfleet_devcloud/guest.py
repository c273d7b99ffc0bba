"""What the dev cloud's compute driver gives a server, as a hypervisor gives a VM: pure parts.

Its container's name and run flags, its NoCloud seed (the config drive it boots with), its ports
as net.py plugs them. No Nova import here, so hubfleet's unit tests read it.
"""

from __future__ import annotations

import base64

import yaml

from hubfleet_devcloud import net

LABEL = "hubfleet.devcloud.instance"
IMAGE_REPO = "hubfleet-devcloud/glance"
CONTAINER_PREFIX = "hubfleet-devcloud-"
# hubfleet's Docker provider runs its hosts this way (hubfleet/providers/docker/provider.py):
# systemd and a Docker engine inside a container, where --privileged is refused.
HOST_RUN_FLAGS = [
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
]
LOOP_MAJOR = 7  # volumes are loop devices: the only block devices a server may open


def container_name(instance_uuid: str) -> str:
    return CONTAINER_PREFIX + instance_uuid


def docker_volume(instance_uuid: str) -> str:
    return f"{CONTAINER_PREFIX}{instance_uuid}-docker"


def seed_files(instance, network_info) -> dict[str, str]:
    """The NoCloud seed: meta-data, user-data and a network-config that leaves the interfaces as plugged."""
    meta = {"instance-id": instance.uuid, "local-hostname": instance.hostname or instance.uuid}
    if instance.key_data:
        meta["public-keys"] = [instance.key_data.strip()]
    user_data = "#cloud-config\n{}\n"
    if instance.user_data:
        user_data = base64.b64decode(instance.user_data).decode("utf-8", errors="replace")
    # The driver configures the ports from Neutron (as DHCP would): cloud-init must not rewrite them.
    return {"meta-data": yaml.safe_dump(meta, sort_keys=False), "user-data": user_data,
            "network-config": "config: disabled\n"}


def server_ports(network_info) -> list[net.ServerPort]:
    ports = []
    for vif in network_info or []:
        addresses, gateway = [], ""
        for subnet in vif["network"]["subnets"]:
            if subnet["version"] != 4:
                continue
            length = net.prefix_length(subnet["cidr"])
            addresses += [f"{ip['address']}/{length}" for ip in subnet["ips"]]
            if not gateway and subnet.get("gateway") and subnet["gateway"].get("address"):
                gateway = subnet["gateway"]["address"]
        mtu = (vif["network"].get("meta") or {}).get("mtu") or 1500
        ports.append(net.ServerPort(vif["id"], vif["network"]["id"], vif["address"], tuple(addresses), gateway,
                                    int(mtu)))
    return ports


def dns_servers(network_info) -> list[str]:
    found = []
    for vif in network_info or []:
        for subnet in vif["network"]["subnets"]:
            found += [d["address"] for d in subnet.get("dns") or [] if d["address"] not in found]
    return found
