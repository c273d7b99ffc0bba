"""The OpenStack backend: pre-flight, the SDK and Terraform engines, its site settings.

    settings.py   the site file's OpenStack fields (cloud, image, networks, engine, timeouts)
    preflight.py  what the cloud must offer for a plan, asked before anything is created
    cloud.py      logging in, flavors, a course's resources found by name and tag
    sdk.py        the SDK engine (openstacksdk)
    terraform.py  the Terraform engine (terraform/openstack), its runner and outputs
    provider.py   OpenStackProvider: engine, reaching the hosts, images and baking
"""

from hubfleet.providers.openstack.provider import OpenStackProvider

__all__ = ["OpenStackProvider"]
