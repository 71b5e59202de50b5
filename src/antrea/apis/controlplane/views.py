"""JSON views of control-plane objects: what the controller's and the agent's local APIs return
and antctl prints.

Field names follow Antrea's ``controlplane.antrea.io/v1beta2`` JSON (``groupMembers``,
``appliedToGroups``, ``sourceRef``...), empty fields left out. Each end adds only what it alone
knows (the controller: span and aggregated status; the agent: realization and counters). The
msgpack stream never uses these; see `codec` for that.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from antrea.apis.controlplane.names import GROUP_VERSION
from antrea.apis.controlplane.types import (
    AddressGroup,
    AppliedToGroup,
    GroupMember,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyRule,
)

API_VERSION = GROUP_VERSION


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


def members_json(ms: Iterable[GroupMember]) -> list[dict[str, Any]]:
    """Members in a stable order: namespace, name, addresses."""
    return [member_json(m) for m in sorted(ms, key=lambda m: (m.pod.namespace, m.pod.name, m.ips))]


def peer_json(p: NetworkPolicyPeer) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if p.address_groups:
        out["addressGroups"] = list(p.address_groups)
    if p.ip_blocks:
        out["ipBlocks"] = [
            {"cidr": b.cidr, **({"except": list(b.except_)} if b.except_ else {})}
            for b in p.ip_blocks
        ]
    return out


def rule_json(r: NetworkPolicyRule) -> dict[str, Any]:
    out: dict[str, Any] = {"direction": str(r.direction), "priority": r.priority}
    if r.name:
        out["name"] = r.name
    key = "from" if r.direction.value == "In" else "to"
    out[key] = peer_json(r.peer())
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


def policy_json(obj: NetworkPolicy) -> dict[str, Any]:
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
        "rules": [rule_json(r) for r in obj.rules],
        "appliedToGroups": list(obj.applied_to_groups),
        "generation": obj.generation,
    }
    if obj.tier_priority is not None:  # Antrea-native: its place in the evaluation order
        out["tierPriority"] = obj.tier_priority
        out["priority"] = obj.priority
    return out


def group_json(kind: str, name: str, members: Iterable[GroupMember]) -> dict[str, Any]:
    """An ``AddressGroup`` or ``AppliedToGroup`` by name and members."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name},
        "groupMembers": members_json(members),
    }


def object_kind(obj: AddressGroup | AppliedToGroup) -> str:
    return "AddressGroup" if isinstance(obj, AddressGroup) else "AppliedToGroup"
