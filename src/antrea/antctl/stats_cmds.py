"""``antctl get networkpolicystats|antreanetworkpolicystats|antreaclusternetworkpolicystats``.

The controller's ``stats.antrea.io/v1alpha1`` view (counters aggregated across nodes from the
agents' reports, docs/design/controller.md "NetworkPolicy stats"). The namespaced kinds list
every namespace unless ``-n`` names one; getting one by name takes ``-n`` (default
``default``), as kubectl. Tables: ``NAMESPACE NAME SESSIONS PACKETS BYTES`` (no NAMESPACE for the
cluster-scoped kind) plus, for Antrea-native policies, the per-rule sessions (``RULES``).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from antrea.antctl.controller_client import ControllerClient
from antrea.antctl.output import Column, emit, summarize
from antrea.apis.stats import names


def _traffic(key: str) -> Column:
    return Column(key.upper(), lambda o: (o.get("trafficStats") or {}).get(key, 0))


def _rules(o: dict[str, Any]) -> str:
    return summarize(
        f"{r['name']}={(r.get('trafficStats') or {}).get('sessions', 0)}"
        for r in o.get("ruleTrafficStats") or []
    )


NAME = Column("NAME", lambda o: o["metadata"]["name"])
NAMESPACE = Column("NAMESPACE", lambda o: o["metadata"].get("namespace"))
COUNTERS = [_traffic("sessions"), _traffic("packets"), _traffic("bytes")]
COLUMNS: dict[str, list[Column]] = {
    "networkpolicystats": [NAMESPACE, NAME, *COUNTERS],
    "antreanetworkpolicystats": [NAMESPACE, NAME, *COUNTERS, Column("RULES", _rules)],
    "antreaclusternetworkpolicystats": [NAME, *COUNTERS, Column("RULES", _rules)],
}
ALIASES = {
    "networkpolicystats": ("nps",),
    "antreanetworkpolicystats": ("annps", "anps"),
    "antreaclusternetworkpolicystats": ("acnps",),
}


def register(get_sub: Any, parent: argparse.ArgumentParser) -> None:
    for resource, (kind, _source, namespaced) in names.RESOURCES.items():
        p = get_sub.add_parser(
            resource,
            aliases=list(ALIASES[resource]),
            parents=[parent],
            help=f"{kind}: traffic counters per policy and rule, all nodes (controller)",
        )
        p.add_argument("name", nargs="?", help="the policy's name")
        if namespaced:
            p.add_argument("-n", "--namespace", help="only this namespace (default: all)")
        p.set_defaults(func=_get_stats, stats_resource=resource)


def stats_path(resource: str, namespace: str | None, name: str | None) -> str:
    namespaced = names.RESOURCES[resource][2]
    if namespaced and name and not namespace:
        namespace = "default"
    path = names.PATH
    if namespaced and namespace:
        path += f"/namespaces/{namespace}"
    path += f"/{resource}"
    return f"{path}/{name}" if name else path


def _get_stats(args: argparse.Namespace) -> int:
    resource = args.stats_resource
    path = stats_path(resource, getattr(args, "namespace", None), args.name)
    client = ControllerClient(
        args.kubeconfig, args.server, netns=args.netns, via_apiserver=args.via_apiserver
    )
    data: Any = asyncio.run(client.get(path))
    if not args.name:
        data = data["items"]
    return emit(data, args.output, COLUMNS[resource])
