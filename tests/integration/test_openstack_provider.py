"""The OpenStack provider's pre-flight and clean-up against a real OpenStack (scripts/openstack-dev.sh).

Keystone, Glance, Placement, Nova, Neutron and Cinder answer for real on 127.0.0.1, and servers
really boot (containers of the dev cloud's compute driver). Creating, configuring, scaling and
destroying a whole course is test_openstack_e2e.py's; these are the refusals and the edges.
"""

from __future__ import annotations

from pathlib import Path

import openstack
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from hubfleet.descriptor import parse_course
from hubfleet.errors import ProvisionError
from hubfleet.providers.base import HostSpec
from hubfleet.providers.openstack import OpenStackProvider
from hubfleet.providers.openstack.preflight import preflight, preflight_specs, real_catalogue
from hubfleet.providers.openstack.settings import parse_openstack_site
from hubfleet.sizing import plan_course

from .openstack_env import admin_conn, dev_cloud, member_conn, tagged_everywhere  # noqa: F401

pytestmark = [
    pytest.mark.openstack,
    pytest.mark.timeout(300),
    # openstacksdk's own internals raise these on every call; they say nothing about hubfleet.
    pytest.mark.filterwarnings("ignore:The ignore_missing parameter:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::Warning:openstack"),  # openstacksdk's own deprecations of its internals
    pytest.mark.filterwarnings("ignore:The field 'maxPersonality"),
]

ROOT = Path(__file__).resolve().parents[2]
GiB = 1024**3
OPERATOR = "198.51.100.7/32"
DEV_FLAVORS = {"m1.small", "m1.medium", "m1.large", "m1.xlarge", "m1.2xlarge", "m1.4xlarge"}


def make_site(**overrides):
    data = {"cloud": "hubfleet-dev", "image": "debian-12", "external_network": "public",
            "operator_cidr": OPERATOR, "wait_ssh": False, "active_timeout": 120, "delete_timeout": 120}
    return parse_openstack_site({**data, **overrides})


def public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " test"


def spec(role: str, flavor: str = "m1.small", vcpus: float = 1, ram: int = 2) -> HostSpec:
    return HostSpec(role=role, flavor=flavor, vcpus=vcpus, ram_bytes=ram * GiB, disk_bytes=20 * GiB)


def provider(tmp_path: Path, course: str, steps: list[str] | None = None, **site) -> OpenStackProvider:
    log = steps if steps is not None else []
    return OpenStackProvider(course, tmp_path / "instances" / course, progress=log.append, site=make_site(**site))


@pytest.fixture
def course(workshop_data):
    return parse_course({**workshop_data, "provider": "openstack"})


# --- pre-flight ----------------------------------------------------------------------------------


def test_real_catalogue_reads_the_clouds_flavors_and_the_plan_uses_them(dev_cloud, course):
    catalogue = real_catalogue(make_site())
    assert {f.name for f in catalogue.flavors} == DEV_FLAVORS
    plan = plan_course(course, catalogue)
    assert {h.flavor for h in plan.hosts} <= DEV_FLAVORS
    preferred = real_catalogue(make_site(flavors=["m1.large"]))
    assert [f.name for f in preferred.flavors] == ["m1.large"]
    assert plan_course(course, preferred).flavor == "m1.large"


def test_preflight_passes_for_a_plan_the_cloud_can_carry(dev_cloud, course):
    site = make_site()
    report = preflight(site, course, plan_course(course, real_catalogue(site)))
    assert report.ok, report.problems
    assert report.needs["instances"] >= 1 and report.quotas["instances"]["limit"] > 0


def test_preflight_wrong_password_gives_one_login_message_and_creates_nothing(dev_cloud, member_conn, tmp_path,
                                                                              monkeypatch):
    clouds = yaml.safe_load(dev_cloud.clouds_yaml.read_text())
    real_password = clouds["clouds"]["hubfleet-dev"]["auth"]["password"]
    clouds["clouds"]["hubfleet-dev"]["auth"]["password"] = "wrong-password-for-the-test"
    bad = tmp_path / "clouds.yaml"
    bad.write_text(yaml.safe_dump(clouds))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(bad))

    p = provider(tmp_path, "authfail")
    problems = p.check([spec("hub")])
    assert len(problems) == 1 and problems[0].startswith("cannot log in to cloud 'hubfleet-dev'")
    with pytest.raises(ProvisionError) as err:
        p.ensure_hosts([spec("hub")], public_key())
    assert "cannot log in" in str(err.value)
    assert "wrong-password" not in str(err.value) and real_password not in str(err.value)
    assert tagged_everywhere(member_conn, "authfail") == []


