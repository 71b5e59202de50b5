"""antrea.apis.controlplane."""
