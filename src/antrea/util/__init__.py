"""antrea.util."""
