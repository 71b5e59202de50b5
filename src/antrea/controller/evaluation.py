"""Which rule decides traffic from one pod to another (``antctl query
networkpolicyevaluation``, upstream's NetworkPolicyEvaluation).

Evaluated on the controller's computed policies, by peers only (ports and protocols are not
part of the question, as upstream). Each direction is evaluated on its own side, in the order
the datapath uses:

1. Antrea-native rules applied to the pod (policy-level or rule-level appliedTo), by tier
   priority, policy priority, then rule position: the first whose peer holds the other pod
   decides with its action; ``Pass`` skips to the Kubernetes layer.
2. Kubernetes NetworkPolicies applied to the pod: if none has a rule in this direction, the pod
   is not isolated (allowed, no rule); otherwise the first rule (policies by namespace/name,
   rules in order) whose peer holds the other pod allows; none: the isolation drops it (the
   answer names the isolating policies).

A peer holds a pod when one of its AddressGroups has it as a member, or one of its ipBlocks
contains one of the pod's IPs (learnt from any group that has the pod) and none of the
block's exceptions does.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from antrea.apis.controlplane.types import (
    AddressGroup,
    AppliedToGroup,
    Direction,
    Kind,
    NetworkPolicy,
    NetworkPolicyPeer,
    PodReference,
    RuleAction,
)
from antrea.controller.distribution import StoreLike, iter_store

JSON = dict[str, Any]


class _Index:
    def __init__(self, store: StoreLike) -> None:
        self.groups: dict[str, frozenset[PodReference]] = {}
        self.ips: dict[PodReference, set[str]] = {}
        for kind in (Kind.ADDRESS_GROUP, Kind.APPLIED_TO_GROUP):
            for obj, _ in iter_store(store, kind):
                assert isinstance(obj, AddressGroup | AppliedToGroup)
                self.groups[f"{kind}/{obj.name}"] = frozenset(m.pod for m in obj.members)
                for m in obj.members:
                    self.ips.setdefault(m.pod, set()).update(m.ips)
        self.policies = [obj for obj, _ in iter_store(store, Kind.NETWORK_POLICY)]

    def in_group(self, kind: Kind, name: str, pod: PodReference) -> bool:
        return pod in self.groups.get(f"{kind}/{name}", frozenset())

    def applies(self, groups: tuple[str, ...], pod: PodReference) -> bool:
        return any(self.in_group(Kind.APPLIED_TO_GROUP, g, pod) for g in groups)

    def holds(self, peer: NetworkPolicyPeer, pod: PodReference) -> bool:
        if any(self.in_group(Kind.ADDRESS_GROUP, g, pod) for g in peer.address_groups):
            return True
        ips = [ipaddress.ip_address(ip) for ip in self.ips.get(pod, ())]
        for block in peer.ip_blocks:
            net = ipaddress.ip_network(block.cidr, strict=False)
            if net.prefixlen == 0 and not block.except_:
                return True  # the match-all peer
            for ip in ips:
                if ip.version == net.version and ip in net:
                    excepted = any(
                        ip in ipaddress.ip_network(e, strict=False)
                        for e in block.except_
                        if ipaddress.ip_network(e, strict=False).version == ip.version
                    )
                    if not excepted:
                        return True
        return False


def _ref(p: NetworkPolicy) -> JSON:
    r = p.source_ref
    return {"type": r.type, "namespace": r.namespace, "name": r.name, "uid": r.uid}


def _native(
    idx: _Index, direction: Direction, pod: PodReference, other: PodReference
) -> JSON | None:
    """The Antrea-native rule that decides, or None (no match, or a Pass: on to Kubernetes)."""
    native = [p for p in idx.policies if isinstance(p, NetworkPolicy) and p.is_antrea_native()]
    native.sort(key=lambda p: (p.tier_priority or 0, p.priority or 0.0, p.name))
    for policy in native:
        for index, rule in enumerate(policy.rules):
            if rule.direction is not direction:
                continue
            scope = rule.applied_to_groups or policy.applied_to_groups
            if not idx.applies(scope, pod) or not idx.holds(rule.peer(), other):
                continue
            action = rule.action or RuleAction.ALLOW
            if action is RuleAction.PASS:
                return None
            return {
                "decision": str(action),
                "policyRef": _ref(policy),
                "ruleIndex": index,
                "ruleName": rule.name,
            }
    return None


def _side(idx: _Index, direction: Direction, pod: PodReference, other: PodReference) -> JSON:
    """The decision for ``pod``'s side (its egress, or its ingress) about ``other``."""
    decided = _native(idx, direction, pod, other)
    if decided is not None:
        return decided
    k8s = [
        p
        for p in idx.policies
        if isinstance(p, NetworkPolicy)
        and not p.is_antrea_native()
        and idx.applies(p.applied_to_groups, pod)
    ]
    k8s.sort(key=lambda p: (p.source_ref.namespace, p.source_ref.name))
    isolating = [p for p in k8s if any(r.direction is direction for r in p.rules)]
    if not isolating:
        return {"decision": "Allow", "reason": "not isolated"}
    for policy in isolating:
        for index, rule in enumerate(policy.rules):
            if rule.direction is direction and idx.holds(rule.peer(), other):
                return {
                    "decision": "Allow",
                    "policyRef": _ref(policy),
                    "ruleIndex": index,
                    "ruleName": rule.name,
                }
    return {
        "decision": "Drop",
        "reason": "isolated by NetworkPolicy, no rule allows it",
        "isolatedBy": [_ref(p) for p in isolating],
    }


def evaluate(store: StoreLike, source: PodReference, destination: PodReference) -> JSON:
    idx = _Index(store)
    egress = _side(idx, Direction.OUT, source, destination)
    ingress = _side(idx, Direction.IN, destination, source)
    # The effective answer: a refusal on either side, else the ingress decision, as upstream
    # reports the rule that finally decides.
    if egress["decision"] != "Allow":
        effective = {"direction": "Egress", **egress}
    elif ingress["decision"] != "Allow":
        effective = {"direction": "Ingress", **ingress}
    else:
        effective = {"direction": "Ingress", **ingress}
        if "policyRef" not in ingress and "policyRef" in egress:
            effective = {"direction": "Egress", **egress}
    return {
        "source": f"{source.namespace}/{source.name}",
        "destination": f"{destination.namespace}/{destination.name}",
        "response": effective,
        "egress": egress,
        "ingress": ingress,
    }
