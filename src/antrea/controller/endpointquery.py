"""Which policies apply to a pod and which rules admit traffic from or to it
(``antctl query endpoint``, upstream's EndpointQuery).

Answered from the controller's computed state: a policy applies to the pod when one of its
AppliedToGroups (or a rule's own appliedTo, Antrea-native) holds the pod; an ingress rule
names the pod as a source, and an egress rule as a destination, when one of the rule's peer
AddressGroups holds it. The shape follows upstream's ``EndpointQueryResponse``.
"""

from __future__ import annotations

from typing import Any

from antrea.apis.controlplane.types import (
    AddressGroup,
    AppliedToGroup,
    Direction,
    Kind,
    NetworkPolicy,
    PodReference,
)
from antrea.controller.distribution import StoreLike, iter_store

JSON = dict[str, Any]


def _ref(p: NetworkPolicy) -> JSON:
    r = p.source_ref
    return {"type": r.type, "namespace": r.namespace, "name": r.name, "uid": r.uid}


def _holding(store: StoreLike, kind: Kind, pod: PodReference) -> set[str]:
    names: set[str] = set()
    for obj, _ in iter_store(store, kind):
        assert isinstance(obj, AddressGroup | AppliedToGroup)
        if any(m.pod == pod for m in obj.members):
            names.add(obj.name)
    return names


def _key(ref: JSON) -> tuple[str, str]:
    return (str(ref.get("namespace", "")), str(ref.get("name", "")))


def _rule_key(entry: JSON) -> tuple[str, str, int]:
    return (*_key(entry["policyRef"]), int(entry["ruleIndex"]))


def query(store: StoreLike, namespace: str, name: str) -> JSON:
    """The EndpointQueryResponse for pod ``namespace/name`` (empty lists when none)."""
    pod = PodReference(namespace, name)
    applied_groups = _holding(store, Kind.APPLIED_TO_GROUP, pod)
    address_groups = _holding(store, Kind.ADDRESS_GROUP, pod)
    applied: list[JSON] = []
    ingress: list[JSON] = []
    egress: list[JSON] = []
    for obj, _ in iter_store(store, Kind.NETWORK_POLICY):
        assert isinstance(obj, NetworkPolicy)
        if applied_groups & set(obj.applied_to_groups) or any(
            applied_groups & set(r.applied_to_groups) for r in obj.rules
        ):
            applied.append(_ref(obj))
        for index, rule in enumerate(obj.rules):
            if not address_groups & set(rule.peer().address_groups):
                continue
            entry = {
                "policyRef": _ref(obj),
                "direction": "Ingress" if rule.direction is Direction.IN else "Egress",
                "ruleIndex": index,
                "ruleName": rule.name,
            }
            (ingress if rule.direction is Direction.IN else egress).append(entry)
    applied.sort(key=_key)
    ingress.sort(key=_rule_key)
    egress.sort(key=_rule_key)
    return {
        "endpoints": [
            {
                "namespace": namespace,
                "name": name,
                "appliedPolicies": applied,
                "ingressSrcRules": ingress,
                "egressDstRules": egress,
            }
        ]
    }
