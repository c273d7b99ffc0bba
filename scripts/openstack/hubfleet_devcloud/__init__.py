"""hubfleet's development cloud: the drivers and the agent that make its servers, networks and
volumes real on this machine (see scripts/openstack-dev.sh and docs/openstack.md)."""
