"""antrea.k8s."""
