"""Paths and resource names of NetworkPolicy stats (upstream's feature NetworkPolicyStats).

The agent POSTs its counters to the controller (`SUMMARY_PATH`, msgpack, `codec`); the controller
serves the aggregated view under upstream's ``stats.antrea.io/v1alpha1`` (JSON, `views`):

- ``/apis/stats.antrea.io/v1alpha1[/namespaces/NS]/networkpolicystats[/NAME]``
- ``/apis/stats.antrea.io/v1alpha1[/namespaces/NS]/antreanetworkpolicystats[/NAME]``
- ``/apis/stats.antrea.io/v1alpha1/antreaclusternetworkpolicystats[/NAME]``
"""

from __future__ import annotations

from antrea.apis.controlplane.names import PATH as CONTROLPLANE_PATH

GROUP_VERSION = "stats.antrea.io/v1alpha1"
PATH = f"/apis/{GROUP_VERSION}"
SUMMARY_PATH = f"{CONTROLPLANE_PATH}/nodestatssummaries"
"""``POST``: one node's `NodeStatsSummary` (msgpack); a node may only report for itself."""

# resource -> (kind, the source policy type it shows, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "networkpolicystats": ("NetworkPolicyStats", "K8sNetworkPolicy", True),
    "antreanetworkpolicystats": ("AntreaNetworkPolicyStats", "AntreaNetworkPolicy", True),
    "antreaclusternetworkpolicystats": (
        "AntreaClusterNetworkPolicyStats",
        "AntreaClusterNetworkPolicy",
        False,
    ),
}
