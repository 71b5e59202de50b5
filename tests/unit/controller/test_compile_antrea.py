"""The Antrea-native compiler: tiers, priorities, actions, every peer and appliedTo form, and
invalid policies realized fail closed."""

from __future__ import annotations

from typing import Any

import pytest
from npc_helpers import pod

from antrea.apis.controlplane.codec import object_from_map, object_to_map
from antrea.apis.controlplane.types import (
    AddressGroup,
    AppliedToGroup,
    Direction,
    IPBlock,
    Kind,
    NetworkPolicy,
    Protocol,
    RuleAction,
    Service,
)
from antrea.controller.networkpolicy import NetworkPolicyController


def _ns(name: str, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/metadata.name": name, "ns": name, **labels},
        }
    }


def acnp(name: str, spec: dict[str, Any], ns: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{ns}-{name}", "generation": 1}
    if ns:
        meta["namespace"] = ns
    kind = "NetworkPolicy" if ns else "ClusterNetworkPolicy"
    return {"apiVersion": "crd.antrea.io/v1beta1", "kind": kind, "metadata": meta, "spec": spec}


@pytest.fixture
def c() -> NetworkPolicyController:
    c = NetworkPolicyController()
    for n in ("x", "y", "z"):
        c.add_namespace(_ns(n))
        for i, p in enumerate("abc"):
            c.add_pod(pod(n, p, {"pod": p}, node=f"n{i}", ip=f"10.0.{ord(n) - 119}.{i + 1}"))
    return c


def _np(c: NetworkPolicyController, uid: str) -> NetworkPolicy:
    entry = c.store.get(Kind.NETWORK_POLICY, uid)
    assert entry is not None and isinstance(entry[0], NetworkPolicy)
    return entry[0]


def _members(c: NetworkPolicyController, kind: Kind, names: tuple[str, ...]) -> set[str]:
    out: set[str] = set()
    for name in names:
        entry = c.store.get(kind, name)
        assert entry is not None
        g = entry[0]
        assert isinstance(g, AddressGroup | AppliedToGroup)
        out |= {f"{m.pod.namespace}/{m.pod.name}" for m in g.members}
    return out


A_PODS = {"podSelector": {"matchLabels": {"pod": "a"}}}


def test_tier_priority_actions_and_cluster_wide_pod_selector(c: NetworkPolicyController) -> None:
    c.add_cluster_network_policy(
        acnp(
            "p",
            {
                "priority": 5.5,
                "tier": "securityops",
                "appliedTo": [A_PODS],
                "ingress": [
                    {
                        "action": "Drop",
                        "from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}],
                    },
                    {"action": "Pass", "from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]},
                ],
                "egress": [{"action": "Reject", "ports": [{"protocol": "UDP", "port": 80}]}],
            },
        )
    )
    np = _np(c, "uid--p")
    assert (np.tier_priority, np.priority) == (100, 5.5)
    assert np.source_ref.type == "AntreaClusterNetworkPolicy"
    assert [(r.direction, r.action, r.priority) for r in np.rules] == [
        (Direction.IN, RuleAction.DROP, 0),
        (Direction.IN, RuleAction.PASS, 1),
        (Direction.OUT, RuleAction.REJECT, 0),
    ]
    assert _members(c, Kind.APPLIED_TO_GROUP, np.applied_to_groups) == {"x/a", "y/a", "z/a"}
    assert _members(c, Kind.ADDRESS_GROUP, np.rules[0].from_.address_groups) == {
        "z/a", "z/b", "z/c"
    }  # fmt: skip
    # A podSelector-only peer of a cluster policy selects in every namespace.
    assert _members(c, Kind.ADDRESS_GROUP, np.rules[1].from_.address_groups) == {
        "x/b", "y/b", "z/b"
    }  # fmt: skip
    assert np.rules[2].to.ip_blocks == (IPBlock("0.0.0.0/0"),)
    assert np.rules[2].services == (Service(Protocol.UDP, 80),)
    # The wire form keeps all of it.
    assert object_from_map(Kind.NETWORK_POLICY, object_to_map(np)) == np


def test_namespaced_policy_scopes_pod_selectors_to_its_namespace(
    c: NetworkPolicyController,
) -> None:
    c.add_antrea_network_policy(
        acnp(
            "p",
            {
                "priority": 1,
                "appliedTo": [A_PODS],
                "ingress": [{"action": "Allow", "from": [{"podSelector": {}}]}],
            },
            ns="y",
        )
    )
    np = _np(c, "uid-y-p")
    assert np.tier_priority == 250 and np.source_ref.type == "AntreaNetworkPolicy"
    assert _members(c, Kind.APPLIED_TO_GROUP, np.applied_to_groups) == {"y/a"}
    assert _members(c, Kind.ADDRESS_GROUP, np.rules[0].from_.address_groups) == {
        "y/a", "y/b", "y/c"
    }  # fmt: skip


def test_namespaces_match_self_expands_per_namespace(c: NetworkPolicyController) -> None:
    c.add_cluster_network_policy(
        acnp(
            "iso",
            {
                "priority": 1,
                "appliedTo": [{"namespaceSelector": {}}],
                "ingress": [
                    {"action": "Pass", "from": [{"namespaces": {"match": "Self"}}]},
                    {"action": "Drop", "from": [{"namespaceSelector": {}}]},
                ],
            },
        )
    )
    np = _np(c, "uid--iso")
    passes = [r for r in np.rules if r.action is RuleAction.PASS]
    assert len(passes) == 3
    seen = {}
    for r in passes:
        targets = _members(c, Kind.APPLIED_TO_GROUP, r.applied_to_groups)
        peers = _members(c, Kind.ADDRESS_GROUP, r.from_.address_groups)
        ns = {t.split("/")[0] for t in targets}
        assert len(ns) == 1 and {p.split("/")[0] for p in peers} == ns
        seen[ns.pop()] = targets
    assert seen["x"] == {"x/a", "x/b", "x/c"}
    # A new namespace gets its own copy.
    c.add_namespace(_ns("w"))
    c.add_pod(pod("w", "a", {"pod": "a"}, node="n0", ip="10.0.9.1"))
    assert len([r for r in _np(c, "uid--iso").rules if r.action is RuleAction.PASS]) == 4


def test_rule_level_applied_to_and_cluster_groups(c: NetworkPolicyController) -> None:
    c.add_cluster_group(
        {"metadata": {"name": "zb"}, "spec": {"podSelector": {"matchLabels": {"pod": "b"}},
                                              "namespaceSelector": {"matchLabels": {"ns": "z"}}}}
    )  # fmt: skip
    c.add_cluster_group(
        {"metadata": {"name": "cidr"}, "spec": {"ipBlocks": [{"cidr": "1.2.3.0/24"}]}}
    )
    c.add_cluster_network_policy(
        acnp(
            "g",
            {
                "priority": 2,
                "ingress": [
                    {
                        "action": "Allow",
                        "appliedTo": [{"group": "zb"}],
                        "from": [{"group": "cidr"}, {"group": "zb"}],
                        "ports": [{"port": 8000, "endPort": 8080}],
                        "protocols": [{"icmp": {"icmpType": 8, "icmpCode": 0}}],
                    }
                ],
            },
        )
    )
    np = _np(c, "uid--g")
    assert np.applied_to_groups == ()
    r = np.rules[0]
    assert _members(c, Kind.APPLIED_TO_GROUP, r.applied_to_groups) == {"z/b"}
    assert _members(c, Kind.ADDRESS_GROUP, r.from_.address_groups) == {"z/b"}
    assert r.from_.ip_blocks == (IPBlock("1.2.3.0/24"),)
    assert r.services == (
        Service(Protocol.TCP, 8000, 8080),
        Service(Protocol.ICMP, None, None, 8, 0),
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"priority": 1, "tier": "nope", "appliedTo": [A_PODS], "ingress": [{"action": "Drop"}]},
         "spec.tier"),
        ({"priority": 0.5, "appliedTo": [A_PODS], "ingress": [{"action": "Drop"}]},
         "spec.priority"),
        ({"priority": 1, "appliedTo": [A_PODS],
          "ingress": [{"action": "Drop", "appliedTo": [A_PODS]}]}, "spec.ingress[0].appliedTo"),
        ({"priority": 1, "tier": "baseline", "appliedTo": [A_PODS],
          "ingress": [{"action": "Pass"}]}, "spec.ingress[0].action"),
        ({"priority": 1, "appliedTo": [A_PODS], "ingress": [
            {"action": "Drop", "name": "r"}, {"action": "Drop", "name": "r"}]},
         "spec.ingress[1].name"),
        ({"priority": 1, "appliedTo": [A_PODS], "egress": [{"action": "Drop", "to": [
            {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}}]}]},
         "spec.egress[0].to[0].ipBlock.except[0]"),
        ({"priority": 1, "appliedTo": [A_PODS], "ingress": [
            {"action": "Drop", "from": [{"group": "missing"}]}]}, "spec.ingress[0].from[0].group"),
    ],
)  # fmt: skip
def test_invalid_policy_is_realized_fail_closed(
    c: NetworkPolicyController, spec: dict[str, Any], field: str
) -> None:
    c.add_cluster_network_policy(acnp("bad", spec))
    assert c.antrea_errors["uid--bad"].startswith(field + ":")
    np = _np(c, "uid--bad")
    # Its appliedTo pods drop everything in the directions it has rules for.
    assert np.rules and all(
        r.action is RuleAction.DROP and r.peer().ip_blocks == (IPBlock("0.0.0.0/0"),)
        and r.services is None
        for r in np.rules
    )  # fmt: skip
    assert _members(c, Kind.APPLIED_TO_GROUP, np.applied_to_groups) == {"x/a", "y/a", "z/a"}


