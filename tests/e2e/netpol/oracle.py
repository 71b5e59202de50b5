"""A reference evaluator of Kubernetes NetworkPolicy semantics for the x/y/z x a/b/c model.

Independent of the product (no compiler, no flows): it reads the policies as the API defines
them and answers "may src reach dst on proto/port". Used to write the expected matrices of our
own cases (tests/e2e/netpol/gen_cases.py) and checked against the shared, upstream-derived
cases by tests/unit/agent/networkpolicy/test_oracle.py.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

ORDER = ["x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"]


@dataclass
class Model:
    pod_labels: dict[str, dict[str, str]] = field(
        default_factory=lambda: {k: {"pod": k[2]} for k in ORDER}
    )
    ns_labels: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            n: {"ns": n, "kubernetes.io/metadata.name": n} for n in ("x", "y", "z")
        }
    )
    ips: dict[str, str] = field(default_factory=dict)
    # every pod serves 80 and 81 on TCP/UDP/SCTP with ports named serve-<port>-<proto>

    def named_port(self, pod: str, name: str, proto: str) -> int | None:
        for port in (80, 81):
            for p in ("tcp", "udp", "sctp"):
                if name == f"serve-{port}-{p}" and proto.lower() == p:
                    return port
        return None


def selects(sel: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if sel is None:
        return True
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _peer_matches(m: Model, policy_ns: str, peer: dict[str, Any], other: str) -> bool:
    if "ipBlock" in peer:
        ip = ipaddress.ip_address(m.ips[other])
        blk = peer["ipBlock"]
        if ip not in ipaddress.ip_network(blk["cidr"], strict=False):
            return False
        return not any(ip in ipaddress.ip_network(e, strict=False) for e in blk.get("except") or [])
    ns = other.split("/", maxsplit=1)[0]
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], m.ns_labels[ns]):
            return False
    elif ns != policy_ns:
        return False
    if "podSelector" in peer:
        return selects(peer["podSelector"], m.pod_labels[other])
    return "namespaceSelector" in peer


def _ports_match(
    m: Model, ports: list[dict[str, Any]] | None, target: str, proto: str, port: int
) -> bool:
    if not ports:
        return True
    for p in ports:
        pproto = (p.get("protocol") or "TCP").upper()
        if pproto != proto:
            continue
        value = p.get("port")
        if value is None:
            return True
        if isinstance(value, str):
            if m.named_port(target, value, pproto) == port:
                return True
            continue
        end = p.get("endPort")
        if (end is None and value == port) or (end is not None and value <= port <= end):
            return True
    return False


def _types(spec: dict[str, Any]) -> list[str]:
    types = spec.get("policyTypes")
    if types:
        return list(types)
    return ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


def allowed(
    m: Model, policies: list[dict[str, Any]], src: str, dst: str, *, proto: str, port: int
) -> bool:
    return _direction(m, policies, src, dst, proto=proto, port=port, kind="Egress") and _direction(
        m, policies, dst, src, proto=proto, port=port, kind="Ingress"
    )


def _direction(
    m: Model,
    policies: list[dict[str, Any]],
    subject: str,
    other: str,
    *,
    proto: str,
    port: int,
    kind: str,
) -> bool:
    isolated = False
    ns = subject.split("/", maxsplit=1)[0]
    for p in policies:
        pns = p["metadata"].get("namespace", "default")
        spec = p["spec"]
        if pns != ns or not selects(spec.get("podSelector") or {}, m.pod_labels[subject]):
            continue
        if kind not in _types(spec):
            continue
        isolated = True
        rules = spec.get("ingress" if kind == "Ingress" else "egress") or []
        for r in rules:
            peers = r.get("from" if kind == "Ingress" else "to")
            port_target = subject if kind == "Ingress" else other
            if not _ports_match(m, r.get("ports"), port_target, proto, port):
                continue
            if not peers or any(_peer_matches(m, pns, peer, other) for peer in peers):
                return True
    return not isolated


def matrix(m: Model, policies: list[dict[str, Any]], proto: str, port: int) -> list[str]:
    return [
        "".join("." if allowed(m, policies, s, d, proto=proto, port=port) else "X" for d in ORDER)
        for s in ORDER
    ]
