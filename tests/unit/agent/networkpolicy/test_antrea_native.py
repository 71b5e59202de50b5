"""Antrea-native rules in tables 45/85 (and baseline in 60/100): order, actions, priorities.

Verdicts come from the OpenFlow interpreter (`antrea.ovs.openflow.sim`) over the flows the
reconciler installed, so the tests check what the flows do.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antrea.agent.networkpolicy.antrea_native import PrioritySpace, PrioritySpaceExhausted
from antrea.agent.networkpolicy.cache import RuleCache
from antrea.agent.networkpolicy.reconciler import PolicyReconciler
from antrea.agent.openflow import pipeline as t
from antrea.apis.controlplane.types import (
    NetworkPolicy,
    NetworkPolicyRule,
    PodReference,
    RuleAction,
)
from antrea.ovs.openflow.client import FlowClient
from antrea.testbed.controlplane import (
    ANY,
    AddressGroup,
    AppliedToGroup,
    added,
    deleted,
    flows_allow,
    ingress,
    member,
    policy,
    tcp,
)
from antrea.testbed.openflow import RecordingTransport

A = member("x", "a", "10.244.1.10")
B = member("x", "b", "10.244.1.20")
Z = member("z", "a", "10.244.3.10")
OFPORTS = {("x", "a"): 3, ("x", "b"): 4}


def ofport_of(pod: PodReference) -> int | None:
    return OFPORTS.get((pod.namespace, pod.name))


def native(
    name: str, rules: Iterable[tuple[RuleAction, NetworkPolicyRule]], atgs: list[str], *,
    tier: int = 250, prio: float = 1.0,
) -> NetworkPolicy:  # fmt: skip
    rs = [dataclasses.replace(r, action=a, priority=i) for i, (a, r) in enumerate(rules)]
    p = policy(name, rs, atgs)
    return dataclasses.replace(p, tier_priority=tier, priority=prio)


class Env:
    def __init__(self) -> None:
        self.rt = RecordingTransport()
        self.rec = PolicyReconciler(
            FlowClient(self.rt), round_num=1, ofport_of=ofport_of, install_miss_flows=True
        )
        self.cache = RuleCache()
        self.load(
            AddressGroup("ag-z", frozenset({Z})),
            AddressGroup("ag-b", frozenset({B})),
            AppliedToGroup("atg-a", frozenset({A})),
        )

    def load(self, *objs: object) -> None:
        for o in objs:
            self.cache.apply(added(o))  # type: ignore[arg-type]

    async def sync(self) -> object:
        dirty = self.cache.take_dirty()
        return await self.rec.reconcile(
            {r: self.cache.completed(r) for r in dirty}, with_base=not self.rec.native.rules
        )

    def allows(self, src: str, port: int = 80) -> bool:
        return flows_allow(
            self.rt.flows.values(), src_ip=src, dst_ip="10.244.1.10", dst_ofport=3,
            proto="tcp", port=port, src_local=False,
        )  # fmt: skip


@pytest.fixture
def env() -> Env:
    return Env()


async def test_drop_reject_allow_and_no_isolation(env: Env) -> None:
    env.load(native("p", [(RuleAction.DROP, ingress(groups=["ag-z"], services=[tcp(80)]))],
                    ["atg-a"]))  # fmt: skip
    await env.sync()
    assert not env.allows("10.244.3.10")
    assert env.allows("10.244.3.10", port=81)
    assert env.allows("10.244.1.20")  # an Antrea-native policy does not isolate
    t85 = [f for f in env.rt.table(t.ANTREA_INGRESS_RULE) if f.match.conj_id is not None]
    assert len(t85) == 1 and t85[0].priority >= 1000
    assert not [f for f in env.rt.table(t.INGRESS_DEFAULT) if f.priority == 200]


async def test_tiers_and_priorities_order_rules(env: Env) -> None:
    drop_z = ingress(groups=["ag-z"])
    env.load(
        native("app-drop", [(RuleAction.DROP, drop_z)], ["atg-a"], tier=250, prio=1),
        native("secops-allow", [(RuleAction.ALLOW, drop_z)], ["atg-a"], tier=100, prio=10),
    )
    await env.sync()
    assert env.allows("10.244.3.10")  # the higher tier decides
    env.load(native("emergency-drop", [(RuleAction.DROP, drop_z)], ["atg-a"], tier=50, prio=100))
    await env.sync()
    assert not env.allows("10.244.3.10")
    # Within a tier: policy priority, then rule position.
    env.cache.apply(deleted(native("emergency-drop", [], ["atg-a"])))
    env.load(
        native("sec2", [(RuleAction.DROP, drop_z), (RuleAction.ALLOW, drop_z)], ["atg-a"],
               tier=100, prio=5),
    )  # fmt: skip
    await env.sync()
    assert not env.allows("10.244.3.10")


async def test_pass_defers_to_kubernetes_policy_and_baseline_comes_after(env: Env) -> None:
    everyone = ingress(blocks=[ANY])
    env.load(
        native("pass", [(RuleAction.PASS, ingress(groups=["ag-b"]))], ["atg-a"], tier=100),
        native("drop-all", [(RuleAction.DROP, everyone)], ["atg-a"], tier=250),
        native("base-allow", [(RuleAction.ALLOW, everyone)], ["atg-a"], tier=253),
    )
    await env.sync()
    assert not env.allows("10.244.3.10")  # application-tier drop
    assert env.allows("10.244.1.20")  # passed; no K8s policy isolates a; baseline allows
    # Baseline Drop applies only when no K8s policy decides: a K8s rule allowing b wins.
    env.cache.apply(deleted(native("base-allow", [], ["atg-a"])))
    env.load(native("base-drop", [(RuleAction.DROP, everyone)], ["atg-a"], tier=253))
    await env.sync()
    assert not env.allows("10.244.1.20")
    env.load(policy("k8s", [ingress(groups=["ag-b"])], ["atg-a"]))
    await env.sync()
    assert env.allows("10.244.1.20")
    base = [f for f in env.rt.table(t.INGRESS_DEFAULT) if f.match.conj_id is not None]
    assert base and all(0 < f.priority < 200 for f in base)


async def test_insertion_without_free_priority_reassigns_neighbours_in_one_bundle(
    env: Env,
) -> None:
    drop_z = ingress(groups=["ag-z"])
    space = PrioritySpace(1000, 60000)
    env.rec.native.spaces[t.ANTREA_INGRESS_RULE] = space
    env.load(native("p1", [(RuleAction.ALLOW, drop_z)], ["atg-a"], prio=1))
    env.load(native("p3", [(RuleAction.DROP, drop_z)], ["atg-a"], prio=3))
    env.load(native("far", [(RuleAction.DROP, ingress(groups=["ag-b"]))], ["atg-a"], prio=9))
    await env.sync()
    # Squeeze p1 and p3 together: no free priority between them.
    k1, k3, kf = space.keys
    space.prio[k1], space.prio[k3], space.prio[kf] = 5001, 5000, 3000
    await env.rec.resync()
    assert env.allows("10.244.3.10")
    far_before = {f.key for f in env.rt.table(t.ANTREA_INGRESS_RULE) if f.priority == 3000}
    n_bundles = len(env.rt.bundles)
    env.load(native("p2", [(RuleAction.DROP, drop_z)], ["atg-a"], prio=2))
    await env.sync()
    assert len(env.rt.bundles) == n_bundles + 1  # insertion + reassignment: one bundle
    assert env.allows("10.244.3.10")  # p1 still first
    far_after = {f.key for f in env.rt.table(t.ANTREA_INGRESS_RULE) if f.priority == 3000}
    assert far_after == far_before  # an unrelated policy's flows are untouched
    prios = [space.prio[k] for k in space.keys]
    assert prios == sorted(prios, reverse=True) and len(set(prios)) == len(prios)


@given(st.lists(st.integers(0, 50), min_size=1, max_size=60))
def test_priority_space_keeps_order_and_uniqueness(values: list[int]) -> None:
    space = PrioritySpace(1, 40, step=4)
    inserted = []
    for i, v in enumerate(values):
        key = (250, float(v), 0, f"p{i}", f"r{i}")
        try:
            space.insert(key)
        except PrioritySpaceExhausted:
            assert len(space) == 40
            break
        inserted.append(key)
    prios = [space.prio[k] for k in space.keys]
    assert space.keys == sorted(inserted)
    assert prios == sorted(prios, reverse=True) and len(set(prios)) == len(prios)
    assert all(1 <= p <= 40 for p in prios)


async def test_icmp_type_and_code_are_matched(env: Env) -> None:
    from antrea.apis.controlplane.types import Protocol, Service
    from antrea.ovs.openflow.sim import FlowTables, Packet

    echo = Service(Protocol.ICMP, None, None, 8, 0)
    env.load(
        native(
            "icmp",
            [
                (RuleAction.ALLOW, ingress(blocks=[ANY], services=[echo])),
                (RuleAction.DROP, ingress(blocks=[ANY], services=[Service(Protocol.ICMP)])),
            ],
            ["atg-a"],
        )
    )
    await env.sync()
    sim = FlowTables(env.rt.flows.values(), t.POLICY_TABLES)

    def verdict(icmp_type: int) -> object:
        pkt = Packet("icmp", "10.244.3.10", "10.244.1.10", regs={t.TARGET_OFPORT.reg: 3},
                     icmp_type=icmp_type, icmp_code=0)  # fmt: skip
        return sim.run(t.ANTREA_INGRESS_RULE, pkt).table

    assert verdict(8) == t.CONNTRACK_COMMIT  # echo request: allowed by the first rule
    assert verdict(13) is None  # timestamp: dropped by the second


async def test_no_priority_left_fails_closed_at_the_top(env: Env) -> None:
    env.rec.native.spaces[t.ANTREA_INGRESS_RULE] = PrioritySpace(1000, 1001)
    allow_b = ingress(groups=["ag-b"])
    for i in range(3):
        env.load(native(f"p{i}", [(RuleAction.ALLOW, allow_b)], ["atg-a"], prio=1 + i))
    result = await env.sync()
    assert len(result.failed) == 1  # type: ignore[attr-defined]
    drops = [f for f in env.rt.table(t.ANTREA_INGRESS_RULE) if f.priority == 1002]
    assert drops and all(a.__class__.__name__ == "Drop" for f in drops for a in f.actions)
    assert not env.allows("10.244.1.20")  # a rule that cannot be placed never opens anything


def test_a_large_batch_is_spread_evenly() -> None:
    space = PrioritySpace(1000, 60000)
    keys = [(250, float(i), 0, "p", f"r{i}") for i in range(1000)]
    moved = space.rebalance(keys)
    assert moved == set(keys)
    prios = [space.prio[k] for k in space.keys]
    gaps = {a - b for a, b in itertools.pairwise(prios)}
    assert gaps == {58}  # (60000 - 1000 + 1) // 1001
    # One more key in the middle moves nothing else.
    assert space.insert((250, 499.5, 0, "q", "new")) == {(250, 499.5, 0, "q", "new")}


async def test_logged_rules_send_new_connections_to_the_agent_with_their_reason() -> None:
    """enableLogging: the action flow also outputs to the controller after loading the
    packet-in reason "log" into reg0[18..19] (a logged Drop does only that); a Reject loads
    "reject" (3 = reject and log when logged), which is what the reject responder answers."""
    from antrea.agent.openflow.pipeline import PACKET_IN_REASON
    from antrea.ovs.openflow.flow import Drop, GotoTable, LoadReg, Output

    env = Env()
    env.rec = PolicyReconciler(
        FlowClient(env.rt), round_num=1, ofport_of=ofport_of, install_miss_flows=True,
        reject=lambda _d: (Output("CONTROLLER"),),
    )  # fmt: skip
    logged = dataclasses.replace(ingress(groups=["ag-z"]), enable_logging=True, log_label="l")
    plain = ingress(groups=["ag-b"])
    env.load(native("p", [(RuleAction.ALLOW, logged), (RuleAction.DROP, logged),
                          (RuleAction.REJECT, logged), (RuleAction.REJECT, plain),
                          (RuleAction.DROP, plain)], ["atg-a"]))  # fmt: skip
    await env.sync()
    actions = sorted(
        (f.priority, f.actions)
        for f in env.rt.table(t.ANTREA_INGRESS_RULE)
        if f.match.conj_id is not None
    )
    assert len(actions) == 5
    reason = [
        next((a.value for a in acts if isinstance(a, LoadReg) and a.reg == PACKET_IN_REASON.reg
              and a.start == PACKET_IN_REASON.start), None)
        for _, acts in reversed(actions)  # highest priority first: rule order
    ]  # fmt: skip
    assert reason == [1, 1, 3, 2, None]
    to_agent = [any(isinstance(a, Output) for a in acts) for _, acts in reversed(actions)]
    assert to_agent == [True, True, True, True, False]
    drops = [any(isinstance(a, Drop) for a in acts) for _, acts in reversed(actions)]
    assert drops == [False, False, False, False, True]
    allow = next(acts for _, acts in reversed(actions))
    assert allow[-1] == GotoTable(105)  # the logged Allow goes on past the copy (e2e: allows)


# A port, a masked range starting at the same port, a protocol without ports and ICMP types
# with and without a code make atoms like ("tcp", 80, None) / ("tcp", 80, 0xFFF0) /
# ("tcp", None, None) that plain tuple comparison cannot order (None < int raises): the
# Antrea-native flows sort their clause atoms, so such a rule crashed the whole batch and its
# Drop stayed unrealized (fail open). Every ordering of atoms goes through `atom_key`.
@pytest.mark.parametrize(
    ("services", "dropped", "allowed"),
    [
        ([tcp(80), tcp(80, 95)], [80, 85, 95], [79, 96]),
        ([tcp(), tcp(80)], [80, 1, 65535], []),
        ([tcp(80, 95), tcp(), tcp(88)], [80, 88, 443], []),
    ],
)
@pytest.mark.parametrize("kind", ["antrea", "k8s"])
async def test_mixed_port_atoms_are_realized(
    env: Env, kind: str, services: list[object], dropped: list[int], allowed: list[int]
) -> None:
    if kind == "antrea":
        rule = ingress(groups=["ag-z"], services=services)  # type: ignore[arg-type]
        env.load(native("mix", [(RuleAction.DROP, rule)], ["atg-a"]))
    else:  # a K8s rule allowing these ports (the pod is isolated otherwise)
        env.load(policy("mix", [ingress(groups=["ag-z"], services=services)], ["atg-a"]))  # type: ignore[arg-type]
    result = await env.sync()
    assert not result.failed  # type: ignore[attr-defined]
    for port in dropped:
        assert env.allows("10.244.3.10", port=port) is (kind == "k8s"), port
    for port in allowed:
        assert env.allows("10.244.3.10", port=port) is (kind != "k8s"), port


async def test_icmp_type_with_and_without_code_in_one_rule(env: Env) -> None:
    from antrea.apis.controlplane.types import Protocol, Service
    from antrea.ovs.openflow.sim import FlowTables, Packet

    any_code, code0 = (
        Service(Protocol.ICMP, None, None, 8, None),
        Service(Protocol.ICMP, None, None, 8, 0),
    )
    env.load(native("icmp", [(RuleAction.DROP, ingress(blocks=[ANY], services=[any_code, code0]))],
                    ["atg-a"]))  # fmt: skip
    result = await env.sync()
    assert not result.failed  # type: ignore[attr-defined]
    sim = FlowTables(env.rt.flows.values(), t.POLICY_TABLES)
    for code in (0, 1):
        pkt = Packet("icmp", "10.244.3.10", "10.244.1.10", regs={t.TARGET_OFPORT.reg: 3},
                     icmp_type=8, icmp_code=code)  # fmt: skip
        assert sim.run(t.ANTREA_INGRESS_RULE, pkt).dropped, code
