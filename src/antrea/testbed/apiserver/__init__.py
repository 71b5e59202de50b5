"""antrea.testbed.apiserver."""
