"""How fast a dev-cloud server answers SSH, for each way the dev cloud could boot one.

1. container: the dev cloud's compute driver (scripts/openstack/hubfleet_devcloud/compute.py) —
   a server created through Nova's API from the stock image (`debian-12` in Glance), with a key
   pair and a floating IP; timed from the create call to the first SSH login with that key.
2. qemu-tcg: the same stock Debian 12 system plus Debian's cloud kernel, booted as a VM by
   qemu-system-x86_64 in TCG mode (what Nova's libvirt driver does with virt_type=qemu where KVM
   is unusable, as here); its NoCloud seed is on its disk, its network QEMU's user mode with SSH
   forwarded to 127.0.0.1; timed from QEMU's start to the first SSH login with the key.
Then, on each, the time of `python3 -c 'import json, ssl, sqlite3'` (a small taste of the CPU a
hub's Python stack costs there).

Prints figures; asserts nothing. Installs qemu-system-x86 and e2fsprogs (Debian packages) when
missing; builds its VM disk under /tmp/hubfleet-bench-qemu (kept as a cache by the stock image's id).

    .venv/bin/python bench/openstack_boot.py            # both
    .venv/bin/python bench/openstack_boot.py --only qemu-tcg
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report  # noqa: E402
from hubfleet.providers.docker.images import ensure_stock_image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEV_CLOUD = Path("/tmp/hubfleet-openstack")
WORK = Path("/tmp/hubfleet-bench-qemu")
TASTE = "python3 -c 'import json, ssl, sqlite3'"
SSH = ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
       "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"]
# The VM needs what the container gets from its host: a kernel, an initramfs, DHCP on its NIC.
VM_RECIPE = """FROM {stock}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y linux-image-cloud-amd64 \\
 && rm -rf /var/lib/apt/lists/* \\
 && printf '[Match]\\nName=en* eth*\\n[Network]\\nDHCP=yes\\n' > /etc/systemd/network/80-dhcp.network \\
 && systemctl enable systemd-networkd \\
 && systemctl unmask systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \\
      systemd-remount-fs.service serial-getty@ttyS0.service
"""


def keypair(folder: Path) -> tuple[Path, str]:
    key = folder / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key, key.with_suffix(".pub").read_text().strip()


def wait_login(cmd: list[str], deadline: float) -> float:
    started = time.monotonic()
    while time.monotonic() < deadline:
        if subprocess.run([*cmd, "true"], capture_output=True).returncode == 0:
            return time.monotonic() - started
        time.sleep(0.5)
    raise SystemExit("no SSH login before the deadline")


def taste(cmd: list[str]) -> float:
    started = time.monotonic()
    subprocess.run([*cmd, TASTE], check=True, capture_output=True)
    return time.monotonic() - started


def container(key: Path, public_key: str) -> dict:
    import openstack

    os.environ["OS_CLIENT_CONFIG_FILE"] = str(DEV_CLOUD / "clouds.yaml")
    conn = openstack.connect(cloud="hubfleet-dev")
    name = f"bench-boot-{os.getpid()}"
    made = []
    try:
        conn.compute.create_keypair(name=name, public_key=public_key)
        network = conn.network.create_network(name=name)
        made.append(("network", network))
        subnet = conn.network.create_subnet(name=name, network_id=network.id, ip_version=4, cidr="10.77.0.0/24")
        external = conn.network.find_network("public")
        router = conn.network.create_router(name=name, external_gateway_info={"network_id": external.id})
        made.append(("router", router))
        conn.network.add_interface_to_router(router, subnet_id=subnet.id)
        flavor = conn.compute.find_flavor("m1.small")
        image = conn.image.find_image("debian-12")
        started = time.monotonic()
        user_data = base64.b64encode(b"#cloud-config\n{}\n").decode()
        server = conn.compute.create_server(name=name, flavor_id=flavor.id, image_id=image.id, key_name=name,
                                            networks=[{"uuid": network.id}], user_data=user_data)
        made.append(("server", server))
        server = conn.compute.wait_for_server(server, interval=1, wait=600)
        active = time.monotonic() - started
        port = next(iter(conn.network.ports(device_id=server.id)))
        ip = conn.network.create_ip(floating_network_id=external.id, port_id=port.id)
        made.append(("ip", ip))
        cmd = ["ssh", "-i", str(key), *SSH, f"debian@{ip.floating_ip_address}"]
        wait_login(cmd, started + 600)
        return {"container: create to ACTIVE (s)": round(active, 1),
                "container: create to SSH login (s)": round(time.monotonic() - started, 1),
                "container: python3 taste (s)": round(taste(cmd), 2)}
    finally:
        for kind, item in reversed(made):
            if kind == "ip":
                conn.network.delete_ip(item)
            elif kind == "server":
                conn.compute.delete_server(item)
                conn.compute.wait_for_delete(item, wait=300)
            elif kind == "router":
                for p in conn.network.ports(device_id=item.id, device_owner="network:router_interface"):
                    for fixed in p.fixed_ips:
                        conn.network.remove_interface_from_router(item, subnet_id=fixed["subnet_id"])
                conn.network.delete_router(item)
            elif kind == "network":
                conn.network.delete_network(item)
        conn.compute.delete_keypair(name, ignore_missing=True)


def vm_disk(stock: str, public_key: str) -> tuple[Path, Path, Path]:
    """(disk, kernel, initrd) of the stock system with a kernel, its NoCloud seed on the disk."""
    tag = stock.rsplit(":", 1)[-1]
    folder = WORK / tag
    disk, kernel, initrd = folder / "disk.raw", folder / "vmlinuz", folder / "initrd.img"
    if disk.exists():
        return disk, kernel, initrd
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WORK) as build:
        (Path(build) / "Dockerfile").write_text(VM_RECIPE.format(stock=stock))
        ref = f"hubfleet-bench/vm:{tag}"
        subprocess.run(["docker", "build", "-q", "-t", ref, build], check=True, capture_output=True)
        rootfs = Path(build) / "rootfs"
        rootfs.mkdir()
        cid = subprocess.run(["docker", "create", ref], check=True, capture_output=True, text=True).stdout.strip()
        try:
            export = subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE)
            subprocess.run(["tar", "-x", "-C", str(rootfs)], stdin=export.stdout, check=True)
            export.wait()
        finally:
            subprocess.run(["docker", "rm", cid], capture_output=True)
            subprocess.run(["docker", "rmi", ref], capture_output=True)
        seed = rootfs / "var/lib/cloud/seed/nocloud"
        seed.mkdir(parents=True, exist_ok=True)
        (seed / "meta-data").write_text(f"instance-id: bench-vm\nlocal-hostname: bench-vm\npublic-keys:\n"
                                        f"  - {public_key}\n")
        (seed / "user-data").write_text("#cloud-config\n{}\n")
        (rootfs / "etc/hostname").write_text("bench-vm\n")
        (rootfs / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 bench-vm\n")
        (rootfs / "etc/resolv.conf").unlink(missing_ok=True)
        shutil.copy(sorted((rootfs / "boot").glob("vmlinuz-*"))[-1], kernel)
        shutil.copy(sorted((rootfs / "boot").glob("initrd.img-*"))[-1], initrd)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(rootfs), str(disk), "4G"], check=True)
    return disk, kernel, initrd


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def qemu_tcg(key: Path, public_key: str) -> dict:
    for package, command in (("qemu-system-x86", "qemu-system-x86_64"), ("e2fsprogs", "mkfs.ext4")):
        if shutil.which(command) is None:
            subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package], check=True)
    disk, kernel, initrd = vm_disk(ensure_stock_image(print), public_key)
    run_disk = WORK / f"run-{os.getpid()}.raw"
    shutil.copy(disk, run_disk)
    port = free_port()
    started = time.monotonic()
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg", "-m", "2048", "-smp", "2", "-nographic", "-no-reboot",
         "-kernel", str(kernel), "-initrd", str(initrd),
         "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0 ds=nocloud",
         "-drive", f"file={run_disk},if=virtio,format=raw",
         "-nic", f"user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{port}-:22"],
        stdin=subprocess.DEVNULL, stdout=(WORK / "console.log").open("w"), stderr=subprocess.STDOUT)
    try:
        cmd = ["ssh", "-i", str(key), "-p", str(port), *SSH, "debian@127.0.0.1"]
        boot = wait_login(cmd, started + 900)
        return {"qemu-tcg: start to SSH login (s)": round(boot, 1),
                "qemu-tcg: python3 taste (s)": round(taste(cmd), 2)}
    finally:
        qemu.terminate()
        qemu.wait(30)
        run_disk.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["container", "qemu-tcg"])
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    key, public_key = keypair(WORK)
    figures: dict = {}
    if args.only in (None, "container"):
        subprocess.run([str(ROOT / "scripts" / "openstack-dev.sh"), "start"], check=True)
        figures.update(container(key, public_key))
    if args.only in (None, "qemu-tcg"):
        figures.update(qemu_tcg(key, public_key))
    report(figures)


if __name__ == "__main__":
    main()
