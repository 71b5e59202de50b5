"""antrea.cmd."""
