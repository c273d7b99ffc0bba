"""nova-compute with the container driver: Nova loads compute drivers from nova.virt only, so the
driver is registered there before the service starts.

    python3 -m hubfleet_devcloud.nova_compute --config-file nova.conf
"""

import sys

from nova.cmd import compute  # first: it monkey-patches eventlet, as the nova-compute command does

import hubfleet_devcloud
import hubfleet_devcloud.compute

sys.modules["nova.virt.hubfleet_devcloud"] = hubfleet_devcloud
sys.modules["nova.virt.hubfleet_devcloud.compute"] = hubfleet_devcloud.compute

if __name__ == "__main__":
    sys.exit(compute.main())
