"""Write tests/e2e/netpol/cases-antrea/*.yaml: our Antrea-native cases with oracle matrices.

Every action (Allow, Drop, Reject, Pass), static and custom tiers, the baseline tier next to
Kubernetes NetworkPolicies, every peer form (podSelector, namespaceSelector, both,
namespaces: {match: Self}, ipBlock with except, ClusterGroup and Group references), appliedTo at
the policy and the rule level and through groups, ports by number, name and endPort, TCP and
UDP, ingress and egress, ClusterNetworkPolicy and namespaced Antrea NetworkPolicy. The expected
matrices come from `antrea_oracle` (checked against the shared cases by
tests/unit/agent/networkpolicy/test_oracle.py).
Run: ``python tests/e2e/netpol/gen_antrea_cases.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import casegen
import simulate

OUT = Path(__file__).resolve().parent / "cases-antrea"
V = "crd.antrea.io/v1beta1"
MARKS = {".": "connected", "X": "dropped (no response)", "R": "rejected"}


def acnp(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": V, "kind": "ClusterNetworkPolicy", "metadata": {"name": name},
            "spec": spec}  # fmt: skip


def annp(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": V, "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}  # fmt: skip


def k8s(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}  # fmt: skip


def pod(*names: str) -> dict[str, Any]:
    if len(names) == 1:
        return {"matchLabels": {"pod": names[0]}}
    return {"matchExpressions": [{"key": "pod", "operator": "In", "values": list(names)}]}


def ns(name: str) -> dict[str, Any]:
    return {"matchLabels": {"ns": name}}


TCP80, TCP81, UDP80 = ("TCP", 80), ("TCP", 81), ("UDP", 80)

CASES: list[dict[str, Any]] = [
    {
        "id": "101", "slug": "acnp-egress-drop-udp-to-namespace",
        "name": "ACNP egress Drop from x to namespace z on UDP 80 only",
        "steps": [{
            "apply": [acnp("x-no-udp-to-z", {
                "priority": 5, "appliedTo": [{"namespaceSelector": ns("x")}],
                "egress": [{"action": "Drop", "to": [{"namespaceSelector": ns("z")}],
                            "ports": [{"protocol": "UDP", "port": 80}], "name": "no-udp"}],
            })],
            "probes": [UDP80, TCP80],
        }],
    },
    {
        "id": "102", "slug": "annp-rule-order-allow-then-drop",
        "name": "Antrea NetworkPolicy in y: Allow from y/b, then Drop everyone (rule position)",
        "steps": [{
            "apply": [annp("y", "a-only-from-b", {
                "priority": 3, "appliedTo": [{"podSelector": pod("a")}],
                "ingress": [{"action": "Allow", "from": [{"podSelector": pod("b")}]},
                            {"action": "Drop"}],
            })],
            "probes": [TCP80],
        }, {
            "description": "the same rules in the other order: Drop first wins",
            "apply": [annp("y", "a-only-from-b", {
                "priority": 3, "appliedTo": [{"podSelector": pod("a")}],
                "ingress": [{"action": "Drop"},
                            {"action": "Allow", "from": [{"podSelector": pod("b")}]}],
            })],
            "probes": [TCP80],
        }],
    },
    {
        "id": "103", "slug": "acnp-custom-tier-cluster-groups",
        "name": "Custom Tier above application; ClusterGroups as appliedTo and peer",
        "steps": [{
            "apply": [
                {"apiVersion": V, "kind": "Tier", "metadata": {"name": "guardrails"},
                 "spec": {"priority": 120, "description": "test tier"}},
                {"apiVersion": V, "kind": "ClusterGroup", "metadata": {"name": "cg-x"},
                 "spec": {"namespaceSelector": ns("x")}},
                {"apiVersion": V, "kind": "ClusterGroup", "metadata": {"name": "cg-zb"},
                 "spec": {"podSelector": pod("b"), "namespaceSelector": ns("z")}},
                {"apiVersion": V, "kind": "ClusterGroup", "metadata": {"name": "cg-parent"},
                 "spec": {"childGroups": ["cg-zb"]}},
                acnp("allow-z-to-x", {
                    "priority": 1, "tier": "application", "appliedTo": [{"group": "cg-x"}],
                    "ingress": [{"action": "Allow", "from": [{"namespaceSelector": ns("z")}]},
                                {"action": "Drop"}],
                }),
                acnp("guard-zb", {
                    "priority": 50, "tier": "guardrails", "appliedTo": [{"group": "cg-x"}],
                    "ingress": [{"action": "Drop", "from": [{"group": "cg-parent"}]}],
                }),
            ],
            "probes": [TCP80],
        }],
    },
    {
        "id": "104", "slug": "acnp-baseline-after-kubernetes",
        "name": "Baseline Drop applies only to pods no Kubernetes NetworkPolicy isolates",
        "steps": [{
            "apply": [
                acnp("baseline-y", {
                    "priority": 10, "tier": "baseline",
                    "appliedTo": [{"namespaceSelector": ns("y")}],
                    "ingress": [{"action": "Drop", "from": [{"namespaceSelector": {}}]}],
                }),
                k8s("y", "a-from-x", {
                    "podSelector": pod("a"), "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"namespaceSelector": ns("x")}]}],
                }),
            ],
            "probes": [TCP80],
        }, {
            "description": "an application-tier Allow overrides both",
            "apply": [acnp("z-to-y", {
                "priority": 1, "appliedTo": [{"namespaceSelector": ns("y")}],
                "ingress": [{"action": "Allow", "from": [{"namespaceSelector": ns("z")}]}],
            })],
            "probes": [TCP80],
        }],
    },
    {
        "id": "105", "slug": "acnp-egress-reject-ipblock-rule-applied-to",
        "name": "Rule-level appliedTo: c pods Reject egress to an ipBlock with except; UDP too",
        "steps": [{
            "apply": [acnp("c-reject", {
                "priority": 2,
                "egress": [{
                    "action": "Reject", "appliedTo": [{"podSelector": pod("c")}],
                    "to": [{"ipBlock": {"cidr": "{{supernet z/a 4}}",
                                        "except": ["{{ip z/b}}/32"]}}],
                    "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "UDP", "port": 80}],
                }],
            })],
            "probes": [TCP80, UDP80, TCP81],
        }],
    },
    {
        "id": "106", "slug": "acnp-pass-named-port-endport",
        "name": "Pass on a named port to the Kubernetes layer; Drop a port range; K8s decides",
        "steps": [{
            "apply": [
                acnp("pass-y-80", {
                    "priority": 1, "tier": "securityops",
                    "appliedTo": [{"namespaceSelector": ns("x")}],
                    "ingress": [
                        {"action": "Pass", "from": [{"namespaceSelector": ns("y")}],
                         "ports": [{"protocol": "TCP", "port": "serve-80-tcp"}]},
                        {"action": "Drop",
                         "ports": [{"protocol": "TCP", "port": 79, "endPort": 81}]},
                    ],
                }),
                k8s("x", "b-from-y-b", {
                    "podSelector": pod("b"), "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"namespaceSelector": ns("y"),
                                           "podSelector": pod("b")}]}],
                }),
            ],
            "probes": [TCP80, TCP81],
        }],
    },
    {
        "id": "107", "slug": "annp-group-self-and-cross-namespace",
        "name": "Antrea NetworkPolicy in z: a Group as appliedTo, egress Reject within the "
                "namespace (Self), Allow to x, Drop the rest",
        "steps": [{
            "apply": [
                {"apiVersion": V, "kind": "Group",
                 "metadata": {"name": "z-ab", "namespace": "z"},
                 "spec": {"podSelector": pod("a", "b")}},
                annp("z", "z-ab-egress", {
                    "priority": 4, "appliedTo": [{"group": "z-ab"}],
                    "egress": [
                        {"action": "Reject", "to": [{"namespaces": {"match": "Self"}}]},
                        {"action": "Allow", "to": [{"namespaceSelector": ns("x"),
                                                    "podSelector": pod("a", "c")}]},
                        {"action": "Drop"},
                    ],
                }),
            ],
            "probes": [TCP81],
        }],
    },
    {
        "id": "108", "slug": "acnp-priority-within-tier-and-update",
        "name": "Two ACNPs in one tier ordered by priority; updating the priority reorders them",
        "steps": [{
            "apply": [
                acnp("allow-y", {
                    "priority": 2, "appliedTo": [{"podSelector": pod("c")}],
                    "ingress": [{"action": "Allow", "from": [{"namespaceSelector": ns("y")}]}],
                }),
                acnp("drop-all", {
                    "priority": 3, "appliedTo": [{"podSelector": pod("c")}],
                    "ingress": [{"action": "Drop"}],
                }),
            ],
            "probes": [TCP80],
        }, {
            "description": "drop-all moves ahead of allow-y",
            "apply": [acnp("drop-all", {
                "priority": 1.5, "appliedTo": [{"podSelector": pod("c")}],
                "ingress": [{"action": "Drop"}],
            })],
            "probes": [TCP80],
        }],
    },
    {
        "id": "109", "slug": "acnp-ports-mixing-a-port-a-range-and-a-protocol",
        "name": "ACNP Drop rules whose ports mix a port with a range from it, and a protocol "
                "with one of its ports (clause atoms that plain tuple order cannot sort)",
        "steps": [{
            "apply": [acnp("z-mixed-ports", {
                "priority": 5, "appliedTo": [{"namespaceSelector": ns("z")}],
                "ingress": [
                    {"action": "Drop", "from": [{"namespaceSelector": ns("x")}],
                     "ports": [{"protocol": "TCP", "port": 80},
                               {"protocol": "TCP", "port": 80, "endPort": 81}]},
                    {"action": "Drop", "from": [{"namespaceSelector": ns("y")}],
                     "ports": [{"protocol": "UDP"}, {"protocol": "UDP", "port": 80}]},
                ],
            })],
            "probes": [TCP80, TCP81, UDP80],
        }],
    },
]  # fmt: skip


def _key(p: dict[str, Any]) -> str:
    return str(p["kind"])


def main() -> None:
    casegen.write(CASES, OUT, simulate.expected_antrea_steps, marks=MARKS)


if __name__ == "__main__":
    main()
