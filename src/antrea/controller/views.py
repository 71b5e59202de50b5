"""JSON views of computed objects for the controller's list/get API (what antctl prints).

Field names follow Antrea's ``controlplane.antrea.io/v1beta2`` JSON (``groupMembers``,
``appliedToGroups``, ``sourceRef``...), plus the controller-side ``span`` and, for policies, the
aggregated realization ``status``. The msgpack stream never uses these; see `codec` for that.
"""

from __future__ import annotations

from typing import Any

from antrea.apis.controlplane.types import (
    AddressGroup,
    AppliedToGroup,
    ControlPlaneObject,
    GroupMember,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyRule,
)
from antrea.controller.status import PolicyStatus

API_VERSION = "controlplane.antrea.io/v1beta2"


def member_json(m: GroupMember) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pod": {"namespace": m.pod.namespace, "name": m.pod.name},
        "ips": list(m.ips),
    }
    if m.node:
        out["node"] = m.node
    if m.ports:
        out["ports"] = [
            {"name": p.name, "protocol": str(p.protocol), "port": p.port} for p in m.ports
        ]
    return out


def _sorted_members(ms: frozenset[GroupMember]) -> list[dict[str, Any]]:
    return [member_json(m) for m in sorted(ms, key=lambda m: (m.pod.namespace, m.pod.name, m.ips))]


def _peer_json(p: NetworkPolicyPeer) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if p.address_groups:
        out["addressGroups"] = list(p.address_groups)
    if p.ip_blocks:
        out["ipBlocks"] = [
            {"cidr": b.cidr, **({"except": list(b.except_)} if b.except_ else {})}
            for b in p.ip_blocks
        ]
    return out


def _rule_json(r: NetworkPolicyRule) -> dict[str, Any]:
    out: dict[str, Any] = {"direction": str(r.direction), "priority": r.priority}
    if r.name:
        out["name"] = r.name
    key = "from" if r.direction.value == "In" else "to"
    out[key] = _peer_json(r.peer())
    if r.services is not None:
        out["services"] = [
            {
                "protocol": str(s.protocol),
                **({"port": s.port} if s.port is not None else {}),
                **({"endPort": s.end_port} if s.end_port is not None else {}),
            }
            for s in r.services
        ]
    return out


def object_json(
    obj: ControlPlaneObject, span: frozenset[str], status: PolicyStatus | None = None
) -> dict[str, Any]:
    if isinstance(obj, NetworkPolicy):
        ref = obj.source_ref
        out: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": "NetworkPolicy",
            "metadata": {"name": obj.name},
            "sourceRef": {
                "type": ref.type,
                "namespace": ref.namespace,
                "name": ref.name,
                "uid": ref.uid,
            },
            "rules": [_rule_json(r) for r in obj.rules],
            "appliedToGroups": list(obj.applied_to_groups),
            "generation": obj.generation,
            "span": sorted(span),
        }
        if obj.tier_priority is not None:  # Antrea-native: its place in the evaluation order
            out["tierPriority"] = obj.tier_priority
            out["priority"] = obj.priority
        if status is not None:
            out["status"] = {
                "phase": status.phase,
                "currentNodesRealized": status.current,
                "desiredNodesRealized": status.desired,
                **({"failedNodes": list(status.failed)} if status.failed else {}),
                **(
                    {"failures": [{"node": n, "message": m} for n, m in status.messages]}
                    if status.messages
                    else {}
                ),
            }
        return out
    kind = "AddressGroup" if isinstance(obj, AddressGroup) else "AppliedToGroup"
    assert isinstance(obj, AddressGroup | AppliedToGroup)
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": obj.name},
        "groupMembers": _sorted_members(obj.members),
        "span": sorted(span),
    }
