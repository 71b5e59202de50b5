"""Controller-side antctl commands: ``get networkpolicy|addressgroup|appliedtogroup|ci|tier``.

Tables follow Antrea's antctl columns where they exist (``NAME APPLIED-TO RULES SOURCE`` for
policies, ``NAME PODS`` / ``NAME POD-IPS`` for groups), plus ``NODES-REALIZED`` (agents'
reports, "2/2") and ``SPAN`` (the nodes an object is sent to), and for policies upstream's
``TIER-PRIORITY`` and ``PRIORITY`` (Antrea-native only).

``get networkpolicy -T ACNP|ANNP|K8sNP`` keeps one kind of source; ``--sort-by
effectivePriority`` lists policies in evaluation order: Antrea-native policies of the
non-baseline tiers by tier priority then policy priority, then Kubernetes NetworkPolicies,
then the baseline tier's.

``get tier`` lists the Tiers (from the Kubernetes API) in priority order with the number of
Antrea-native policies in each.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from antrea.antctl.controller_client import AntctlError, ControllerClient, kubeconfig_path
from antrea.antctl.output import Column, emit, summarize
from antrea.apis.controlplane import names

CONTROLPLANE = names.PATH


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
    Column("TIER-PRIORITY", lambda o: o.get("tierPriority")),
    Column("PRIORITY", lambda o: o.get("priority")),
]
TYPES = {
    "acnp": "AntreaClusterNetworkPolicy",
    "annp": "AntreaNetworkPolicy",
    "k8snp": "K8sNetworkPolicy",
}
BASELINE_TIER_PRIORITY = 253
# Kubernetes NetworkPolicies are evaluated after every non-baseline tier, before baseline.
K8S_NP_PLACE = BASELINE_TIER_PRIORITY - 0.5


def effective_priority(o: dict[str, Any]) -> tuple[float, float, str, str]:
    """Sort key: the order in which a policy's rules are evaluated."""
    ref = o.get("sourceRef") or {}
    tier = o.get("tierPriority")
    prio = o.get("priority")
    place = float(tier) if tier is not None else K8S_NP_PLACE
    return (
        place,
        float(prio) if prio is not None else 0.0,
        f"{ref.get('namespace', '')}/{ref.get('name', '')}",
        o["metadata"]["name"],
    )


def _policy_type(value: str) -> str:
    key = value.lower()
    if key not in TYPES:
        raise argparse.ArgumentTypeError(f"unknown policy type {value!r} (ACNP, ANNP or K8sNP)")
    return TYPES[key]


TIER_COLUMNS = [
    Column("NAME", lambda o: o["name"]),
    Column("PRIORITY", lambda o: o["priority"]),
    Column("ACNPS", lambda o: o["acnps"]),
    Column("ANNPS", lambda o: o["annps"]),
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
            p.add_argument(
                "-T",
                "--type",
                type=_policy_type,
                help="only policies of this source type: ACNP, ANNP or K8sNP",
            )
            p.add_argument(
                "--sort-by",
                choices=["effectivePriority"],
                help="effectivePriority: in evaluation order (tier, priority; K8s before baseline)",
            )
        p.set_defaults(func=_get_objects, plural=plural, columns=columns)
    p = get_sub.add_parser(
        "controllerinfo",
        aliases=["ci"],
        parents=[parent],
        help="controller status: leader, connected agents, object counts",
    )
    p.set_defaults(func=_get_controllerinfo)
    p = get_sub.add_parser(
        "tier",
        aliases=["tiers", "tr"],
        parents=[parent],
        help="Tiers in priority order, with their Antrea-native policies",
    )
    p.add_argument("name", nargs="?", help="one tier")
    p.set_defaults(func=_get_tiers)


def _client(args: argparse.Namespace) -> ControllerClient:
    return ControllerClient(
        getattr(args, "kubeconfig", None),
        getattr(args, "server", None),
        netns=getattr(args, "netns", None),
        via_apiserver=getattr(args, "via_apiserver", None),
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
        kind = getattr(args, "type", None)
        if kind:
            data = [o for o in data if (o.get("sourceRef") or {}).get("type") == kind]
        if getattr(args, "sort_by", None) == "effectivePriority":
            data.sort(key=effective_priority)
    return emit(data, args.output, args.columns)


CRD_GV = "/apis/crd.antrea.io/v1beta1"


async def list_tiers(kubeconfig: str | None) -> list[dict[str, Any]]:
    """Tiers with the count of ACNPs/ANNPs in each (a policy without a tier is in
    ``application``), by priority."""
    from antrea.k8s.resources import ApiClientResources, KubeError, load_api_client

    path = kubeconfig_path(kubeconfig)
    if path is None:
        raise AntctlError("no kubeconfig: use --kubeconfig or set KUBECONFIG")
    client = await load_api_client(path)
    try:
        kube = ApiClientResources(client)
        tiers = ((await kube.get(f"{CRD_GV}/tiers")) or {}).get("items") or []
        acnps = ((await kube.get(f"{CRD_GV}/clusternetworkpolicies")) or {}).get("items") or []
        annps = ((await kube.get(f"{CRD_GV}/networkpolicies")) or {}).get("items") or []
    except KubeError as exc:
        raise AntctlError(f"cannot list Tiers and Antrea-native policies: {exc}") from exc
    finally:
        await client.close()

    return tier_rows(tiers, acnps, annps)


def tier_rows(
    tiers: list[dict[str, Any]], acnps: list[dict[str, Any]], annps: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    def count(policies: list[dict[str, Any]], tier: str) -> int:
        return sum(
            1 for p in policies if ((p.get("spec") or {}).get("tier") or "application") == tier
        )

    out = [
        {
            "name": t["metadata"]["name"],
            "priority": (t.get("spec") or {}).get("priority"),
            "acnps": count(acnps, t["metadata"]["name"]),
            "annps": count(annps, t["metadata"]["name"]),
        }
        for t in tiers
    ]
    out.sort(key=lambda t: t["priority"] if isinstance(t["priority"], int) else 1 << 30)
    return out


def _get_tiers(args: argparse.Namespace) -> int:
    data = asyncio.run(list_tiers(getattr(args, "kubeconfig", None)))
    if args.name:
        data = [t for t in data if t["name"] == args.name]
        if not data:
            raise AntctlError(f'tier "{args.name}" not found')
    return emit(data, args.output, TIER_COLUMNS)


def _get_controllerinfo(args: argparse.Namespace) -> int:
    data = asyncio.run(_client(args).get("/apis/system.antrea.io/v1beta1/controllerinfo"))
    return emit(data, args.output, CONTROLLERINFO_COLUMNS)