def test_tier_changes_recompile(c: NetworkPolicyController) -> None:
    spec = {"priority": 1, "tier": "mine", "appliedTo": [A_PODS], "ingress": [{"action": "Drop"}]}
    c.add_cluster_network_policy(acnp("p", spec))
    assert "uid--p" in c.antrea_errors
    c.add_tier({"metadata": {"name": "mine"}, "spec": {"priority": 20}})
    assert "uid--p" not in c.antrea_errors and _np(c, "uid--p").tier_priority == 20
    c.delete_cluster_network_policy(acnp("p", spec))
    assert c.store.get(Kind.NETWORK_POLICY, "uid--p") is None


def test_enable_logging_and_log_label_reach_the_rule_and_the_wire(
    c: NetworkPolicyController,
) -> None:
    c.add_cluster_network_policy(
        acnp(
            "logged",
            {
                "priority": 3,
                "appliedTo": [A_PODS],
                "ingress": [
                    {"name": "l", "action": "Drop", "enableLogging": True, "logLabel": "lab-1"},
                    {"name": "n", "action": "Allow"},
                ],
                "egress": [{"name": "e", "action": "Reject", "enableLogging": True}],
            },
        )
    )
    np = _np(c, "uid--logged")
    assert [(r.name, r.enable_logging, r.log_label) for r in np.rules] == [
        ("l", True, "lab-1"),
        ("n", False, ""),
        ("e", True, ""),
    ]
    assert object_from_map(Kind.NETWORK_POLICY, object_to_map(np)) == np
