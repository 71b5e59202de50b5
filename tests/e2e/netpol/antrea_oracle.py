"""A reference evaluator of Antrea-native policy semantics (with Kubernetes NetworkPolicies)
for the x/y/z x a/b/c model: "." connected, "X" dropped, "R" rejected.

Independent of the product: it reads the objects as docs/antrea-network-policy.md defines them
(summary in /work/shared/netpol-cases-antrea/README.md) and uses `oracle` for the Kubernetes
NetworkPolicy layer. Writes the matrices of tests/e2e/netpol/cases-antrea (gen_antrea_cases.py)
and is checked against the shared Antrea-native cases (tests/unit/agent/networkpolicy/
test_oracle.py).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import oracle
from oracle import ORDER, Model, selects

STATIC_TIERS = {"emergency": 50, "securityops": 100, "networkops": 150, "platform": 200,
                "application": 250, "baseline": 253}  # fmt: skip
BASELINE = 253


def _is_antrea(o: dict[str, Any]) -> bool:
    return str(o.get("apiVersion", "")).startswith("crd.antrea.io/")


def _ns(pod: str) -> str:
    return pod.split("/", maxsplit=1)[0]


class World:
    def __init__(self, m: Model, objects: list[dict[str, Any]]) -> None:
        self.m = m
        self.k8s = [o for o in objects if not _is_antrea(o)]
        self.antrea = [o for o in objects if _is_antrea(o)]
        self.tiers = dict(STATIC_TIERS)
        self.cgroups: dict[str, dict[str, Any]] = {}
        self.groups: dict[tuple[str, str], dict[str, Any]] = {}
        for o in self.antrea:
            meta, spec = o["metadata"], o.get("spec") or {}
            if o["kind"] == "Tier":
                self.tiers[meta["name"]] = spec["priority"]
            elif o["kind"] == "ClusterGroup":
                self.cgroups[meta["name"]] = spec
            elif o["kind"] == "Group":
                self.groups[(meta["namespace"], meta["name"])] = spec

    # -- selection --------------------------------------------------------------------------
    def _ip_in(self, pod: str, blk: dict[str, Any]) -> bool:
        ip = ipaddress.ip_address(self.m.ips[pod])
        if ip not in ipaddress.ip_network(blk["cidr"], strict=False):
            return False
        return not any(ip in ipaddress.ip_network(e, strict=False) for e in blk.get("except") or [])

    def _selectors(self, sel: dict[str, Any], pod: str, scope: str | None) -> bool:
        ns = _ns(pod)
        pod_sel, ns_sel = sel.get("podSelector"), sel.get("namespaceSelector")
        if ns_sel is not None:
            if not selects(ns_sel, self.m.ns_labels[ns]):
                return False
        elif scope is not None and ns != scope:
            return False
        if pod_sel is not None:
            return selects(pod_sel, self.m.pod_labels[pod])
        return ns_sel is not None

    def _group(self, name: str, pod: str, scope: str | None) -> bool:
        spec = self.cgroups[name] if scope is None else self.groups[(scope, name)]
        if any(self._group(c, pod, scope) for c in spec.get("childGroups") or []):
            return True
        if any(self._ip_in(pod, b) for b in spec.get("ipBlocks") or []):
            return True
        if spec.get("podSelector") is None and spec.get("namespaceSelector") is None:
            return False
        return self._selectors(spec, pod, scope)

    def _applied(self, entries: list[dict[str, Any]], pod: str, scope: str | None) -> bool:
        for e in entries:
            if "group" in e:
                if self._group(e["group"], pod, scope):
                    return True
            elif self._selectors(e, pod, scope):
                return True
        return False

    def _peer(self, p: dict[str, Any], subject: str, other: str, scope: str | None) -> bool:
        if "ipBlock" in p:
            return self._ip_in(other, p["ipBlock"])
        if "group" in p:
            return self._group(p["group"], other, scope)
        if "namespaces" in p:
            if _ns(other) != _ns(subject):
                return False
            return selects(p.get("podSelector"), self.m.pod_labels[other])
        return self._selectors(p, other, scope)

    def _ports(self, r: dict[str, Any], target: str, proto: str, port: int) -> bool:
        if not r.get("ports") and not r.get("protocols"):
            return True
        return bool(r.get("ports")) and oracle._ports_match(self.m, r["ports"], target, proto, port)

    # -- evaluation ---------------------------------------------------------------------------
    def _rules(
        self, subject: str, kind: str
    ) -> list[tuple[tuple[int, float, int], tuple[dict[str, Any], str | None]]]:
        """(order, (rule, scope)) of the Antrea-native rules applying to ``subject`` in ``kind``."""
        out: list[tuple[tuple[int, float, int], dict[str, Any], str | None]] = []
        for o in self.antrea:
            if o["kind"] not in ("ClusterNetworkPolicy", "NetworkPolicy"):
                continue
            spec = o["spec"]
            scope = o["metadata"].get("namespace") if o["kind"] == "NetworkPolicy" else None
            if scope is not None and _ns(subject) != scope:
                continue
            tier = self.tiers[spec.get("tier") or "application"]
            for i, r in enumerate(spec.get("ingress" if kind == "Ingress" else "egress") or []):
                at = r.get("appliedTo") or spec.get("appliedTo") or []
                if self._applied(at, subject, scope):
                    out.append(((tier, float(spec["priority"]), i), r, scope))
        out.sort(key=lambda x: x[0])
        return [(k, (r, s)) for k, r, s in out]

    def direction(self, subject: str, other: str, proto: str, port: int, kind: str) -> str:
        rules = self._rules(subject, kind)
        port_target = subject if kind == "Ingress" else other
        peer_key = "from" if kind == "Ingress" else "to"

        def first(baseline: bool) -> str | None:
            for (tier, _, _), (r, scope) in rules:
                if (tier == BASELINE) != baseline:
                    continue
                peers = r.get(peer_key) or []
                if peers and not any(self._peer(p, subject, other, scope) for p in peers):
                    continue
                if not self._ports(r, port_target, proto, port):
                    continue
                return str(r["action"])
            return None

        action = first(False)
        if action in ("Allow", "Drop", "Reject"):
            return action
        k8s = [p for p in self.k8s if p.get("kind", "NetworkPolicy") == "NetworkPolicy"]
        isolated = any(
            p["metadata"].get("namespace", "default") == _ns(subject)
            and selects(p["spec"].get("podSelector") or {}, self.m.pod_labels[subject])
            and kind in oracle._types(p["spec"])
            for p in k8s
        )
        if isolated:
            ok = oracle._direction(self.m, k8s, subject, other, proto=proto, port=port, kind=kind)
            return "Allow" if ok else "Drop"
        return first(True) or "Allow"

    def mark(self, src: str, dst: str, proto: str, port: int) -> str:
        out = self.direction(src, dst, proto, port, "Egress")
        if out == "Allow":
            out = self.direction(dst, src, proto, port, "Ingress")
        return {"Allow": ".", "Drop": "X", "Reject": "R"}[out]


def matrix(m: Model, objects: list[dict[str, Any]], proto: str, port: int) -> list[str]:
    w = World(m, objects)
    return ["".join(w.mark(s, d, proto, port) for d in ORDER) for s in ORDER]
