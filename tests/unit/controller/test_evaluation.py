"""networkpolicyevaluation: which rule decides pod-to-pod traffic, Kubernetes and Antrea-native."""

from __future__ import annotations

from typing import Any

from antrea.apis.controlplane.types import (
    AddressGroup,
    AppliedToGroup,
    Direction,
    GroupMember,
    IPBlock,
    Kind,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyReference,
    NetworkPolicyRule,
    PodReference,
    RuleAction,
)
from antrea.controller.evaluation import evaluate

A = GroupMember(PodReference("x", "a"), ("10.0.1.1",), "n1")
B = GroupMember(PodReference("y", "b"), ("10.0.2.2",), "n2")


class Store:
    def __init__(self, *objs: Any) -> None:
        self.objs = {(_kind(o), o.name): (o, frozenset({"n1"})) for o in objs}

    def get(self, kind: Kind, name: str) -> Any:
        return self.objs.get((kind, name))

    def list(self, kind: Kind) -> list[Any]:
        return [v for (k, _), v in self.objs.items() if k is kind]


def _kind(o: Any) -> Kind:
    if isinstance(o, NetworkPolicy):
        return Kind.NETWORK_POLICY
    return Kind.ADDRESS_GROUP if isinstance(o, AddressGroup) else Kind.APPLIED_TO_GROUP


def k8s(name: str, ns: str, rules: tuple[NetworkPolicyRule, ...], atg: str) -> NetworkPolicy:
    ref = NetworkPolicyReference("K8sNetworkPolicy", ns, name, f"uid-{name}")
    return NetworkPolicy(f"uid-{name}", ref, rules, (atg,))


def native(name: str, rules: tuple[NetworkPolicyRule, ...], atg: str, tier: int) -> NetworkPolicy:
    ref = NetworkPolicyReference("AntreaClusterNetworkPolicy", "", name, f"uid-{name}")
    return NetworkPolicy(f"uid-{name}", ref, rules, (atg,), tier_priority=tier, priority=1.0)


GROUPS = (
    AppliedToGroup("atg-b", frozenset({B})),
    AppliedToGroup("atg-a", frozenset({A})),
    AddressGroup("ag-a", frozenset({A})),
)
FROM_A = NetworkPolicyPeer(address_groups=("ag-a",))
DENY_IN = NetworkPolicyRule(Direction.IN)


def ask(*objs: Any) -> dict[str, Any]:
    out: dict[str, Any] = evaluate(Store(*GROUPS, *objs), A.pod, B.pod)
    response: dict[str, Any] = out["response"]
    return response


def test_not_isolated_is_allowed_without_a_rule() -> None:
    assert ask() == {"direction": "Ingress", "decision": "Allow", "reason": "not isolated"}


def test_kubernetes_isolation_and_allow_rule() -> None:
    deny = k8s("deny", "y", (DENY_IN,), "atg-b")
    r = ask(deny)
    assert r["decision"] == "Drop" and r["isolatedBy"][0]["name"] == "deny"
    allow = k8s("allow", "y", (NetworkPolicyRule(Direction.IN, from_=FROM_A),), "atg-b")
    r = ask(deny, allow)
    assert (r["decision"], r["policyRef"]["name"], r["ruleIndex"]) == ("Allow", "allow", 0)
    # An ipBlock holding a's IP allows too; its exception does not.
    block = NetworkPolicyPeer(ip_blocks=(IPBlock("10.0.0.0/16", ("10.0.1.0/24",)),))
    r = ask(deny, k8s("cidr", "y", (NetworkPolicyRule(Direction.IN, from_=block),), "atg-b"))
    assert r["decision"] == "Drop"
    # Egress isolation of the source decides first.
    r = ask(k8s("eg", "x", (NetworkPolicyRule(Direction.OUT),), "atg-a"), allow)
    assert (r["direction"], r["decision"]) == ("Egress", "Drop")


def test_antrea_native_tiers_and_pass() -> None:
    drop = NetworkPolicyRule(Direction.IN, from_=FROM_A, action=RuleAction.DROP, name="d")
    passing = NetworkPolicyRule(Direction.IN, from_=FROM_A, action=RuleAction.PASS)
    allow_k8s = k8s("allow", "y", (NetworkPolicyRule(Direction.IN, from_=FROM_A),), "atg-b")
    r = ask(native("acnp-drop", (drop,), "atg-b", tier=250), allow_k8s)
    assert (r["decision"], r["policyRef"]["name"], r["ruleName"]) == ("Drop", "acnp-drop", "d")
    # A Pass in a higher tier skips every Antrea-native rule: the Kubernetes layer decides.
    r = ask(native("p", (passing,), "atg-b", 5), native("d", (drop,), "atg-b", 250), allow_k8s)
    assert (r["decision"], r["policyRef"]["name"]) == ("Allow", "allow")
