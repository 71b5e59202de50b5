"""antrea.agent."""
