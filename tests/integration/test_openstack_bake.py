"""Baking on the dev cloud: a stock server configured, stopped, saved to Glance, and booted again.

The provider's side of `hubfleet bake openstack` with a small `configure` step (a marker file over
SSH) in place of playbooks/bake.yml, whose install steps are the ones a stock create runs
(test_openstack_e2e.py): the dev cloud's compute driver commits the server's disk, Nova uploads
it to Glance as hubfleet-host-<tag>, the bake's server and network are removed, a second bake
finds the image current and does nothing, and `host_image: baked` boots it, cloud-init treating
the new server as a new instance (its own name and the course's key).
"""

from __future__ import annotations

import subprocess

import pytest

from hubfleet.ansible import ensure_ssh_key
from hubfleet.providers.base import HostSpec
from hubfleet.providers.openstack import OpenStackProvider
from hubfleet.providers.openstack.settings import parse_openstack_site
from tests.integration.conftest import unique_course_name

from .openstack_env import dev_cloud, member_conn, tagged_everywhere  # noqa: F401

pytestmark = [
    pytest.mark.openstack, pytest.mark.docker, pytest.mark.timeout(1800),
    pytest.mark.filterwarnings("ignore:The ignore_missing parameter:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::Warning:openstack"),  # openstacksdk's own deprecations of its internals
]
GiB = 1024**3


class IsolatedBakes(OpenStackProvider):
    baked_prefix = "hubfleet-host-test-"  # never the real bake's image (bench/openstack_course.py, `hubfleet bake`)


def site(dev_cloud, **overrides):
    import yaml

    data = yaml.safe_load(dev_cloud.site_yaml.read_text())
    return parse_openstack_site({**data, "ssh_timeout": 600, **overrides})


def run(provider: OpenStackProvider, host, command: str) -> str:
    result = subprocess.run(provider.login_command(host, command), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def baked(dev_cloud, member_conn, tmp_path_factory):
    """One bake for the module, whose configure step leaves a marker; its image is deleted afterwards."""
    workdir = tmp_path_factory.mktemp("bake")
    _, public_key = ensure_ssh_key(workdir / "secrets")
    baker = IsolatedBakes("hubfleet-bake", workdir, site=site(dev_cloud))
    steps: list[str] = []
    baker.progress = steps.append
    marker = unique_course_name("baked")

    def configure(host) -> None:
        run(baker, host, f"echo {marker} | sudo tee /etc/hubfleet-bake-marker && sudo cloud-init clean --logs "
                         "&& sudo rm -f /home/debian/.ssh/authorized_keys")

    name = baker.bake(public_key, configure)
    yield {"name": name, "marker": marker, "steps": steps, "baker": baker, "public_key": public_key}
    for image in member_conn.image.images():
        if image.name == name:
            member_conn.image.delete_image(image)


def test_bake_saves_the_configured_server_to_glance_and_removes_it(baked, member_conn):
    assert baked["name"].startswith("hubfleet-host-test-")
    image = member_conn.image.find_image(baked["name"])
    assert image.status == "active" and image.container_format == "docker"
    assert any(step.startswith("stopping hubfleet-bake-hub") for step in baked["steps"])
    assert tagged_everywhere(member_conn, "hubfleet-bake") == []
    again: list[str] = []
    baked["baker"].progress = again.append
    assert baked["baker"].bake(baked["public_key"], lambda host: pytest.fail("nothing to bake")) == baked["name"]
    assert any("baked already" in step for step in again)


def test_a_course_boots_the_baked_image_as_a_new_instance(baked, dev_cloud, member_conn, tmp_path):
    course = unique_course_name("bk")
    workdir = tmp_path / course
    _, public_key = ensure_ssh_key(workdir / "secrets")
    p = IsolatedBakes(course, workdir, site=site(dev_cloud, host_image="baked"))
    steps: list[str] = []
    p.progress = steps.append
    try:
        hub = p.ensure_hosts([HostSpec("hub", "m1.small", 1, 2 * GiB, 20 * GiB)], public_key)[0]
        assert f"hosts start from the baked image {baked['name']}" in steps
        assert run(p, hub, "cat /etc/hubfleet-bake-marker").strip() == baked["marker"]
        assert run(p, hub, "hostname").strip() == f"{course}-hub", "cloud-init named the new instance"
    finally:
        p.destroy_hosts()
    assert tagged_everywhere(member_conn, course) == []