def test_preflight_unknown_cloud_says_to_add_it_to_clouds_yaml(dev_cloud, tmp_path):
    problems = provider(tmp_path, "nocloud", cloud="no-such-cloud").check([spec("hub")])
    assert len(problems) == 1 and "'no-such-cloud' is not configured" in problems[0] and "clouds.yaml" in problems[0]


def test_preflight_missing_image_and_unfit_flavor_each_get_their_own_message(dev_cloud, member_conn, tmp_path):
    p = provider(tmp_path, "missing", image="no-such-image", external_network="no-such-net")
    problems = p.check([spec("hub", flavor="x9.huge", vcpus=64, ram=512)])
    assert len(problems) == 3, problems
    assert any(m.startswith("flavor x9.huge does not exist and no flavor") for m in problems)
    assert any(m.startswith("image 'no-such-image' does not exist") for m in problems)
    assert any(m.startswith("external network 'no-such-net' does not exist") for m in problems)
    with pytest.raises(ProvisionError, match="pre-flight found problems"):
        p.ensure_hosts([spec("hub", flavor="x9.huge", vcpus=64, ram=512)], public_key())
    assert tagged_everywhere(member_conn, "missing") == []


def test_preflight_picks_the_smallest_real_flavor_that_fits_a_missing_one(dev_cloud, tmp_path):
    report = preflight_specs(make_site(), "fits", [spec("hub", flavor="site.custom", vcpus=2, ram=3)])
    assert report.ok, report.problems
    assert report.flavors == {"site.custom": "m1.medium"}
    assert any("m1.medium" in n and "smallest that fits" in n for n in report.notes)


@pytest.fixture
def small_quotas(admin_conn, member_conn):
    project = member_conn.current_project_id
    compute = admin_conn.get_compute_quotas(project)
    before = {key: compute[key] for key in ("instances", "cores", "ram")}
    admin_conn.set_compute_quotas(project, instances=1, cores=2, ram=2048)
    admin_conn.set_network_quotas(project, floatingip=0, security_group=0)
    yield
    admin_conn.set_compute_quotas(project, **before)  # the dev cloud's own, roomier than the defaults
    admin_conn.delete_network_quotas(project)


def test_preflight_quota_shortages_are_one_message_with_numbers_and_nothing_is_created(
        dev_cloud, member_conn, small_quotas, tmp_path):
    p = provider(tmp_path, "quota")
    specs = [spec("hub", "m1.medium", 2, 4), spec("worker", "m1.medium", 2, 4)]
    problems = p.check(specs)
    assert len(problems) == 1, problems
    message = problems[0]
    assert "quota does not cover the plan" in message
    assert "instances: the plan needs 2, 1 free (quota 1, 0 in use)" in message
    assert "cores: the plan needs 4, 2 free (quota 2, 0 in use)" in message
    assert "RAM: the plan needs 8Gi, 2Gi free (quota 2Gi, 0B in use)" in message
    assert "floating IPs: the plan needs 1, 0 free (quota 0" in message
    assert "security groups: the plan needs 1, 0 free" in message
    with pytest.raises(ProvisionError, match="quota does not cover the plan"):
        p.ensure_hosts(specs, public_key())
    assert tagged_everywhere(member_conn, "quota") == []


# --- data volumes, edges of destroy and of the Terraform engine ----------------------------------------


