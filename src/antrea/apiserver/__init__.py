"""antrea.apiserver."""
