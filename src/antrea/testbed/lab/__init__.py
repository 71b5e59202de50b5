"""antrea.testbed.lab."""
