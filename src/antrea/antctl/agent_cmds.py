"""antctl on a node: the local agent's API (127.0.0.1:apiPort inside the node's namespace).

Commands (Antrea's agent-mode antctl, docs/antctl.md):

- ``get podinterface|pi [NAME] [-n NS]``
- ``get ovsflows|of [-p POD -n NS | -N POLICY [-n NS] | -S SERVICE [-n NS] | -T TABLE]``
- ``trace-packet -S NS/POD -D NS/POD|IP [-f FLOW]`` (``ovs-appctl ofproto/trace`` in the agent)
- ``get agentinfo|ai``
- ``get networkpolicy|appliedtogroup|addressgroup``: when ``ANTREA_AGENT_API`` is set (a node
  shell: ``antrea lab exec NODE -- antctl ...``) they show what THIS agent received and
  realized (``--controller`` asks the controller instead), like upstream's agent mode.

The agent is found at ``$ANTREA_AGENT_API`` (e.g. ``http://127.0.0.1:10350``), else
``--agent-api``, else ``http://127.0.0.1:10350``. Standard library HTTP only: antctl on a node
should start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from antrea.antctl.cli import common_parent
from antrea.antctl.controller_client import AntctlError
from antrea.antctl.output import Column, emit, summarize
from antrea.apis import agentapi

DEFAULT_API = f"http://127.0.0.1:{agentapi.DEFAULT_PORT}"
ENV_API = "ANTREA_AGENT_API"


def agent_mode() -> bool:
    return bool(os.environ.get(ENV_API))


def _base(args: argparse.Namespace) -> str:
    return (getattr(args, "agent_api", None) or os.environ.get(ENV_API) or DEFAULT_API).rstrip("/")


def agent_get(args: argparse.Namespace, path: str, params: dict[str, str] | None = None) -> Any:
    query = {k: v for k, v in (params or {}).items() if v}
    url = _base(args) + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return json.loads(resp.read().decode())
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace").strip()
        raise AntctlError(f"agent answered {exc.code}: {body or exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise AntctlError(
            f"cannot reach the agent at {_base(args)} ({exc}); run antctl on a node "
            f"(antrea lab exec NODE -- antctl ...) or set {ENV_API}"
        ) from None


def _agent_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--agent-api", help=f"agent API URL (default ${ENV_API} or {DEFAULT_API})")
    return p


# -- columns ----------------------------------------------------------------------------
PODINTERFACE_COLUMNS = [
    Column("NAMESPACE", lambda o: o.get("podNamespace")),
    Column("NAME", lambda o: o.get("podName")),
    Column("INTERFACE-NAME", lambda o: o.get("interfaceName")),
    Column("IP", lambda o: o.get("ip")),
    Column("MAC", lambda o: o.get("mac")),
    Column("OF-PORT", lambda o: o.get("ofport")),
    Column("CONTAINER-ID", lambda o: (o.get("containerID") or "")[:12]),
]
FLOW_COLUMNS = [Column("FLOW", lambda o: o.get("flow"))]
AGENTINFO_COLUMNS = [
    Column("NODE", lambda o: o.get("nodeName")),
    Column("STATUS", lambda o: "Healthy" if o.get("policyReady") else "Starting"),
    Column("NODE-SUBNET", lambda o: o.get("podCIDR")),
    Column("CONTROLLER", lambda o: "connected" if o.get("controllerConnected") else "disconnected"),
    Column("NETWORK-POLICIES", lambda o: o.get("networkPolicyCount")),
    Column("ADDRESS-GROUPS", lambda o: o.get("addressGroupCount")),
    Column("APPLIED-TO-GROUPS", lambda o: o.get("appliedToGroupCount")),
    Column("LOCAL-PODS", lambda o: o.get("localPodCount")),
]


def _realized(o: dict[str, Any]) -> str:
    if o.get("realized"):
        return f"gen {o.get('realizedGeneration')}"
    if o.get("phase") == "Failed":
        return f"Failed: {o.get('message')}"
    return o.get("message") or "pending"


def _sum(o: dict[str, Any], key: str) -> int:
    return sum((r.get("stats") or {}).get(key, 0) for r in o.get("rules") or [])


AGENT_NETWORKPOLICY_COLUMNS = [
    Column("NAME", lambda o: o["metadata"]["name"]),
    Column(
        "SOURCE",
        lambda o: (
            f"{o['sourceRef']['type']}:{o['sourceRef']['namespace']}/{o['sourceRef']['name']}"
        ),
    ),
    Column("RULES", lambda o: len(o.get("rules") or [])),
    Column("LOCAL-PODS", lambda o: summarize(o.get("localPods") or [])),
    Column("REALIZED", _realized),
    Column("SESSIONS", lambda o: _sum(o, "sessions")),
    Column("PACKETS", lambda o: _sum(o, "packets")),
]
AGENT_GROUP_COLUMNS = {
    "appliedtogroups": [
        Column("NAME", lambda o: o["metadata"]["name"]),
        Column(
            "PODS",
            lambda o: summarize(
                f"{m['pod']['namespace']}/{m['pod']['name']}" for m in o["groupMembers"]
            ),
        ),
    ],
    "addressgroups": [
        Column("NAME", lambda o: o["metadata"]["name"]),
        Column("POD-IPS", lambda o: summarize(ip for m in o["groupMembers"] for ip in m["ips"])),
    ],
}


# -- handlers ---------------------------------------------------------------------------
def _podinterface(args: argparse.Namespace) -> int:
    data = agent_get(args, agentapi.PODINTERFACES, {"namespace": args.namespace, "name": args.name})
    return emit(data, args.output, PODINTERFACE_COLUMNS)


def _ovsflows(args: argparse.Namespace) -> int:
    if args.networkpolicy:
        data = agent_get(
            args,
            agentapi.NETWORKPOLICYFLOWS,
            {"name": args.networkpolicy, "namespace": args.namespace},
        )
    else:
        pod = ""
        if args.pod:
            pod = args.pod if "/" in args.pod else f"{args.namespace or 'default'}/{args.pod}"
        service = ""
        if args.service:
            ns = args.namespace or "default"
            service = args.service if "/" in args.service else f"{ns}/{args.service}"
        data = agent_get(
            args, agentapi.OVSFLOWS, {"table": args.table, "pod": pod, "service": service}
        )
    return emit(data, args.output, FLOW_COLUMNS)


def _trace(args: argparse.Namespace) -> int:
    data = agent_get(
        args,
        agentapi.OVSTRACING,
        {"source": args.source, "destination": args.destination, "flow": args.flow},
    )
    if args.output == "table":
        print(f"trace flow: {data['flow']}\nresult:\n{data['result']}")
        return 0
    return emit(data, args.output, [])


async def _agentinfo_via_apiserver(args: argparse.Namespace) -> Any:
    """``/agentinfo`` of the agent on ``--node`` through the Kubernetes API (pods/proxy)."""
    from antrea.antctl import viaapiserver
    from antrea.antctl.controller_client import kubeconfig_path
    from antrea.apis.controlplane.names import NAMESPACE
    from antrea.k8s.resources import bearer_token, load_api_client

    path = kubeconfig_path(getattr(args, "kubeconfig", None))
    if path is None:
        raise AntctlError("no kubeconfig: use --kubeconfig or set KUBECONFIG")
    try:
        api_client = await load_api_client(path)
    except Exception as exc:
        raise AntctlError(f"invalid kubeconfig {path}: {exc}") from exc
    try:
        return await viaapiserver.agent_request(
            api_client,
            NAMESPACE,
            args.node,
            agentapi.DEFAULT_PORT,
            agentapi.AGENTINFO,
            token=bearer_token(api_client),
        )
    finally:
        await api_client.close()


def _agentinfo(args: argparse.Namespace) -> int:
    if getattr(args, "node", None):
        import asyncio

        info = dict(asyncio.run(_agentinfo_via_apiserver(args)))
        for key in ("networkPolicyCount", "addressGroupCount", "appliedToGroupCount"):
            info.setdefault(key, None)
        return emit(info, args.output, AGENTINFO_COLUMNS)
    info = dict(agent_get(args, agentapi.AGENTINFO))
    for key, path in (
        ("networkPolicyCount", agentapi.NETWORKPOLICIES),
        ("addressGroupCount", agentapi.ADDRESSGROUPS),
        ("appliedToGroupCount", agentapi.APPLIEDTOGROUPS),
    ):
        try:
            info.setdefault(key, len(agent_get(args, path)))
        except AntctlError:
            info.setdefault(key, None)
    return emit(info, args.output, AGENTINFO_COLUMNS)


def _networkpolicy(args: argparse.Namespace, controller_func: Any) -> int:
    if getattr(args, "controller", False) or not agent_mode():
        rc: int = controller_func(args)
        return rc
    pod = args.pod or ""
    if pod and "/" not in pod:
        pod = f"{args.namespace or 'default'}/{pod}"
    data = agent_get(
        args, agentapi.NETWORKPOLICIES, {"name": args.name, "namespace": args.namespace, "pod": pod}
    )
    if args.name and not data:
        raise AntctlError(f"NetworkPolicy {args.name} is not on this node")
    return emit(data, args.output, AGENT_NETWORKPOLICY_COLUMNS)


def _group(args: argparse.Namespace, controller_func: Any, plural: str) -> int:
    if getattr(args, "controller", False) or not agent_mode():
        rc: int = controller_func(args)
        return rc
    data = agent_get(args, f"/{plural}")
    if args.name:
        data = [g for g in data if g["metadata"]["name"] == args.name]
        if not data:
            raise AntctlError(f"{plural[:-1]} {args.name} is not on this node")
    return emit(data, args.output, AGENT_GROUP_COLUMNS[plural])


def register(get_sub: Any, top_sub: Any) -> None:
    parents = [common_parent(), _agent_parent()]
    p = get_sub.add_parser(
        "podinterface", aliases=["pi", "podinterfaces"], parents=parents,
        help="local pods' OVS interfaces (agent)",
    )  # fmt: skip
    p.add_argument("name", nargs="?", help="pod name")
    p.add_argument("-n", "--namespace", help="pod namespace")
    p.set_defaults(func=_podinterface)

    p = get_sub.add_parser(
        "ovsflows", aliases=["of"], parents=parents, help="OVS flows of this node (agent)"
    )
    p.add_argument("-p", "--pod", help="flows of a local pod (NAME with -n, or NS/NAME)")
    p.add_argument("-n", "--namespace", help="namespace of the pod or the policy")
    p.add_argument("-N", "--networkpolicy", help="flows realizing a NetworkPolicy (name)")
    p.add_argument("-S", "--service", help="flows realizing a Service (NAME with -n, or NS/NAME)")
    p.add_argument("-T", "--table", help="table number or name (e.g. 90 or IngressRule)")
    p.set_defaults(func=_ovsflows)

    p = get_sub.add_parser(
        "agentinfo", aliases=["ai"], parents=parents, help="this node's agent (agent)"
    )
    p.add_argument(
        "--node",
        help="the agent on NODE, from anywhere: through the Kubernetes API (pods/proxy to its "
        "antrea-agent pod, https port 10350)",
    )
    p.set_defaults(func=_agentinfo)

    p = top_sub.add_parser(
        "trace-packet", parents=parents,
        help="trace a packet from a local pod through the OVS pipeline (agent)",
    )  # fmt: skip
    p.add_argument("-S", "--source", required=True, help="source pod NS/NAME (local)")
    p.add_argument("-D", "--destination", required=True, help="destination NS/NAME or IP")
    p.add_argument("-f", "--flow", default="", help="extra flow fields, e.g. tcp,tp_dst=80")
    p.set_defaults(func=_trace)

    # agent mode for the controller's object commands
    for name, plural in (
        ("networkpolicy", "networkpolicies"),
        ("appliedtogroup", "appliedtogroups"),
        ("addressgroup", "addressgroups"),
    ):
        existing = get_sub.choices.get(name)
        if existing is None:
            continue
        controller_func = existing.get_default("func")
        existing.add_argument("--agent-api", help=f"agent API URL (default ${ENV_API})")
        existing.add_argument(
            "--controller", action="store_true",
            help=f"ask the controller even on a node (${ENV_API} set)",
        )  # fmt: skip
        if name == "networkpolicy":
            existing.add_argument("-p", "--pod", help="only policies applied to this local pod")
            existing.set_defaults(func=lambda a, f=controller_func: _networkpolicy(a, f))
        else:
            existing.set_defaults(func=lambda a, f=controller_func, pl=plural: _group(a, f, pl))
