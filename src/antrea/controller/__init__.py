"""antrea.controller."""
