"""antrea.apis."""
