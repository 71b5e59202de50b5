"""antrea.ovs."""
