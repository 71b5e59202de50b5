"""The compiler on hand-written cases: every peer form, ports, policy types, membership rules."""

from __future__ import annotations

from typing import Any

import pytest
from npc_helpers import Mirror, namespace, pod, policy, snapshot

from antrea.apis.controlplane.types import (
    AddressGroup,
    AppliedToGroup,
    Direction,
    IPBlock,
    Kind,
    NamedPort,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyRule,
    PodReference,
    Protocol,
    Service,
)
from antrea.controller.networkpolicy import NetworkPolicyController

MATCH_ALL = NetworkPolicyPeer(ip_blocks=(IPBlock("0.0.0.0/0"),))


def _np(c: NetworkPolicyController, uid: str) -> NetworkPolicy:
    entry = c.store.get(Kind.NETWORK_POLICY, uid)
    assert entry is not None
    assert isinstance(entry[0], NetworkPolicy)
    return entry[0]


def _pods(c: NetworkPolicyController, kind: Kind, name: str) -> set[str]:
    entry = c.store.get(kind, name)
    assert entry is not None
    group = entry[0]
    assert isinstance(group, AddressGroup | AppliedToGroup)
    return {f"{m.pod.namespace}/{m.pod.name}" for m in group.members}


def _world(c: NetworkPolicyController) -> None:
    """Two namespaces, a few pods each, spread over three nodes."""
    c.add_namespace(namespace("prod", env="prod", team="a"))
    c.add_namespace(namespace("dev", env="dev", team="a"))
    c.add_namespace(namespace("ops", team="b"))
    c.add_pod(pod("prod", "web", {"app": "web", "tier": "front"}, node="n1", ip="10.0.1.1"))
    c.add_pod(pod("prod", "db", {"app": "db", "tier": "back"}, node="n2", ip="10.0.1.2"))
    c.add_pod(pod("prod", "job", {"app": "batch"}, node="n3", ip="10.0.1.3"))
    c.add_pod(pod("dev", "web", {"app": "web"}, node="n1", ip="10.0.2.1"))
    c.add_pod(pod("dev", "db", {"app": "db"}, node="n3", ip="10.0.2.2"))
    c.add_pod(pod("ops", "mon", {"app": "mon"}, node="n2", ip="10.0.3.1"))


def _ingress_from(c: NetworkPolicyController, peers: Any) -> set[str]:
    """Compile one ingress rule with these peers (policy in prod); the pods its groups select."""
    c.add_network_policy(
        policy("prod", "p", {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [peers]})
    )
    rule = _np(c, "uid-prod-p").rules[0]
    selected: set[str] = set()
    for name in rule.from_.address_groups:
        selected |= _pods(c, Kind.ADDRESS_GROUP, name)
    return selected


@pytest.fixture
def c() -> NetworkPolicyController:
    controller = NetworkPolicyController()
    _world(controller)
    return controller


