"""An ML2 mechanism driver for the local development cloud: binds every port, as no agent runs.

Loaded by neutron-server through the entry point in hubfleet_bind_all-1.0.dist-info. The dev
cloud's compute driver plugs each server port itself (a veth on its network's bridge) and its L3
agent plugs the routers' (hubfleet_devcloud/), so no Neutron agent has to report anything.
"""

from neutron_lib.plugins.ml2 import api


class BindAllMechanismDriver(api.MechanismDriver):
    def initialize(self):
        pass

    def bind_port(self, context):
        # vif type "tap": a plain device the host side plugs; any segment will do, the port is up at once.
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], "tap", {}, status="ACTIVE")
            return
