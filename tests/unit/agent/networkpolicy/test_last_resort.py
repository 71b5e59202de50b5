"""The last resort (agent/networkpolicy/lastresort.py): a rule whose realization crashed and
whose isolation retry crashed too still has its applied-to pods isolated (drops built from
their ofports / IPs alone), says Failed, and spares every other policy (issue 9).

Each test injects a crash (monkeypatch) at one point where, before, the rule ended with no flow
at all; the verdicts come from the flow-table interpreter (`ovs.openflow.sim`)."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antrea.agent.networkpolicy import antrea_native, conjunctions, lastresort
from antrea.agent.networkpolicy import reconciler as reconciler_mod
from antrea.agent.networkpolicy.antrea_native import NativeRealizer, NativeRule
from antrea.agent.networkpolicy.controller import NetworkPolicyController
from antrea.agent.networkpolicy.reconciler import PolicyReconciler
from antrea.agent.openflow.pipeline import PRIO_LAST_RESORT
from antrea.apis.controlplane.types import PodReference, RuleAction
from antrea.ovs.openflow.client import FlowClient
from antrea.ovs.openflow.flow import Drop, Flow
from antrea.ovs.openflow.render import render_flow
from antrea.testbed.controlplane import (
    BOOKMARK,
    AddressGroup,
    AppliedToGroup,
    IPBlock,
    added,
    deleted,
    egress,
    flows_allow,
    ingress,
    member,
    modified,
    policy,
    tcp,
)
from antrea.testbed.openflow import RecordingTransport

A = member("x", "a", "10.244.1.10")
B = member("y", "b", "10.244.1.20")
PEER = member("z", "p", "10.244.2.30")
PORTS: dict[PodReference, int] = {A.pod: 3, B.pod: 4}
DROP = RuleAction.DROP
pytestmark = pytest.mark.timeout(60)


class Env:
    def __init__(self) -> None:
        self.rt = RecordingTransport()
        self.rec = PolicyReconciler(
            FlowClient(self.rt), round_num=1, ofport_of=PORTS.get, install_miss_flows=True
        )
        self.ctl = NetworkPolicyController(
            node_name="n1", reconciler=self.rec, report_status=self._report
        )

    async def _report(self, st: Any) -> None:
        pass

    async def feed(self, *events: Any) -> None:
        for e in events:
            self.ctl.handle(e)
        self.ctl.handle(BOOKMARK)
        await self.ctl.realize_dirty()

    def ingress_ok(self, dst: int, src: str = "10.244.2.30", port: int = 80) -> bool:
        return flows_allow(self.rt.flows.values(), src_ip=src, dst_ip="10.244.1.10",
                           dst_ofport=dst, proto="tcp", port=port, src_local=False)  # fmt: skip

    def egress_ok(self, src: str, dst: str = "10.9.9.9") -> bool:
        return flows_allow(self.rt.flows.values(), src_ip=src, dst_ip=dst, dst_ofport=None,
                           proto="tcp", port=80)  # fmt: skip

    def last_resort(self) -> list[str]:
        return [
            re.sub(r"cookie=[^, ]*,?", "", render_flow(f))
            for f in self.rt.flows.values()
            if f.priority == PRIO_LAST_RESORT
        ]

    def phase(self, name: str) -> str:
        return self.ctl.policy_state(name).phase  # type: ignore[union-attr]


def native(name: str, rule: Any, atgs: list[str], action: RuleAction, prio: float = 1.0) -> Any:
    r = dataclasses.replace(rule, action=action, priority=0)
    return dataclasses.replace(policy(name, [r], atgs), tier_priority=250, priority=prio)


def groups() -> list[Any]:
    return [
        added(AddressGroup("ag", frozenset({PEER}))),
        added(AppliedToGroup("atg-a", frozenset({A}))),
        added(AppliedToGroup("atg-b", frozenset({B}))),
    ]


def crash_k8s_planning(monkeypatch: pytest.MonkeyPatch, policy_name: str) -> list[bool]:
    """The reconciler's per-rule code raises for this policy, its isolation retry too."""
    real = PolicyReconciler._plan
    armed = [True]

    def plan(self: PolicyReconciler, rid: str, completed: Any, result: Any, *, forced: bool) -> Any:
        if armed[0] and completed is not None and completed.rule.policy == policy_name:
            raise RuntimeError("injected reconciler bug")
        return real(self, rid, completed, result, forced=forced)

    monkeypatch.setattr(PolicyReconciler, "_plan", plan)
    return armed


