"""Fill the local development cloud (scripts/openstack-dev.sh) with what hubfleet's tests need.

Run by Debian's /usr/bin/python3 (its openstacksdk), in two phases:
  identity   service project and user, the catalogue, the test project and its member user
  resources  flavors, an external network and the stock Debian image (a `docker save` archive,
             booted by the dev cloud's container compute driver)
Passwords come from the environment and are never printed.
"""

import ipaddress
import os
import sys
import time

import openstack
import yaml

PORTS = {name: os.environ[f"PORT_{name.upper()}"] for name in ("glance", "placement", "nova", "neutron", "cinder")}
CATALOGUE = [  # (service name, type, url)
    ("glance", "image", f"http://127.0.0.1:{PORTS['glance']}"),
    ("placement", "placement", f"http://127.0.0.1:{PORTS['placement']}"),
    ("nova", "compute", f"http://127.0.0.1:{PORTS['nova']}/v2.1"),
    ("neutron", "network", f"http://127.0.0.1:{PORTS['neutron']}"),
    ("cinderv3", "volumev3", f"http://127.0.0.1:{PORTS['cinder']}/v3/%(project_id)s"),
]
EXTERNAL_CIDR = os.environ.get("EXTERNAL_CIDR", "203.0.113.0/24")


def admin() -> openstack.connection.Connection:
    return openstack.connect(cloud="hubfleet-dev-admin")


def identity() -> None:
    conn = admin()
    service_project = conn.identity.find_project("service") or conn.identity.create_project(
        name="service", domain_id="default")
    user = conn.identity.find_user("services") or conn.identity.create_user(
        name="services", domain_id="default", password=os.environ["SERVICE_PASSWORD"],
        default_project_id=service_project.id)
    admin_role = conn.identity.find_role("admin")
    conn.identity.assign_project_role_to_user(service_project, user, admin_role)
    # Service tokens (Nova to Cinder) are recognised by this role.
    service_role = conn.identity.find_role("service") or conn.identity.create_role(name="service")
    conn.identity.assign_project_role_to_user(service_project, user, service_role)
    for name, kind, url in CATALOGUE:
        service = conn.identity.find_service(name) or conn.identity.create_service(name=name, type=kind)
        if not list(conn.identity.endpoints(service_id=service.id)):
            for interface in ("public", "internal", "admin"):
                conn.identity.create_endpoint(service_id=service.id, interface=interface, url=url,
                                              region_id="RegionOne")
    project = conn.identity.find_project("hubfleet-test") or conn.identity.create_project(
        name="hubfleet-test", domain_id="default", description="hubfleet's integration tests")
    tester = conn.identity.find_user("hubfleet") or conn.identity.create_user(
        name="hubfleet", domain_id="default", password=os.environ["TEST_PASSWORD"],
        default_project_id=project.id)
    conn.identity.assign_project_role_to_user(project, tester, conn.identity.find_role("member"))


def quotas() -> None:
    """Room for a few courses: servers here are overcommitted containers, so cores and RAM are generous."""
    conn = admin()
    project = conn.identity.find_project("hubfleet-test")
    conn.set_compute_quotas(project.id, instances=40, cores=320, ram=640 * 1024)


def wait_for_compute(deadline: float) -> None:
    conn = admin()
    while time.monotonic() < deadline:
        try:
            up = [s for s in conn.compute.services() if s.binary == "nova-compute" and s.state == "up"]
            if up and list(conn.compute.hypervisors()):
                return
        except openstack.exceptions.SDKException:
            pass  # nova-api still starting
        time.sleep(1)
    sys.exit("nova-compute did not report in time (see the logs under run/log)")


def wait_for_volumes(deadline: float) -> None:
    conn = admin()
    while time.monotonic() < deadline:
        try:
            services = conn.block_storage.get("/os-services").json().get("services", [])
            if any(s["binary"] == "cinder-volume" and s["state"] == "up" for s in services):
                return
        except openstack.exceptions.SDKException:
            pass  # cinder-api still starting
        time.sleep(1)
    sys.exit("cinder-volume did not report in time (see the logs under run/log)")


def resources(flavors_file: str, image_file: str, image_name: str) -> None:
    conn = admin()
    rows = (yaml.safe_load(open(flavors_file)) or {}).get("openstack", [])
    for row in rows:
        if conn.compute.find_flavor(row["name"]) is None:
            ram = int(str(row["ram"]).removesuffix("Gi")) * 1024
            disk = int(str(row["disk"]).removesuffix("Gi"))
            conn.compute.create_flavor(name=row["name"], vcpus=int(row["vcpus"]), ram=ram, disk=disk,
                                       is_public=True)
    net = conn.network.find_network("public")
    if net is None:
        net = conn.network.create_network(name="public", is_router_external=True,
                                          provider_network_type="flat",
                                          provider_physical_network="public")
    if not list(conn.network.subnets(network_id=net.id)):
        # TEST-NET-3 by default: this machine is its gateway (the external bridge), nothing else routes it.
        network = ipaddress.ip_network(EXTERNAL_CIDR)
        hosts = list(network.hosts())
        conn.network.create_subnet(name="public-subnet", network_id=net.id, ip_version=4,
                                   cidr=str(network), gateway_ip=str(hosts[0]), is_dhcp_enabled=False,
                                   allocation_pools=[{"start": str(hosts[9]), "end": str(hosts[-5])}])
    if conn.image.find_image(image_name) is None:
        # What the container compute driver boots: a `docker save` archive of a stock Debian 12 system.
        conn.create_image(image_name, filename=image_file, disk_format="raw", container_format="docker",
                          visibility="public", wait=True)


if __name__ == "__main__":
    phase = sys.argv[1]
    if phase == "identity":
        identity()
    elif phase == "resources":
        resources(sys.argv[2], sys.argv[3], sys.argv[4])
        quotas()
    elif phase == "wait-compute":
        wait_for_compute(time.monotonic() + float(os.environ.get("COMPUTE_TIMEOUT", "90")))
    elif phase == "wait-volumes":
        wait_for_volumes(time.monotonic() + float(os.environ.get("COMPUTE_TIMEOUT", "90")))
    else:
        sys.exit(f"unknown phase {phase}")
