"""antrea.lab."""