async def test_k8s_rule_whose_isolation_crashes_keeps_its_pod_isolated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    armed = crash_k8s_planning(monkeypatch, "bad")
    env = Env()
    await env.feed(
        *groups(),
        added(policy("bad", [ingress(groups=["ag"], services=[tcp(80)])], ["atg-a"])),
        added(policy("good", [ingress(groups=["ag"], services=[tcp(80)])], ["atg-b"])),
    )
    assert not env.ingress_ok(3)  # the bad rule's pod: isolated, even from its peer
    assert env.ingress_ok(4)  # the good policy: realized
    assert not env.ingress_ok(4, port=81)  # (and its pod isolated by it)
    assert env.last_resort() == ["table=85,priority=64000,ip,reg1=0x3 actions=drop"]
    assert env.phase("bad") == "Failed" and env.phase("good") == "Realized"
    # the bug goes away: the retry realizes the rule and the last resort goes with it
    armed[0] = False
    env.ctl.cache.dirty |= set(env.ctl.rule_errors)
    await env.ctl.realize_dirty()
    assert env.ingress_ok(3) and not env.ingress_ok(3, port=81)
    assert env.last_resort() == []
    assert env.phase("bad") == "Realized"


async def test_k8s_rule_whose_isolation_atoms_crash_is_not_left_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: the planner raising and then `isolation_atoms` raising left a new rule with an
    empty isolation (no flow at all, no crash for the controller to see)."""

    def boom(*a: Any, **k: Any) -> Any:
        raise TypeError("injected atom bug")

    real_plan, real_iso = conjunctions.plan_rule, conjunctions.isolation_atoms

    def plan_rule(rule: Any, *a: Any) -> Any:
        return boom() if rule.rule.policy == "bad" else real_plan(rule, *a)

    def isolation_atoms(rule: Any, *a: Any) -> Any:
        return boom() if rule.rule.policy == "bad" else real_iso(rule, *a)

    monkeypatch.setattr(reconciler_mod, "plan_rule", plan_rule)
    monkeypatch.setattr(reconciler_mod, "isolation_atoms", isolation_atoms)
    env = Env()
    await env.feed(
        *groups(),
        added(policy("bad", [egress(blocks=[IPBlock("10.9.0.0/16")])], ["atg-a"])),
        added(policy("good", [egress(blocks=[IPBlock("10.9.0.0/16")])], ["atg-b"])),
    )
    assert not env.egress_ok("10.244.1.10")  # A: its egress drops (last resort)
    assert env.egress_ok("10.244.1.20") and not env.egress_ok("10.244.1.20", "10.8.0.1")
    assert env.last_resort() == ["table=45,priority=64000,ip,nw_src=10.244.1.10 actions=drop"]
    assert env.phase("bad") == "Failed" and env.phase("good") == "Realized"
    # deleting the policy takes its last-resort drops away
    await env.feed(deleted(policy("bad", [egress(blocks=[IPBlock("10.9.0.0/16")])], ["atg-a"])))
    assert env.last_resort() == []
    assert env.egress_ok("10.244.1.10")


async def test_native_drop_whose_drops_cannot_be_built_keeps_its_pod_isolated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Flow building raises for the rule, its fallback drops too (1508961 covered the first
    crash alone): the Drop is enforced by the last resort, the other native rule is realized."""
    real = NativeRealizer.flows

    def flows(self: NativeRealizer, r: NativeRule) -> list[Flow]:
        if r.rule.policy == "bad":
            raise ValueError("injected flow bug")
        return real(self, r)

    monkeypatch.setattr(NativeRealizer, "flows", flows)
    env = Env()
    await env.feed(
        *groups(),
        added(native("bad", ingress(groups=["ag"], services=[tcp(80)]), ["atg-a"], DROP)),
        added(
            native(
                "good", ingress(groups=["ag"], services=[tcp(80)]), ["atg-b"], RuleAction.DROP, 2.0
            )
        ),
    )
    assert not env.ingress_ok(3)
    assert not env.ingress_ok(4) and env.ingress_ok(4, port=81)  # good: drops 80 only
    assert env.ingress_ok(3, src="10.1.1.1", port=81) is False  # (last resort: all of A's)
    assert env.last_resort() == ["table=85,priority=64000,ip,reg1=0x3 actions=drop"]
    assert env.phase("bad") == "Failed" and env.phase("good") == "Realized"