def test_pod_selector_alone_selects_in_the_policy_namespace(c: NetworkPolicyController) -> None:
    peers = {"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}
    assert _ingress_from(c, peers) == {"prod/web"}


def test_namespace_selector_alone_selects_all_pods_of_matching_namespaces(
    c: NetworkPolicyController,
) -> None:
    peers = {"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}
    assert _ingress_from(c, peers) == {"prod/web", "prod/db", "prod/job", "dev/web", "dev/db"}


def test_pod_and_namespace_selector_together_are_anded(c: NetworkPolicyController) -> None:
    peers = {
        "from": [
            {
                "namespaceSelector": {"matchLabels": {"env": "dev"}},
                "podSelector": {"matchLabels": {"app": "web"}},
            }
        ]
    }
    assert _ingress_from(c, peers) == {"dev/web"}


def test_empty_selectors(c: NetworkPolicyController) -> None:
    assert _ingress_from(c, {"from": [{"podSelector": {}}]}) == {"prod/web", "prod/db", "prod/job"}
    assert len(_ingress_from(c, {"from": [{"namespaceSelector": {}}]})) == 6


@pytest.mark.parametrize(
    ("expressions", "expected"),
    [
        ([{"key": "app", "operator": "In", "values": ["web", "db"]}], {"prod/web", "prod/db"}),
        ([{"key": "app", "operator": "NotIn", "values": ["web", "db"]}], {"prod/job"}),
        ([{"key": "tier", "operator": "Exists"}], {"prod/web", "prod/db"}),
        ([{"key": "tier", "operator": "DoesNotExist"}], {"prod/job"}),
        (
            [
                {"key": "tier", "operator": "Exists"},
                {"key": "app", "operator": "NotIn", "values": ["db"]},
            ],
            {"prod/web"},
        ),
    ],
)
def test_match_expressions(
    c: NetworkPolicyController, expressions: list[dict[str, Any]], expected: set[str]
) -> None:
    peers = {"from": [{"podSelector": {"matchExpressions": expressions}}]}
    assert _ingress_from(c, peers) == expected


def test_match_labels_and_expressions_are_anded(c: NetworkPolicyController) -> None:
    selector = {
        "matchLabels": {"tier": "front"},
        "matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}],
    }
    assert _ingress_from(c, {"from": [{"podSelector": selector}]}) == {"prod/web"}


def test_ip_block_with_except_stays_inline(c: NetworkPolicyController) -> None:
    c.add_network_policy(
        policy(
            "prod",
            "p",
            {
                "podSelector": {},
                "ingress": [
                    {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}
                ],
            },
        )
    )
    rule = _np(c, "uid-prod-p").rules[0]
    assert rule.from_ == NetworkPolicyPeer(ip_blocks=(IPBlock("10.0.0.0/8", ("10.1.0.0/16",)),))
    assert c.store.count(Kind.ADDRESS_GROUP) == 0


@pytest.mark.parametrize("block", [{"cidr": "10.0.0.0/8"}, {"cidr": "10.0.0.0/8", "except": []}])
def test_a_lone_ip_block_compiles_like_the_same_block_listed_twice(
    c: NetworkPolicyController, block: dict[str, Any]
) -> None:
    """One ipBlock alone takes a shortcut (no dedup, positional constructors): the same peer."""
    spec = {"podSelector": {}, "ingress": [{"from": [{"ipBlock": block}]}]}
    twice = {"podSelector": {}, "ingress": [{"from": [{"ipBlock": block}, {"ipBlock": block}]}]}
    c.add_network_policy(policy("prod", "one", spec))
    c.add_network_policy(policy("prod", "two", twice))
    one, two = _np(c, "uid-prod-one").rules[0], _np(c, "uid-prod-two").rules[0]
    assert one == two and hash(one) == hash(two)
    assert one.from_ == NetworkPolicyPeer(ip_blocks=(IPBlock("10.0.0.0/8"),))


@pytest.mark.parametrize("rule", [{}, {"from": []}])
def test_missing_or_empty_from_matches_all(c: NetworkPolicyController, rule: Any) -> None:
    c.add_network_policy(policy("prod", "p", {"podSelector": {}, "ingress": [rule]}))
    assert _np(c, "uid-prod-p").rules == (NetworkPolicyRule(Direction.IN, from_=MATCH_ALL),)


def test_egress_named_port_to_everyone_uses_the_all_pods_group(c: NetworkPolicyController) -> None:
    c.add_network_policy(
        policy(
            "prod",
            "p",
            {
                "podSelector": {},
                "egress": [{"ports": [{"port": "dns", "protocol": "UDP"}]}],
                "policyTypes": ["Egress"],
            },
        )
    )
    (rule,) = _np(c, "uid-prod-p").rules
    assert rule.direction is Direction.OUT
    assert rule.to.ip_blocks == MATCH_ALL.ip_blocks
    (group,) = rule.to.address_groups
    assert len(_pods(c, Kind.ADDRESS_GROUP, group)) == 6


def test_ports_protocols_named_ports_and_end_port(c: NetworkPolicyController) -> None:
    ports = [
        {"port": 80},
        {"protocol": "UDP", "port": 53},
        {"protocol": "SCTP", "port": 9000, "endPort": 9100},
        {"port": "http"},
        {"protocol": "UDP"},
    ]
    c.add_network_policy(policy("prod", "p", {"podSelector": {}, "ingress": [{"ports": ports}]}))
    assert _np(c, "uid-prod-p").rules[0].services == (
        Service(Protocol.TCP, 80),
        Service(Protocol.UDP, 53),
        Service(Protocol.SCTP, 9000, 9100),
        Service(Protocol.TCP, "http"),
        Service(Protocol.UDP, None),
    )


@pytest.mark.parametrize("rule", [{"ports": []}, {}])
def test_empty_ports_mean_all(c: NetworkPolicyController, rule: Any) -> None:
    c.add_network_policy(policy("prod", "p", {"podSelector": {}, "ingress": [rule]}))
    assert _np(c, "uid-prod-p").rules[0].services is None


def test_members_carry_their_named_ports() -> None:
    c = NetworkPolicyController()
    ports: list[dict[str, Any]] = [
        {"name": "http", "containerPort": 8080},
        {"name": "dns", "containerPort": 53, "protocol": "UDP"},
        {"containerPort": 9999},
    ]
    c.add_pod(pod("ns", "a", {"app": "x"}, ports=ports))
    c.add_network_policy(policy("ns", "p", {"podSelector": {}}))
    (atg,) = c.store.list(Kind.APPLIED_TO_GROUP)
    assert isinstance(atg[0], AppliedToGroup)
    (member,) = atg[0].members
    assert member.ports == (
        NamedPort("http", Protocol.TCP, 8080),
        NamedPort("dns", Protocol.UDP, 53),
    )
    assert member.pod == PodReference("ns", "a")
    assert member.ips == ("10.0.0.1",)


@pytest.mark.parametrize(
    ("spec", "directions"),
    [
        ({}, [Direction.IN]),  # no rules, no types: Ingress isolation
        ({"egress": [{}]}, [Direction.IN, Direction.OUT]),  # defaulted: Egress when rules exist
        ({"egress": []}, [Direction.IN]),
        ({"policyTypes": ["Egress"]}, [Direction.OUT]),
        ({"policyTypes": ["Ingress", "Egress"]}, [Direction.IN, Direction.OUT]),
        ({"policyTypes": ["Egress"], "ingress": [{}]}, [Direction.OUT]),  # ingress ignored
    ],
)
def test_policy_types_and_deny_all_rules(spec: dict[str, Any], directions: list[Direction]) -> None:
    c = NetworkPolicyController()
    c.add_network_policy(policy("ns", "p", {"podSelector": {}, **spec}))
    rules = _np(c, "uid-ns-p").rules
    assert [r.direction for r in rules] == directions
    for r in rules:
        had_rules = spec.get("ingress" if r.direction is Direction.IN else "egress")
        if not had_rules:
            assert r.peer().is_empty() and r.services is None  # deny-all (isolation) rule


@pytest.mark.parametrize(
    ("kwargs", "counts"),
    [
        ({}, True),
        ({"ip": None}, False),
        ({"node": None}, False),
        ({"host_network": True}, False),
        ({"phase": "Succeeded"}, False),
        ({"phase": "Failed"}, False),
        ({"phase": "Pending"}, True),
    ],
)
def test_which_pods_count(kwargs: dict[str, Any], counts: bool) -> None:
    c = NetworkPolicyController()
    c.add_pod(pod("ns", "a", **kwargs))
    c.add_network_policy(policy("ns", "p", {"podSelector": {}}))
    (atg,) = c.store.list(Kind.APPLIED_TO_GROUP)
    assert isinstance(atg[0], AppliedToGroup)
    assert bool(atg[0].members) is counts


def test_terminating_pod_counts_until_deleted() -> None:
    c = NetworkPolicyController()
    p = pod("ns", "a")
    p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    c.add_pod(p)
    c.add_network_policy(policy("ns", "p", {"podSelector": {}}))
    assert _pods(c, Kind.APPLIED_TO_GROUP, c.store.names(Kind.APPLIED_TO_GROUP)[0]) == {"ns/a"}
    c.delete_pod(p)
    assert not _pods(c, Kind.APPLIED_TO_GROUP, c.store.names(Kind.APPLIED_TO_GROUP)[0])


def test_identical_selectors_share_one_group_across_policies() -> None:
    c = NetworkPolicyController()
    sel = {"matchLabels": {"app": "web"}}
    same = {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}
    c.add_network_policy(
        policy("ns", "p1", {"podSelector": sel, "ingress": [{"from": [{"podSelector": sel}]}]})
    )
    c.add_network_policy(
        policy("ns", "p2", {"podSelector": same, "ingress": [{"from": [{"podSelector": same}]}]})
    )
    c.add_network_policy(policy("other", "p3", {"podSelector": sel}))
    np1, np2 = _np(c, "uid-ns-p1"), _np(c, "uid-ns-p2")
    assert np1.applied_to_groups == np2.applied_to_groups
    assert np1.rules[0].from_ == np2.rules[0].from_
    # The AddressGroup and the AppliedToGroup of one selector share the name (like upstream).
    assert np1.applied_to_groups[0] == np1.rules[0].from_.address_groups[0]
    assert c.store.count(Kind.ADDRESS_GROUP) == 1
    assert c.store.count(Kind.APPLIED_TO_GROUP) == 2  # "other" namespace is another selector


def test_group_names_are_deterministic() -> None:
    names = []
    for _ in range(2):
        c = NetworkPolicyController()
        c.add_network_policy(policy("ns", "p", {"podSelector": {"matchLabels": {"a": "b"}}}))
        names.append(c.store.names(Kind.APPLIED_TO_GROUP))
    assert names[0] == names[1]


def test_namespace_label_change_moves_pods_in_and_out(c: NetworkPolicyController) -> None:
    peers = {"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}]}
    assert _ingress_from(c, peers) == {"prod/web", "prod/db", "prod/job"}
    c.update_namespace(namespace("dev", env="dev", team="a"), namespace("dev", env="prod"))
    c.update_namespace(namespace("prod", env="prod", team="a"), namespace("prod", env="staging"))
    group = _np(c, "uid-prod-p").rules[0].from_.address_groups[0]
    assert _pods(c, Kind.ADDRESS_GROUP, group) == {"dev/web", "dev/db"}
    c.delete_namespace(namespace("dev"))
    assert _pods(c, Kind.ADDRESS_GROUP, group) == set()


def test_namespace_created_after_policies_joins_every_matching_group() -> None:
    c = NetworkPolicyController()
    c.add_pod(pod("late", "a", {"app": "x"}))
    peers = [
        {"namespaceSelector": {}},
        {"namespaceSelector": {"matchLabels": {"team": "a"}}},
        {"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {"matchLabels": {}}},
        {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]}},
    ]
    c.add_network_policy(policy("ns", "p", {"podSelector": {}, "ingress": [{"from": peers}]}))
    groups = _np(c, "uid-ns-p").rules[0].from_.address_groups
    assert len(groups) == 3  # the third peer normalizes to the second
    assert all(_pods(c, Kind.ADDRESS_GROUP, g) == set() for g in groups)
    c.add_namespace(namespace("late", team="a"))
    assert all(_pods(c, Kind.ADDRESS_GROUP, g) == {"late/a"} for g in groups)


def test_policy_update_and_delete_clean_up_groups() -> None:
    c = NetworkPolicyController()
    mirror = Mirror(c)
    c.add_pod(pod("ns", "a", {"app": "x"}))
    peer = {"podSelector": {"matchLabels": {"app": "x"}}}
    old = policy("ns", "p", {"podSelector": {}, "ingress": [{"from": [peer]}]})
    c.add_network_policy(old)
    assert c.store.count(Kind.ADDRESS_GROUP) == 1
    new = policy("ns", "p", {"podSelector": {"matchLabels": {"app": "x"}}}, generation=2)
    c.update_network_policy(old, new)
    assert c.store.count(Kind.ADDRESS_GROUP) == 0
    assert c.store.count(Kind.APPLIED_TO_GROUP) == 1
    assert _np(c, "uid-ns-p").generation == 2
    c.delete_network_policy(new)
    assert all(not objs for objs in snapshot(c).values())
    assert mirror.objects == snapshot(c)
    assert not c._grouping.groups


def test_unchanged_events_emit_nothing(c: NetworkPolicyController) -> None:
    np = policy("prod", "p", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})
    c.add_network_policy(np)
    mirror = Mirror(c)
    c.update_network_policy(np, {**np, "metadata": {**np["metadata"], "resourceVersion": "9"}})
    p = pod("prod", "web", {"app": "web", "tier": "front"}, node="n1", ip="10.0.1.1")
    p["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    c.update_pod(None, p)
    c.update_namespace(None, namespace("prod", env="prod", team="a"))
    assert mirror.count == 0


def test_malformed_policy_is_rejected_without_leaking_groups() -> None:
    c = NetworkPolicyController()
    bad = policy(
        "ns",
        "p",
        {
            "podSelector": {"matchLabels": {"a": "b"}},
            "ingress": [{"from": [{"ipBlock": {"except": ["x"]}}]}],  # no cidr
        },
    )
    c.add_network_policy(bad)
    assert all(not objs for objs in snapshot(c).values())
    assert not c._grouping.groups


def test_many_policies_sharing_groups_then_removed() -> None:
    c = NetworkPolicyController()
    mirror = Mirror(c)
    c.add_pod(pod("ns", "a", {"app": "x"}))
    web = {"podSelector": {"matchLabels": {"app": "x"}}}
    policies = [
        policy("ns", f"p{i}", {"podSelector": {}, "ingress": [{"from": [web]}]}) for i in range(20)
    ]
    for np in policies:
        c.add_network_policy(np)
    assert c.store.count(Kind.ADDRESS_GROUP) == 1
    assert c.store.count(Kind.APPLIED_TO_GROUP) == 1
    for np in policies[:-1]:
        c.delete_network_policy(np)
    assert c.store.count(Kind.ADDRESS_GROUP) == 1
    c.delete_network_policy(policies[-1])
    assert all(not objs for objs in snapshot(c).values())
    assert mirror.objects == snapshot(c)


def test_namespace_logging_annotation_marks_every_rule(c: NetworkPolicyController) -> None:
    """networkpolicy.antrea.io/enable-logging: "true" on the Namespace logs its Kubernetes
    policies' rules (their isolation included); changing it recompiles them."""
    c.add_network_policy(policy("prod", "deny", {"podSelector": {}}))
    c.add_network_policy(policy("dev", "other", {"podSelector": {}}))
    c.flush()
    assert [r.enable_logging for r in _np(c, "uid-prod-deny").rules] == [False]
    annotated = namespace("prod", env="prod", team="a")
    annotated["metadata"]["annotations"] = {"networkpolicy.antrea.io/enable-logging": "true"}
    c.update_namespace(None, annotated)
    c.flush()
    assert [r.enable_logging for r in _np(c, "uid-prod-deny").rules] == [True]
    assert [r.enable_logging for r in _np(c, "uid-dev-other").rules] == [False]
    c.update_namespace(annotated, namespace("prod", env="prod", team="a"))
    c.flush()
    assert [r.enable_logging for r in _np(c, "uid-prod-deny").rules] == [False]
