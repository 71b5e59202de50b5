"""antrea.apis.stats: per-rule traffic counters, agent -> controller -> antctl/kubectl."""
