"""An ML2 mechanism driver for the local development cloud: binds every port, as no agent runs.

Loaded by neutron-server through the entry point in hubfleet_bind_all-1.0.dist-info.
"""

from neutron_lib.plugins.ml2 import api


class BindAllMechanismDriver(api.MechanismDriver):
    def initialize(self):
        pass

    def bind_port(self, context):
        # The fake compute driver plugs nothing, so any segment will do and the port is up at once.
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], "other", {}, status="ACTIVE")
            return
