"""The node agent: OVS bridge and pipeline, CNI server and IPAM, node routes, policy hooks."""
