"""antrea.antctl."""
