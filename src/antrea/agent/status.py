"""What the agent reports about itself: agentinfo (antctl get agentinfo) and its gauges.

`agent_info` is the ``/agentinfo`` document, read from the features that hold each part (the
node, `HostNetwork`, `FlowRounds`, `FlowReplay`, the flow and interface stores, node routes).
`refresh_metrics` updates, on every scrape, the gauges of `antrea.agent.apiserver.AgentMetrics`
that are not counted where they happen: local pods, the round, the OVS error counts, and the
flows per table (one dump).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from antrea.agent.openflow.pipeline import TABLE_NAMES
from antrea.ovs.errors import OvsError
from antrea.util.version import package_version

if TYPE_CHECKING:
    from antrea.agent.agent import Agent


def agent_info(agent: Agent) -> dict[str, Any]:
    node, cfg, host = agent.node, agent.cfg, agent.host
    return {
        "nodeName": agent.node_name,
        "version": package_version(),
        "podCIDR": str(node.pod_cidr) if node and node.pod_cidr else "",
        "nodeIP": str(node.internal_ip) if node and node.internal_ip else "",
        "gatewayIP": str(node.gateway_ip) if node and node.gateway_ip else "",
        "gatewayMAC": host.gateway_mac,
        "bridge": cfg.ovsBridge,
        "datapathType": cfg.ovsDatapathType,
        "trafficEncapMode": cfg.trafficEncapMode,
        "tunnelType": cfg.tunnelType if cfg.encap else "",
        "mtu": host.mtu,
        "ovsVersion": host.ovs_version,
        "round": agent.rounds.round_num,
        "roundPersisted": agent.rounds.persisted,
        "flowCount": len(agent.flow_client),
        "localPodCount": len(agent.interface_store),
        "remoteNodes": sorted(agent.node_routes.nodes) if agent.node_routes else [],
        "controllerConnected": bool(agent.controller_connected),
        "policyReady": agent.policy_ready.is_set(),
        "flowReplays": agent.replay.count,
        "uptimeSeconds": round(time.monotonic() - agent.started_at, 1),
    }


async def refresh_metrics(agent: Agent) -> None:
    m = agent.metrics
    m.local_pods.set(len(agent.interface_store))
    m.round.set(agent.rounds.round_num)
    m.count_errors("ovsdb", agent.ovsdb.errors)
    m.count_errors("openflow", agent.ofctl.errors)
    m.count_errors("bundle", agent.transport.errors)
    try:
        counts = await agent.ofctl.flow_counts()
    except OvsError:
        return
    m.flow_count.clear()
    for table, n in sorted(counts.items()):
        m.flow_count.labels(str(table), TABLE_NAMES.get(table, "")).set(n)
    m.total_flows.set(sum(counts.values()))