def test_a_data_volume_is_attached_where_roles_engine_finds_it_and_goes_with_its_host(dev_cloud, member_conn,
                                                                                       tmp_path):
    import subprocess
    import yaml

    from hubfleet.ansible import ensure_ssh_key

    site = yaml.safe_load(dev_cloud.site_yaml.read_text())  # this machine's address as operator: SSH works
    p = OpenStackProvider("volumes", tmp_path / "instances" / "volumes", site=make_site(
        operator_cidr=site["operator_cidr"], wait_ssh=True, ssh_timeout=600, active_timeout=300))
    _, key = ensure_ssh_key(p.workdir / "secrets")
    # m1.small has a 20 GiB disk: 40 GiB of students' data needs a volume of 30 GiB (all but the base 10).
    specs = [spec("hub"), HostSpec(role="worker", flavor="m1.small", vcpus=1, ram_bytes=2 * GiB, disk_bytes=40 * GiB)]
    try:
        hub, worker = p.ensure_hosts(specs, key)
        assert hub.data_volume_id == "" and worker.data_volume_id
        volume = member_conn.block_storage.get_volume(worker.data_volume_id)
        assert (volume.name, volume.size, volume.status) == ("volumes-worker-1-data", 30, "in-use")
        device = f"/dev/disk/by-id/virtio-{worker.data_volume_id[:20]}"
        probe = subprocess.run(p.login_command(worker, f"test -b {device} && lsblk -bno SIZE {device}"),
                               capture_output=True, text=True, timeout=120)
        assert probe.returncode == 0 and int(probe.stdout.split()[0]) == 30 * GiB, probe.stderr
        p.remove_hosts(["volumes-worker-1"])
        assert [h.name for h in p.hosts()] == ["volumes-hub"]
        # By id only: find_volume falls back to a name filter on a 404, which this Cinder refuses (400).
        with pytest.raises(openstack.exceptions.NotFoundException):
            member_conn.block_storage.get_volume(worker.data_volume_id)
    finally:
        p.destroy_hosts()
    assert tagged_everywhere(member_conn, "volumes") == []



def test_destroy_raises_loudly_when_tagged_resources_remain(dev_cloud, member_conn, tmp_path):
    p = provider(tmp_path, "stubborn")
    p.ensure_hosts([spec("hub")], public_key())  # a real server: the dev cloud boots it

    class ForgetfulProvider(OpenStackProvider):
        def engine(self, kind=None):  # an engine whose destroy deletes only the floating IPs
            real = super().engine(kind)

            class Forgetful:
                def destroy(self_inner) -> None:
                    for ip in real.found.floating_ips():
                        real.conn.network.delete_ip(ip)

            return Forgetful()

    forgetful = ForgetfulProvider("stubborn", p.workdir, site=make_site())
    with pytest.raises(ProvisionError, match=r"resource\(s\) of course 'stubborn' are still there") as err:
        forgetful.destroy_hosts()
    assert "server stubborn-hub" in str(err.value) and "keypair hubfleet-stubborn" in str(err.value)
    assert "port " in str(err.value) and "network hubfleet-stubborn" in str(err.value)
    p.destroy_hosts()
    assert tagged_everywhere(member_conn, "stubborn") == []
    p.destroy_hosts()  # destroying a destroyed course is a no-op


def test_terraform_engine_runs_preflight_first_then_the_builtin_resources_module(dev_cloud, member_conn, tmp_path):
    import shutil

    if shutil.which("terraform") is None:
        pytest.skip("needs the terraform binary")
    module = ROOT / "tests" / "fixtures" / "terraform-builtin"
    p = provider(tmp_path, "tfengine", engine="terraform", terraform_module=str(module))
    with pytest.raises(ProvisionError, match="image 'nope' does not exist"):
        provider(tmp_path, "tfengine", engine="terraform", terraform_module=str(module),
                 image="nope").ensure_hosts([spec("hub")], public_key())
    assert not (p.workdir / "terraform").exists()  # pre-flight failed: Terraform never ran

    hosts = p.ensure_hosts([spec("hub"), spec("worker")], public_key())
    assert [h.name for h in hosts] == ["tfengine-hub", "tfengine-worker-1"]
    assert "ProxyCommand" in hosts[1].extra["ansible_ssh_common_args"], "workers are reached through the hub"
    assert (p.workdir / "terraform" / "terraform.tfstate").exists()
    assert p.hosts() == hosts
    p.remove_hosts(["tfengine-worker-1"])
    assert [h.name for h in p.hosts()] == ["tfengine-hub"]
    p.destroy_hosts()
    assert p.leftovers() == [] and tagged_everywhere(member_conn, "tfengine") == []
