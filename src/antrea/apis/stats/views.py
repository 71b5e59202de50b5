"""JSON views of the aggregated stats, as upstream's ``stats.antrea.io/v1alpha1`` objects::

    {"apiVersion": "stats.antrea.io/v1alpha1", "kind": "AntreaClusterNetworkPolicyStats",
     "metadata": {"name": ..., "namespace": ..., "uid": ...},
     "trafficStats": {"packets": N, "bytes": N, "sessions": N},
     "ruleTrafficStats": [{"name": RULE, "trafficStats": {...}}, ...]}   # Antrea-native only

Lists are ``{"apiVersion", "kind": "<Kind>List", "items": [...]}``. The controller builds them;
antctl reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from antrea.apis.stats.names import GROUP_VERSION
from antrea.apis.stats.types import TrafficStats


def stats_json(
    kind: str,
    *,
    name: str,
    namespace: str,
    uid: str,
    total: TrafficStats,
    rules: Mapping[str, TrafficStats] | None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if uid:
        meta["uid"] = uid
    out: dict[str, Any] = {
        "apiVersion": GROUP_VERSION,
        "kind": kind,
        "metadata": meta,
        "trafficStats": total.to_json(),
    }
    if rules is not None:
        out["ruleTrafficStats"] = [
            {"name": n, "trafficStats": s.to_json()} for n, s in sorted(rules.items())
        ]
    return out


def list_json(kind: str, items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(
        items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])
    )
    return {"apiVersion": GROUP_VERSION, "kind": f"{kind}List", "items": ordered}
