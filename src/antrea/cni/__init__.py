"""antrea.cni."""