async def test_native_rule_whose_isolation_atoms_crash_is_not_left_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: planning and then `isolation_atoms` raising left the native rule failed with
    no drop atoms, so its "drops" were no flow at all."""

    def boom(rule: Any, *a: Any) -> Any:
        if rule.rule.policy == "bad":
            raise TypeError("injected atom bug")
        return real_plan(rule, *a)

    real_plan = conjunctions.plan_rule
    monkeypatch.setattr(antrea_native, "plan_rule", boom)
    monkeypatch.setattr(antrea_native, "isolation_atoms", boom)
    env = Env()
    await env.feed(
        *groups(),
        added(native("bad", egress(blocks=[IPBlock("10.9.0.0/16")]), ["atg-a"], DROP)),
        added(
            native("good", egress(blocks=[IPBlock("10.9.0.0/16")]), ["atg-b"], RuleAction.DROP, 2.0)
        ),
    )
    assert not env.egress_ok("10.244.1.10")
    assert not env.egress_ok("10.244.1.20") and env.egress_ok("10.244.1.20", "10.8.0.1")
    assert env.last_resort() == ["table=45,priority=64000,ip,nw_src=10.244.1.10 actions=drop"]
    assert env.phase("bad") == "Failed" and env.phase("good") == "Realized"


async def test_last_resort_drops_survive_a_resync_and_are_shared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two crashed rules on one pod: one flow; the resync after the crash keeps it; lifting
    one rule keeps the other's."""
    armed = crash_k8s_planning(monkeypatch, "bad")
    env = Env()
    await env.feed(
        *groups(),
        added(
            policy(
                "bad", [ingress(groups=["ag"]), ingress(blocks=[IPBlock("10.1.0.0/16")])], ["atg-a"]
            )
        ),
    )
    assert env.last_resort() == ["table=85,priority=64000,ip,reg1=0x3 actions=drop"]
    await env.rec.resync()
    assert env.last_resort() == ["table=85,priority=64000,ip,reg1=0x3 actions=drop"]
    rids = sorted(env.ctl.rule_errors)
    assert len(rids) == 2
    armed[0] = False
    await env.rec.lift_last_resort(rids[:1])
    assert env.last_resort() == ["table=85,priority=64000,ip,reg1=0x3 actions=drop"]
    await env.rec.lift_last_resort(rids[1:])
    assert env.last_resort() == []


async def test_k8s_rule_gaining_a_pod_when_its_isolation_crashes_isolates_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A realized rule whose group gains pod B while planning and isolation crash: B is
    isolated by the last resort (it used to keep the old isolation, A's only: B open)."""
    env = Env()
    await env.feed(
        *groups(),
        added(policy("p", [ingress(groups=["ag"], services=[tcp(80)])], ["atg-a"])),
    )
    assert env.ingress_ok(4, port=81)  # B: no policy yet

    def boom(*a: Any) -> Any:
        raise TypeError("injected atom bug")

    monkeypatch.setattr(reconciler_mod, "plan_rule", boom)
    monkeypatch.setattr(reconciler_mod, "isolation_atoms", boom)
    env.ctl.handle(modified(AppliedToGroup("atg-a", frozenset({A, B}))))
    await env.ctl.realize_dirty()
    assert not env.ingress_ok(4, port=81) and not env.ingress_ok(3, port=81)
    assert env.phase("p") == "Failed"


_IPS = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.sampled_from(["", "not-an-ip", "10.0.0.300", "10.1.2.3/24"]),
)


@settings(max_examples=150, deadline=None)
@given(
    pods=st.lists(
        st.tuples(
            st.integers(0, 20),
            st.lists(_IPS, max_size=3),
            st.one_of(st.none(), st.integers(1, 0xFFFF), st.just(-1)),
        ),
        max_size=8,
        unique_by=lambda t: t[0],
    ),
    inbound=st.booleans(),
)
def test_last_resort_drops_every_pod_it_can_name(
    pods: list[tuple[int, list[str], int | None]], inbound: bool
) -> None:
    """Over any targets (IPv4, IPv6, unparsable addresses; ofports known, unknown, or whose
    lookup raises (-1)): one drop per local pod (ingress) / per IPv4 address (egress), at the
    last resort's priority, renderable; nothing else, and never an exception."""
    from antrea.agent.networkpolicy.cache import CacheRule, CompletedRule
    from antrea.apis.controlplane.types import GroupMember

    members = {GroupMember(PodReference("ns", f"p{i}"), tuple(ips)): port for i, ips, port in pods}

    def ofport_of(pod: PodReference) -> int | None:
        for m, port in members.items():
            if m.pod == pod:
                if port == -1:
                    raise KeyError(pod)
                return port
        return None

    r = ingress(blocks=[IPBlock("10.0.0.0/8")]) if inbound else egress(blocks=[])
    cr = CacheRule("rid", "pol", r, ("atg",), 0)
    rule = CompletedRule(cr, frozenset(), (), frozenset(members))
    flows = lastresort.rule_drops(1, rule, ofport_of)
    if inbound:
        ports = {p for m, p in members.items() if p is not None and p != -1}
        assert {f.match.regs[0].value for f in flows} == ports
        assert {f.table for f in flows} <= {85}
    else:
        ips: set[object] = set()
        for m in members:
            for ip in m.ips:
                try:
                    a = ipaddress.ip_address(ip)
                except ValueError:
                    continue
                if a.version == 4:
                    ips.add(a)
        assert {f.match.nw_src for f in flows} == ips
        assert {f.table for f in flows} <= {45}
    assert all(f.priority == PRIO_LAST_RESORT and f.actions == (Drop(),) for f in flows)
    for f in flows:
        render_flow(f)
    merged = lastresort.merged([flows, flows])
    assert (merged or []) == list({f.key: f for f in flows}.values())
