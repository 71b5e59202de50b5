"""Randomized event sequences: the incremental compiler must always equal a from-scratch one.

Each example replays random pod, namespace and policy events (some grouped in batches) on a small
world where collisions are likely (few namespaces, labels, nodes). After every flush the store
must equal the naive reference compiler's result for the current world, the change stream must
reproduce the store exactly, and at the end a fresh compiler fed the final world in one batch
must agree too.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from npc_helpers import Mirror, feed_world, namespace, pod, policy, snapshot
from npc_reference import compute

from antrea.controller.networkpolicy import NetworkPolicyController, grouping

NAMESPACES = ["ns0", "ns1"]
KEYS = ["app", "tier"]
VALUES = ["a", "b"]
NODES = ["n1", "n2", "n3"]

labels_st = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2)


@st.composite
def selector_st(draw: st.DrawFn) -> dict[str, Any]:
    sel: dict[str, Any] = {}
    if draw(st.integers(0, 2)) == 0:
        return sel
    match_labels = draw(st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2))
    if match_labels:
        sel["matchLabels"] = match_labels
    exprs = []
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
        expr: dict[str, Any] = {"key": draw(st.sampled_from(KEYS)), "operator": op}
        if op in ("In", "NotIn"):
            expr["values"] = draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=2))
        exprs.append(expr)
    if exprs:
        sel["matchExpressions"] = exprs
    return sel


@st.composite
def peer_st(draw: st.DrawFn) -> dict[str, Any]:
    form = draw(st.sampled_from(["pod", "ns", "both", "ipblock"]))
    if form == "pod":
        return {"podSelector": draw(selector_st())}
    if form == "ns":
        return {"namespaceSelector": draw(selector_st())}
    if form == "both":
        return {"podSelector": draw(selector_st()), "namespaceSelector": draw(selector_st())}
    block: dict[str, Any] = {"cidr": draw(st.sampled_from(["10.0.0.0/8", "192.168.0.0/16"]))}
    if draw(st.booleans()):
        block["except"] = ["10.1.0.0/16"]
    return {"ipBlock": block}


port_st = st.fixed_dictionaries(
    {"port": st.one_of(st.integers(1, 3), st.sampled_from(["http", "dns"]))},
    optional={
        "protocol": st.sampled_from(["TCP", "UDP", "SCTP"]),
        "endPort": st.integers(3, 9),
    },
)


@st.composite
def rule_st(draw: st.DrawFn, peer_field: str) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    peers = draw(st.one_of(st.none(), st.lists(peer_st(), max_size=3)))
    if peers is not None:
        rule[peer_field] = peers
    ports = draw(st.one_of(st.none(), st.lists(port_st, max_size=2)))
    if ports is not None:
        rule["ports"] = ports
    return rule


@st.composite
def policy_st(draw: st.DrawFn) -> dict[str, Any]:
    ns = draw(st.sampled_from(NAMESPACES))
    name = draw(st.sampled_from(["p0", "p1", "p2"]))
    spec: dict[str, Any] = {"podSelector": draw(selector_st())}
    types = draw(st.sampled_from([None, ["Ingress"], ["Egress"], ["Ingress", "Egress"]]))
    if types is not None:
        spec["policyTypes"] = types
    ingress = draw(st.one_of(st.none(), st.lists(rule_st("from"), max_size=2)))
    if ingress is not None:
        spec["ingress"] = ingress
    egress = draw(st.one_of(st.none(), st.lists(rule_st("to"), max_size=2)))
    if egress is not None:
        spec["egress"] = egress
    generation = draw(st.integers(1, 2))
    return policy(ns, name, spec, generation=generation)


@st.composite
def pod_st(draw: st.DrawFn) -> dict[str, Any]:
    ports = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["http", "dns"]),
                    "containerPort": st.integers(80, 81),
                },
                optional={"protocol": st.sampled_from(["TCP", "UDP"])},
            ),
            max_size=1,
        )
    )
    return pod(
        draw(st.sampled_from(NAMESPACES)),
        draw(st.sampled_from(["a", "b", "c", "d"])),
        draw(labels_st),
        node=draw(st.sampled_from([*NODES, *NODES, None])),
        ip=draw(st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", None])),
        phase=draw(st.sampled_from(["Running", "Running", "Running", "Pending", "Succeeded"])),
        host_network=draw(st.booleans()) and draw(st.booleans()),
        ports=ports,
    )


event_st = st.one_of(
    st.tuples(st.just("pod"), pod_st()),
    st.tuples(st.just("pod"), pod_st()),
    st.tuples(st.just("pod"), pod_st()),
    st.tuples(st.just("delete_pod"), st.sampled_from(NAMESPACES), st.sampled_from("abcd")),
    st.tuples(st.just("namespace"), st.sampled_from(NAMESPACES), labels_st),
    st.tuples(st.just("namespace"), st.sampled_from(NAMESPACES), labels_st),
    st.tuples(st.just("delete_namespace"), st.sampled_from(NAMESPACES)),
    st.tuples(st.just("policy"), policy_st()),
    st.tuples(st.just("policy"), policy_st()),
    st.tuples(st.just("delete_policy"), st.sampled_from(NAMESPACES), st.sampled_from(["p0", "p1"])),
    st.tuples(st.just("flush")),
)


class World:
    """The current Kubernetes objects, driving the compiler with the matching events."""

    def __init__(self, controller: NetworkPolicyController) -> None:
        self.c = controller
        self.namespaces: dict[str, dict[str, str]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.policies: dict[tuple[str, str], dict[str, Any]] = {}

    def apply(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "pod":
            p = event[1]
            key = (p["metadata"]["namespace"], p["metadata"]["name"])
            old = self.pods.get(key)
            self.pods[key] = p
            if old is None:
                self.c.add_pod(p)
            else:
                self.c.update_pod(old, p)
        elif kind == "delete_pod":
            old = self.pods.pop((event[1], event[2]), None)
            if old is not None:
                self.c.delete_pod(old)
        elif kind == "namespace":
            obj = namespace(event[1], **event[2])
            if event[1] in self.namespaces:
                self.c.update_namespace(namespace(event[1], **self.namespaces[event[1]]), obj)
            else:
                self.c.add_namespace(obj)
            self.namespaces[event[1]] = event[2]
        elif kind == "delete_namespace":
            if self.namespaces.pop(event[1], None) is not None:
                self.c.delete_namespace(namespace(event[1]))
        elif kind == "policy":
            np = event[1]
            key = (np["metadata"]["namespace"], np["metadata"]["name"])
            old = self.policies.get(key)
            self.policies[key] = np
            if old is None:
                self.c.add_network_policy(np)
            else:
                self.c.update_network_policy(old, np)
        elif kind == "delete_policy":
            old = self.policies.pop((event[1], event[2]), None)
            if old is not None:
                self.c.delete_network_policy(old)

    def expected(self) -> Any:
        return compute(self.namespaces, list(self.pods.values()), list(self.policies.values()))


def _check(world: World, mirror: Mirror) -> None:
    expected = world.expected()
    actual = snapshot(world.c)
    for kind in expected:
        assert actual[kind] == expected[kind], kind
    assert mirror.objects == actual


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policies=st.lists(policy_st(), max_size=4),
    events=st.lists(event_st, min_size=1, max_size=60),
    batch_every=st.integers(0, 5),
)
def test_incremental_matches_from_scratch(
    policies: list[dict[str, Any]], events: list[tuple[Any, ...]], batch_every: int
) -> None:
    _replay(policies, events, batch_every)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policies=st.lists(policy_st(), max_size=4),
    events=st.lists(event_st, min_size=1, max_size=60),
    batch_every=st.integers(0, 5),
)
def test_incremental_with_per_node_counting(
    policies: list[dict[str, Any]], events: list[tuple[Any, ...]], batch_every: int
) -> None:
    """The same with every group "large", so spans come from the per-node member counts."""
    saved = grouping.LARGE_GROUP
    grouping.LARGE_GROUP = 1
    try:
        _replay(policies, events, batch_every)
    finally:
        grouping.LARGE_GROUP = saved


def _replay(
    policies: list[dict[str, Any]], events: list[tuple[Any, ...]], batch_every: int
) -> None:
    controller = NetworkPolicyController()
    mirror = Mirror(controller)
    world = World(controller)
    for np in policies:  # policies first: later namespace and pod events meet existing groups
        world.apply(("policy", np))
    i = 0
    while i < len(events):
        if batch_every and i % batch_every == 0:
            chunk = events[i : i + batch_every]
            with controller.batch():
                for event in chunk:
                    world.apply(event)
            i += len(chunk)
        else:
            world.apply(events[i])
            i += 1
        _check(world, mirror)

    fresh = NetworkPolicyController()
    feed_world(fresh, world.namespaces, list(world.pods.values()), list(world.policies.values()))
    assert snapshot(fresh) == snapshot(controller)
    # Removing every policy leaves nothing behind, and the engine forgets its groups.
    with controller.batch():
        for np in list(world.policies.values()):
            controller.delete_network_policy(np)
    assert all(not objects for objects in snapshot(controller).values())
    assert mirror.objects == snapshot(controller)
    assert not controller._grouping.groups
