"""A naive, from-scratch NetworkPolicy compiler used as the oracle of the unit tests.

Written independently of ``antrea.controller.networkpolicy`` (no shared code except the output
types): it recomputes everything from the whole world on every call, with the plainest possible
code, following the documented semantics (docs/design/controller.md). The only shared
convention is the documented group naming: UUIDv5 over the canonical JSON of the selector.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from antrea.apis.controlplane.types import (
    AddressGroup,
    AppliedToGroup,
    Direction,
    GroupMember,
    IPBlock,
    Kind,
    NamedPort,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyReference,
    NetworkPolicyRule,
    PodReference,
    Protocol,
    Service,
)

NAME_NAMESPACE = uuid.UUID("7c1f4e9a-3b6d-4f0e-9a5b-2c8d1e0f3a47")
Store = dict[Kind, dict[str, tuple[Any, frozenset[str]]]]


def requirements(selector: dict[str, Any] | None) -> list[list[Any]]:
    reqs: set[tuple[str, str, tuple[str, ...]]] = set()
    for key, value in ((selector or {}).get("matchLabels") or {}).items():
        reqs.add((key, "In", (value,)))
    for expr in (selector or {}).get("matchExpressions") or []:
        op = expr["operator"]
        if op in ("In", "NotIn"):
            reqs.add((expr["key"], op, tuple(sorted(set(expr.get("values") or [])))))
        elif op in ("Exists", "DoesNotExist"):
            reqs.add((expr["key"], op, ()))
        else:
            reqs.add((expr["key"], "Invalid", (op,)))
    return [[k, op, list(values)] for k, op, values in sorted(reqs)]


def matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    for key, op, values in requirements(selector):
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op == "Invalid":
            return False
    return True


def group_name(namespace: str, pod_sel: Any, ns_sel: Any, *, has_ns: bool) -> str:
    text = json.dumps(
        [namespace, requirements(pod_sel), requirements(ns_sel) if has_ns else None],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return str(uuid.uuid5(NAME_NAMESPACE, text))


def member(pod: dict[str, Any]) -> GroupMember | None:
    spec, status, meta = pod.get("spec", {}), pod.get("status", {}), pod["metadata"]
    if not spec.get("nodeName") or spec.get("hostNetwork"):
        return None
    if status.get("phase") in ("Succeeded", "Failed"):
        return None
    ips = [e["ip"] for e in status.get("podIPs") or [] if e.get("ip")]
    if not status.get("podIPs") and status.get("podIP"):
        ips = [status["podIP"]]
    if not ips:
        return None
    ports = [
        NamedPort(p["name"], Protocol(p.get("protocol", "TCP")), p["containerPort"])
        for c in spec.get("containers", [])
        for p in c.get("ports", [])
        if p.get("name")
    ]
    return GroupMember(
        PodReference(meta["namespace"], meta["name"]), tuple(ips), spec["nodeName"], tuple(ports)
    )


class _Group:
    def __init__(self, namespace: str, pod_sel: Any, ns_sel: Any, *, has_ns: bool) -> None:
        self.namespace, self.pod_sel, self.ns_sel, self.has_ns = namespace, pod_sel, ns_sel, has_ns
        self.name = group_name(namespace, pod_sel, ns_sel, has_ns=has_ns)

    def members(self, namespaces: dict[str, dict[str, str]], pods: list[dict[str, Any]]) -> Any:
        out = set()
        for pod in pods:
            m = member(pod)
            if m is None:
                continue
            ns = pod["metadata"]["namespace"]
            labels = pod["metadata"].get("labels") or {}
            if self.has_ns:
                if ns not in namespaces or not matches(self.ns_sel, namespaces[ns]):
                    continue
            elif ns != self.namespace:
                continue
            if matches(self.pod_sel, labels):
                out.add(m)
        return frozenset(out)


def _services(ports: Any) -> tuple[Service, ...] | None:
    if not ports:
        return None
    out = []
    for p in ports:
        port = p.get("port")
        out.append(
            Service(
                Protocol(p.get("protocol") or "TCP"),
                port,
                p.get("endPort") if isinstance(port, int) else None,
            )
        )
    return tuple(out)


def compute(
    namespaces: dict[str, dict[str, str]],
    pods: list[dict[str, Any]],
    policies: list[dict[str, Any]],
) -> Store:
    """Everything the compiler should hold for this world: {kind: {name: (object, span)}}."""
    atgs: dict[str, _Group] = {}
    ags: dict[str, _Group] = {}
    compiled: list[tuple[NetworkPolicy, list[str], list[str]]] = []
    for np in policies:
        meta, spec = np["metadata"], np.get("spec", {})
        ns = meta["namespace"]
        atg = _Group(ns, spec.get("podSelector"), None, has_ns=False)
        atgs[atg.name] = atg
        used: list[str] = []
        types = spec.get("policyTypes") or (
            ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]
        )
        rules = []
        for direction, field, peer_field in (
            (Direction.IN, "ingress", "from"),
            (Direction.OUT, "egress", "to"),
        ):
            type_name = "Ingress" if direction is Direction.IN else "Egress"
            if type_name not in types:
                continue
            if not spec.get(field):
                rules.append(NetworkPolicyRule(direction))
                continue
            for rule in spec[field]:
                services = _services(rule.get("ports"))
                names: list[str] = []
                blocks: list[IPBlock] = []
                peers = rule.get(peer_field) or []
                if not peers:
                    blocks = [IPBlock("0.0.0.0/0")]
                    named = any(isinstance(s.port, str) for s in services or ())
                    if direction is Direction.OUT and named:
                        g = _Group("", None, None, has_ns=True)
                        ags[g.name] = g
                        names.append(g.name)
                for peer in peers:
                    if "ipBlock" in peer:
                        b = IPBlock(
                            peer["ipBlock"]["cidr"], tuple(peer["ipBlock"].get("except", ()))
                        )
                        if b not in blocks:
                            blocks.append(b)
                        continue
                    if "namespaceSelector" in peer:
                        g = _Group(
                            "", peer.get("podSelector"), peer["namespaceSelector"], has_ns=True
                        )
                    elif "podSelector" in peer:
                        g = _Group(ns, peer["podSelector"], None, has_ns=False)
                    else:
                        continue
                    ags[g.name] = g
                    if g.name not in names:
                        names.append(g.name)
                for name in names:
                    if name not in used:
                        used.append(name)
                peer_value = NetworkPolicyPeer(tuple(names), tuple(blocks))
                if direction is Direction.IN:
                    rules.append(NetworkPolicyRule(direction, from_=peer_value, services=services))
                else:
                    rules.append(NetworkPolicyRule(direction, to=peer_value, services=services))
        obj = NetworkPolicy(
            name=meta["uid"],
            source_ref=NetworkPolicyReference("K8sNetworkPolicy", ns, meta["name"], meta["uid"]),
            rules=tuple(rules),
            applied_to_groups=(atg.name,),
            generation=meta.get("generation", 0),
        )
        compiled.append((obj, [atg.name], used))

    store: Store = {kind: {} for kind in Kind}
    atg_span: dict[str, frozenset[str]] = {}
    for name, g in atgs.items():
        members = g.members(namespaces, pods)
        atg_span[name] = frozenset(m.node for m in members)
        store[Kind.APPLIED_TO_GROUP][name] = (AppliedToGroup(name, members), atg_span[name])
    np_spans: dict[str, frozenset[str]] = {}
    for obj, atg_names, _ in compiled:
        np_spans[obj.name] = frozenset().union(*(atg_span[n] for n in atg_names))
        store[Kind.NETWORK_POLICY][obj.name] = (obj, np_spans[obj.name])
    for name, g in ags.items():
        span = frozenset().union(*(np_spans[obj.name] for obj, _, used in compiled if name in used))
        store[Kind.ADDRESS_GROUP][name] = (AddressGroup(name, g.members(namespaces, pods)), span)
    return store
