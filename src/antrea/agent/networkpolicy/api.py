"""The policy routes of the agent's local API (antctl on a node).

- ``GET /networkpolicies[?name=&namespace=&pod=ns/name]``: policies received for this node with
  their rules, realization state (generation realized, errors) and per-rule counters;
- ``GET /appliedtogroups``, ``GET /addressgroups``: the groups as this agent holds them;
- ``GET /networkpolicyflows?name=&namespace=``: the flows realizing one policy (one dump);
- ``GET /ovstracing?source=ns/pod&destination=ns/pod|IP[&flow=tcp,tp_dst=80]``: the
  ``ofproto/trace`` of a packet from a local pod (antctl trace-packet).

Policies and groups are the shared control-plane views (`antrea.apis.controlplane.views`, the
controller's too) with this agent's own fields added.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from antrea.agent.networkpolicy.conjunctions import atom_match
from antrea.agent.networkpolicy.stats import label_conj_id
from antrea.apis import agentapi
from antrea.apis.controlplane import views
from antrea.apis.controlplane.types import NetworkPolicy, PodReference
from antrea.apis.controlplane.views import rule_json
from antrea.ovs.openflow.flow import Match
from antrea.ovs.openflow.render import render_trace_packet

if TYPE_CHECKING:
    from antrea.agent.networkpolicy import PolicyAgent

POLICY_AGENT: web.AppKey[PolicyAgent] = web.AppKey("networkpolicy")
_PROTO = re.compile(r"^(ip|tcp|udp|sctp|icmp)(,|$)")


async def policy_json(pa: PolicyAgent, policy: NetworkPolicy) -> dict[str, Any]:
    ctl = pa.controller
    state = ctl.policy_state(policy.name)
    stats = await pa.stats.rules() if pa.stats is not None else {}
    rules = []
    for cr in ctl.cache.rules_of(policy.name):
        realized = ctl.reconciler.realized.get(cr.id)
        rules.append(
            {
                **rule_json(cr.rule),
                "id": cr.id,
                "index": cr.index,
                "realized": realized is not None and cr.id not in ctl.rule_errors,
                "error": ctl.rule_errors.get(cr.id, ""),
                "conjunctions": sorted(c.conj_id for c in realized.conjs.values())
                if realized
                else [],
                "stats": stats[cr.id].to_json() if cr.id in stats else None,
            }
        )
    local: set[str] = set()
    for g in policy.applied_to_groups:
        local |= {f"{m.pod.namespace}/{m.pod.name}" for m in ctl.cache.applied_to_groups.get(g, ())}
    return {
        **views.policy_json(policy),
        "realizedGeneration": state.realized_generation if state else None,
        "realized": bool(state and state.realized),
        "phase": state.phase if state else "Realizing",
        "message": state.message if state else "",
        "localPods": sorted(local),
        "rules": rules,
    }


def find_policies(pa: PolicyAgent, name: str | None, namespace: str | None) -> list[NetworkPolicy]:
    out = []
    for p in pa.controller.cache.policies.values():
        ref = p.source_ref
        if name and name not in (p.name, ref.name):
            continue
        if namespace and ref.namespace != namespace:
            continue
        out.append(p)
    return sorted(out, key=lambda p: (p.source_ref.namespace, p.source_ref.name))


async def networkpolicies(request: web.Request) -> web.Response:
    pa = request.app[POLICY_AGENT]
    q = request.query
    policies = find_policies(pa, q.get("name"), q.get("namespace"))
    if "pod" in q:
        ns, _, name = q["pod"].rpartition("/")
        names = pa.controller.cache.policies_of_pod(PodReference(ns or "default", name))
        policies = [p for p in policies if p.name in names]
    return web.json_response([await policy_json(pa, p) for p in policies])


async def appliedtogroups(request: web.Request) -> web.Response:
    pa = request.app[POLICY_AGENT]
    groups = pa.controller.cache.applied_to_groups
    return web.json_response(
        [views.group_json("AppliedToGroup", n, ms) for n, ms in sorted(groups.items())]
    )


async def addressgroups(request: web.Request) -> web.Response:
    pa = request.app[POLICY_AGENT]
    groups = pa.controller.cache.address_groups
    return web.json_response(
        [views.group_json("AddressGroup", n, ms) for n, ms in sorted(groups.items())]
    )


async def networkpolicyflows(request: web.Request) -> web.Response:
    pa = request.app[POLICY_AGENT]
    q = request.query
    policies = find_policies(pa, q.get("name"), q.get("namespace"))
    if not policies:
        raise web.HTTPNotFound(
            text=f"no NetworkPolicy {q.get('namespace', '')}/{q.get('name', '')} on this node"
        )
    rec = pa.controller.reconciler
    conj_ids: set[int] = set()
    iso: set[Match] = set()
    for p in policies:
        for cr in pa.controller.cache.rules_of(p.name):
            realized = rec.realized.get(cr.id)
            if realized is None:
                continue
            conj_ids |= {c.conj_id for c in realized.conjs.values()}
            iso.update(atom_match(a) for a in realized.isolated)
    flows = await pa.dump_policy_flows()
    out = []
    for f in flows:
        ids = set(f.conj_ids)
        if f.ct_label is not None:
            ids.add(label_conj_id(f.ct_label))
        is_iso = f.drops and f.parsed.exact in iso
        if ids & conj_ids or is_iso:
            out.append({"table": f.table, "priority": f.priority, "flow": f.text,
                        "packets": f.n_packets, "bytes": f.n_bytes})  # fmt: skip
    return web.json_response(out)


async def ovstracing(request: web.Request) -> web.Response:
    pa = request.app[POLICY_AGENT]
    q = request.query
    source, destination = q.get("source", ""), q.get("destination", "")
    if not source or not destination:
        raise web.HTTPBadRequest(text="source and destination are required")
    try:
        flow = pa.trace_flow(source, destination, q.get("flow", ""))
    except LookupError as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    result = await pa.trace(flow)
    return web.json_response({"flow": flow, "result": result})


def build_trace_flow(
    *,
    src_ofport: int,
    src_mac: str,
    src_ip: str,
    dst_ip: str,
    dst_mac: str,
    extra: str = "",
) -> str:
    """The ``ofproto/trace`` flow of a packet a local pod sends (``-f`` adds fields)."""
    extra = extra.strip().strip(",")
    proto = "ip"
    m = _PROTO.match(extra)
    if m is not None:
        proto = m.group(1)
        extra = extra[m.end() :]
    return render_trace_packet(
        in_port=src_ofport,
        dl_src=src_mac,
        dl_dst=dst_mac,
        proto=proto,
        nw_src=ipaddress.IPv4Address(src_ip),
        nw_dst=ipaddress.IPv4Address(dst_ip),
        extra=extra,
    )


def add_routes(app: web.Application, pa: PolicyAgent) -> None:
    app[POLICY_AGENT] = pa
    app.router.add_get(agentapi.NETWORKPOLICIES, networkpolicies)
    app.router.add_get(agentapi.APPLIEDTOGROUPS, appliedtogroups)
    app.router.add_get(agentapi.ADDRESSGROUPS, addressgroups)
    app.router.add_get(agentapi.NETWORKPOLICYFLOWS, networkpolicyflows)
    app.router.add_get(agentapi.OVSTRACING, ovstracing)
