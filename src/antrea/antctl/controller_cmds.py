"""Controller-side antctl commands: ``get networkpolicy|addressgroup|appliedtogroup|ci``.

Tables follow Antrea's antctl columns where they exist (``NAME APPLIED-TO RULES SOURCE`` for
policies, ``NAME PODS`` / ``NAME POD-IPS`` for groups), plus ``NODES-REALIZED`` (agents'
reports, "2/2") and ``SPAN`` (the nodes an object is sent to).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from antrea.antctl.controller_client import ControllerClient
from antrea.antctl.output import Column, emit, summarize

CONTROLPLANE = "/apis/controlplane.antrea.io/v1beta2"


def _source(o: dict[str, Any]) -> str:
    ref = o.get("sourceRef") or {}
    return f"{ref.get('type')}:{ref.get('namespace')}/{ref.get('name')}"


def _realized(o: dict[str, Any]) -> str:
    st = o.get("status")
    if not st:
        return ""
    text = f"{st['currentNodesRealized']}/{st['desiredNodesRealized']}"
    if st.get("phase") == "Failed":  # a rule cannot be realized there (its pods stay isolated)
        text += f" Failed on {','.join(st.get('failedNodes') or [])}"
    return text


def _pods(o: dict[str, Any]) -> str:
    return summarize(f"{m['pod']['namespace']}/{m['pod']['name']}" for m in o["groupMembers"])


def _ips(o: dict[str, Any]) -> str:
    return summarize(ip for m in o["groupMembers"] for ip in m["ips"])


def _span(o: dict[str, Any]) -> str:
    return summarize(o.get("span") or [])


NETWORKPOLICY_COLUMNS = [
    Column("NAME", lambda o: o["metadata"]["name"]),
    Column("APPLIED-TO", lambda o: summarize(o["appliedToGroups"])),
    Column("RULES", lambda o: len(o["rules"])),
    Column("SOURCE", _source),
    Column("NODES-REALIZED", _realized),
    Column("SPAN", _span),
]
APPLIEDTOGROUP_COLUMNS = [
    Column("NAME", lambda o: o["metadata"]["name"]),
    Column("PODS", _pods),
    Column("SPAN", _span),
]
ADDRESSGROUP_COLUMNS = [
    Column("NAME", lambda o: o["metadata"]["name"]),
    Column("POD-IPS", _ips),
    Column("SPAN", _span),
]
CONTROLLERINFO_COLUMNS = [
    Column("NODE", lambda o: o.get("nodeName")),
    Column("LEADER", lambda o: o.get("leader")),
    Column("STATUS", lambda o: o.get("servingStatus")),
    Column("NETWORK-POLICIES", lambda o: o.get("networkPolicyCount")),
    Column("ADDRESS-GROUPS", lambda o: o.get("addressGroupCount")),
    Column("APPLIED-TO-GROUPS", lambda o: o.get("appliedToGroupCount")),
    Column("CONNECTED-AGENTS", lambda o: o.get("connectedAgentCount")),
]

RESOURCES: dict[str, tuple[str, tuple[str, ...], list[Column]]] = {
    "networkpolicy": (
        "networkpolicies",
        ("netpol", "networkpolicies", "np"),
        NETWORKPOLICY_COLUMNS,
    ),
    "appliedtogroup": ("appliedtogroups", ("atg", "appliedtogroups"), APPLIEDTOGROUP_COLUMNS),
    "addressgroup": ("addressgroups", ("ag", "addressgroups"), ADDRESSGROUP_COLUMNS),
}


def register(get_sub: Any, top_sub: Any, parent: argparse.ArgumentParser) -> None:
    for name, (plural, aliases, columns) in RESOURCES.items():
        p = get_sub.add_parser(
            name,
            aliases=list(aliases),
            parents=[parent],
            help=f"{plural} computed by the controller",
        )
        p.add_argument("name", nargs="?", help="object name (a policy's name is its source UID)")
        p.add_argument("--node", help="only objects sent to this node (span)")
        if name == "networkpolicy":
            p.add_argument("-n", "--namespace", help="only policies from this namespace")
        p.set_defaults(func=_get_objects, plural=plural, columns=columns)
    p = get_sub.add_parser(
        "controllerinfo",
        aliases=["ci"],
        parents=[parent],
        help="controller status: leader, connected agents, object counts",
    )
    p.set_defaults(func=_get_controllerinfo)


def _client(args: argparse.Namespace) -> ControllerClient:
    return ControllerClient(
        getattr(args, "kubeconfig", None),
        getattr(args, "server", None),
        netns=getattr(args, "netns", None),
    )


def _get_objects(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.name:
        data: Any = asyncio.run(client.get(f"{CONTROLPLANE}/{args.plural}/{args.name}"))
    else:
        params = {"nodeName": args.node} if args.node else None
        data = asyncio.run(client.get(f"{CONTROLPLANE}/{args.plural}", params))["items"]
        ns = getattr(args, "namespace", None)
        if ns:
            data = [o for o in data if (o.get("sourceRef") or {}).get("namespace") == ns]
    return emit(data, args.output, args.columns)


def _get_controllerinfo(args: argparse.Namespace) -> int:
    data = asyncio.run(_client(args).get("/apis/system.antrea.io/v1beta1/controllerinfo"))
    return emit(data, args.output, CONTROLLERINFO_COLUMNS)
