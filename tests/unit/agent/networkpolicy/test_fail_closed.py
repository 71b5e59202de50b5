"""Fail closed, per rule: a rule that cannot be realized keeps its pods isolated, says Failed,
is counted, and never stops the rest of the node's policies (issue 9, item 1)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from antrea.agent.networkpolicy import conjunctions
from antrea.agent.networkpolicy import reconciler as reconciler_mod
from antrea.agent.networkpolicy.cache import CompletedRule, RuleCache
from antrea.agent.networkpolicy.controller import NetworkPolicyController
from antrea.agent.networkpolicy.metrics import PolicyMetrics
from antrea.agent.networkpolicy.reconciler import BatchResult, PolicyReconciler
from antrea.apis.controlplane.types import (
    ControlPlaneObject,
    NetworkPolicyNodeStatus,
    PodReference,
    Protocol,
    Service,
)
from antrea.ovs.openflow.client import FlowClient
from antrea.ovs.openflow.flow import Flow
from antrea.ovs.openflow.groups import Group
from antrea.ovs.openflow.render import render_flow
from antrea.testbed.controlplane import (
    BOOKMARK,
    AddressGroup,
    AppliedToGroup,
    IPBlock,
    added,
    egress,
    ingress,
    member,
    policy,
    tcp,
    udp,
)
from antrea.testbed.openflow import RecordingTransport

A = member("x", "a", "10.244.1.10")
B = member("y", "b", "10.244.1.20")
PEER = member("z", "p", "10.244.2.30")
PORTS: dict[PodReference, int] = {A.pod: 3, B.pod: 4}
POISON = "10.66.66.0/24"
pytestmark = pytest.mark.timeout(60)


async def settle() -> None:
    for _ in range(3):  # let the status report tasks run
        await asyncio.sleep(0)


def text(rt: RecordingTransport) -> list[str]:
    return [re.sub(r"cookie=[^, ]*,?", "", render_flow(f)) for f in rt.flows.values()]


def has(rt: RecordingTransport, *parts: str) -> bool:
    return any(all(p in line for p in parts) for line in text(rt))


class Env:
    def __init__(self, transport: RecordingTransport | None = None) -> None:
        self.rt = transport or RecordingTransport()
        self.reports: list[NetworkPolicyNodeStatus] = []
        self.registry = CollectorRegistry()
        self.metrics = PolicyMetrics(
            self.registry,
            lambda: {"rules": {}, "policies": 0, "rule_errors": 0, "flows": 0},
        )
        self.rec = PolicyReconciler(FlowClient(self.rt), round_num=1, ofport_of=PORTS.get)
        self.ctl = NetworkPolicyController(
            node_name="n1",
            reconciler=self.rec,
            report_status=self._report,
            on_batch=self.metrics.observe_batch,
        )

    async def _report(self, st: NetworkPolicyNodeStatus) -> None:
        self.reports.append(st)

    async def feed(self, *objs: Any) -> None:
        for o in objs:
            self.ctl.handle(added(o))
        await self.ctl.realize_dirty()

    def failures(self, stage: str) -> float:
        v = self.registry.get_sample_value(
            "antrea_agent_networkpolicy_rule_failures_total", {"stage": stage}
        )
        return v or 0.0


def poison_planner(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the planner raise for any rule with the POISON ipBlock (an injected bug)."""
    real = conjunctions.plan_rule

    def plan_rule(rule: CompletedRule, ofport_of: Any, *memo: Any) -> Any:
        if any(b.cidr == POISON for b in rule.peer_blocks):
            raise TypeError("injected planner bug")
        return real(rule, ofport_of, *memo)

    monkeypatch.setattr(reconciler_mod, "plan_rule", plan_rule)


async def test_ports_mixing_portless_and_numbered_entries_realize() -> None:
    """The known instance: `ports: [{}, {port: 80}]` used to raise TypeError sorting."""
    env = Env()
    services = [Service(Protocol.TCP, None), tcp(80), udp(), Service(Protocol.TCP, 81, 90)]
    await env.feed(
        AddressGroup("ag", frozenset({PEER})),
        AppliedToGroup("atg-a", frozenset({A})),
        policy("mixed", [ingress(groups=["ag"], services=services)], ["atg-a"]),
        policy("mixed-eg", [egress(blocks=[IPBlock("10.0.0.0/8")], services=services)], ["atg-a"]),
    )
    await settle()
    assert not env.ctl.rule_errors
    assert has(env.rt, "priority=200,tcp actions=conjunction(")
    assert has(env.rt, "priority=200,tcp,tp_dst=80 actions=conjunction(")
    assert env.ctl.policy_state("mixed").phase == "Realized"  # type: ignore[union-attr]


async def test_planner_crash_isolates_the_rule_and_spares_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    poison_planner(monkeypatch)
    env = Env()
    await env.feed(
        AppliedToGroup("atg-a", frozenset({A})),
        AppliedToGroup("atg-b", frozenset({B})),
        policy("bad", [ingress(blocks=[IPBlock(POISON)])], ["atg-a"], namespace="x"),
        policy("good", [ingress(blocks=[IPBlock("10.1.0.0/16")])], ["atg-b"], namespace="y"),
    )
    env.ctl.handle(BOOKMARK)
    await env.ctl.realize_dirty()
    # the bad rule's pod is isolated and nothing is allowed to it; the good rule is realized
    assert has(env.rt, "table=100", "reg1=0x3 actions=drop")
    assert not has(env.rt, "10.66.66.0")
    assert has(env.rt, "table=90", "nw_src=10.1.0.0/16")
    assert has(env.rt, "table=100", "reg1=0x4 actions=drop")
    bad = env.ctl.policy_state("bad")
    assert bad is not None and bad.phase == "Failed" and not bad.realized
    assert "planning failed: TypeError: injected planner bug" in bad.message
    assert env.ctl.policy_state("good").phase == "Realized"  # type: ignore[union-attr]
    assert env.failures("plan") == 1
    await settle()
    failed = [r for r in env.reports if r.policy == "bad"]
    assert failed and not failed[-1].realized and "injected planner bug" in failed[-1].message

    # a policy created afterwards, on the same pod, is still realized (nothing is stuck)
    await env.feed(policy("later", [ingress(blocks=[IPBlock("10.2.0.0/16")])], ["atg-a"]))
    assert has(env.rt, "table=90", "nw_src=10.2.0.0/16")
    assert env.ctl.policy_state("later").phase == "Realized"  # type: ignore[union-attr]


async def test_planner_crash_on_an_update_withdraws_the_old_allow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rule that worked and now cannot be planned allows nothing any more (fail closed)."""
    env = Env()
    await env.feed(
        AppliedToGroup("atg-a", frozenset({A})),
        policy("p", [ingress(blocks=[IPBlock("10.3.0.0/16")])], ["atg-a"]),
    )
    env.ctl.handle(BOOKMARK)
    await env.ctl.realize_dirty()
    assert has(env.rt, "nw_src=10.3.0.0/16")
    poison_planner(monkeypatch)
    env.ctl.handle(added(policy("p", [ingress(blocks=[IPBlock(POISON)])], ["atg-a"], generation=2)))
    await env.ctl.realize_dirty()
    assert not has(env.rt, "nw_src=10.3.0.0/16")
    assert not has(env.rt, "conj_id=")
    assert has(env.rt, "table=100", "reg1=0x3 actions=drop")
    assert env.ctl.policy_state("p").phase == "Failed"  # type: ignore[union-attr]


class RenderBomb(RecordingTransport):
    """A transport whose renderer blows up on one flow (a crash in the apply path)."""

    async def bundle(
        self,
        *,
        add: Sequence[Flow] = (),
        modify: Sequence[Flow] = (),
        delete: Sequence[Flow] = (),
        **groups: Sequence[Group],
    ) -> None:
        for f in (*add, *modify):
            if "10.77.0.0/16" in render_flow(f):
                raise ValueError("cannot render")
        await super().bundle(add=add, modify=modify, delete=delete, **groups)


async def test_render_crash_is_contained_to_its_rule() -> None:
    env = Env(RenderBomb())
    await env.feed(
        AppliedToGroup("atg-a", frozenset({A})),
        AppliedToGroup("atg-b", frozenset({B})),
        policy("bad", [ingress(blocks=[IPBlock("10.77.0.0/16")], services=[tcp(80)])], ["atg-a"]),
        policy("good", [ingress(blocks=[IPBlock("10.1.0.0/16")])], ["atg-b"]),
        policy("good-a", [ingress(blocks=[IPBlock("10.5.0.0/16")])], ["atg-a"]),
    )
    env.ctl.handle(BOOKMARK)
    await env.ctl.realize_dirty()
    assert has(env.rt, "reg1=0x3 actions=drop") and has(env.rt, "reg1=0x4 actions=drop")
    assert has(env.rt, "nw_src=10.1.0.0/16") and has(env.rt, "nw_src=10.5.0.0/16")
    # the bad rule's other clause flows were withdrawn: its conjunction has no action flow
    bad_rule = env.ctl.cache.rules_of("bad")[0]
    assert not env.rec.realized[bad_rule.id].conjs
    assert not has(env.rt, "tcp,tp_dst=80")
    assert env.ctl.policy_state("bad").phase == "Failed"  # type: ignore[union-attr]
    assert "cannot render" in env.ctl.policy_state("bad").message  # type: ignore[union-attr]
    assert env.ctl.policy_state("good").phase == "Realized"  # type: ignore[union-attr]
    assert env.failures("apply") == 1


async def test_any_crash_in_the_batch_is_narrowed_to_its_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Belt and braces: even a crash outside the guarded planner (here: in the reconciler's
    own per-rule code) fails only the rule that triggers it."""
    env = Env()
    real = PolicyReconciler._plan

    def plan(self: PolicyReconciler, rid: str, completed: Any, result: Any, *, forced: bool) -> Any:
        if completed is not None and completed.rule.policy == "bad" and not forced:
            raise RuntimeError("injected reconciler bug")
        return real(self, rid, completed, result, forced=forced)

    monkeypatch.setattr(PolicyReconciler, "_plan", plan)
    objs: list[ControlPlaneObject] = [
        AppliedToGroup("atg-a", frozenset({A})),
        AppliedToGroup("atg-b", frozenset({B})),
    ]
    for i in range(7):
        objs.append(policy(f"g{i}", [ingress(blocks=[IPBlock(f"10.{i}.0.0/16")])], ["atg-b"]))
    objs.append(policy("bad", [ingress(blocks=[IPBlock("10.99.0.0/16")])], ["atg-a"]))
    for o in objs:
        env.ctl.handle(added(o))
    env.ctl.handle(BOOKMARK)
    result: BatchResult = await env.ctl.realize_dirty()
    assert env.ctl.ready.is_set()
    for i in range(7):
        assert has(env.rt, f"nw_src=10.{i}.0.0/16"), i
    assert has(env.rt, "reg1=0x3 actions=drop")
    assert not has(env.rt, "10.99.0.0")
    assert list(result.failed_stage.values()) == ["crash"]
    assert env.ctl.policy_state("bad").phase == "Failed"  # type: ignore[union-attr]
    assert env.failures("crash") == 1


async def test_a_rule_that_cannot_be_linked_fails_alone() -> None:
    """More conjunctions on one clause match than every priority band holds: the last rule
    fails (isolated), the others stay, and nothing of it is left half-linked."""
    from antrea.agent.openflow.pipeline import MATCH_BANDS

    env = Env()
    env.rec.band_cap = 1
    objs: list[Any] = [AppliedToGroup("atg-a", frozenset({A}))]
    n = MATCH_BANDS + 1
    for i in range(n):
        objs.append(policy(f"p{i}", [ingress(blocks=[IPBlock("10.1.0.0/16")])], ["atg-a"]))
    for o in objs:
        env.ctl.handle(added(o))
    env.ctl.handle(BOOKMARK)
    result: BatchResult = await env.ctl.realize_dirty()
    assert len(result.failed) == 1 and list(result.failed_stage.values()) == ["plan"]
    (bad,) = result.failed
    assert "BandsExhausted" in result.failed[bad]
    assert not env.rec.realized[bad].conjs and env.rec.realized[bad].isolated
    assert sum(1 for line in text(env.rt) if "conj_id=" in line) == n - 1
    assert all(len(v) == n - 1 for v in env.rec._matches.values())
    assert has(env.rt, "reg1=0x3 actions=drop")


async def test_rejected_flows_withdraw_the_rule_but_keep_isolation() -> None:
    """A switch refusal of one clause flow leaves no half-realized rule behind."""

    class Picky(RecordingTransport):
        async def bundle(
            self,
            *,
            add: Sequence[Flow] = (),
            modify: Sequence[Flow] = (),
            delete: Sequence[Flow] = (),
            **groups: Sequence[Group],
        ) -> None:
            if any("10.9.9.9" in render_flow(f) for f in add):
                from antrea.ovs.errors import BundleRejected

                raise BundleRejected(["fake"], 1, "bad flow")
            await super().bundle(add=add, modify=modify, delete=delete, **groups)

    env = Env(Picky())
    await env.feed(
        AppliedToGroup("atg-a", frozenset({A})),
        policy(
            "bad",
            [ingress(blocks=[IPBlock("10.9.9.9/32"), IPBlock("10.8.0.0/16")])],
            ["atg-a"],
        ),
    )
    env.ctl.handle(BOOKMARK)
    await env.ctl.realize_dirty()
    assert has(env.rt, "reg1=0x3 actions=drop")
    assert not has(env.rt, "10.8.0.0/16")  # the half that the switch took is withdrawn
    assert not has(env.rt, "conj_id=")
    assert env.ctl.policy_state("bad").phase == "Failed"  # type: ignore[union-attr]


def test_isolation_atoms_need_no_planning() -> None:
    from antrea.agent.networkpolicy.conjunctions import isolation_atoms

    cache = RuleCache()
    cache.apply(added(AppliedToGroup("atg", frozenset({A, B}))))
    cache.apply(added(policy("p", [ingress(), egress()], ["atg"])))
    by_dir = {cache.rules[r].direction.value: cache.completed(r) for r in cache.rules}
    atoms = {d: isolation_atoms(c, PORTS.get) for d, c in by_dir.items() if c is not None}
    assert set(atoms.values()) == {
        frozenset({("reg1", 3), ("reg1", 4)}),
        frozenset({("nw_src", 0x0AF4010A, 32), ("nw_src", 0x0AF40114, 32)}),
    }


def test_failed_status_reaches_the_controller_view_and_antctl() -> None:
    from antrea.antctl.agent_cmds import _realized as agent_column
    from antrea.antctl.controller_cmds import _realized as controller_column
    from antrea.controller.status import StatusAggregator
    from antrea.controller.views import object_json

    agg = StatusAggregator()
    why = "rule 0 (abc): planning failed: TypeError: boom"
    agg.report(NetworkPolicyNodeStatus("p", "n1", 1, True, ""))
    agg.report(NetworkPolicyNodeStatus("p", "n2", 1, False, why))
    status = agg.status("p", 1, frozenset({"n1", "n2"}))
    doc = object_json(policy("p", [], []), frozenset({"n1", "n2"}), status)
    assert doc["status"]["phase"] == "Failed"
    assert doc["status"]["failures"] == [{"node": "n2", "message": why}]
    assert controller_column(doc) == "1/2 Failed on n2"
    agent_doc = {"realized": False, "phase": "Failed", "message": why}
    assert agent_column(agent_doc) == f"Failed: {why}"


async def test_a_flow_that_cannot_be_built_fails_only_its_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An atom that cannot become a match crashes the batch when its clause flow is built;
    the controller narrows that down to the rule, and resends what the crash left unsent."""
    real = conjunctions.atom_match

    def atom_match(atom: Any) -> Any:
        if atom == ("nw_src", 0x0A630000, 16):
            raise ValueError("injected match bug")
        return real(atom)

    monkeypatch.setattr(reconciler_mod, "atom_match", atom_match)
    env = Env()
    objs: list[Any] = [
        AppliedToGroup("atg-a", frozenset({A})),
        AppliedToGroup("atg-b", frozenset({B})),
    ]
    for i in range(5):
        objs.append(policy(f"g{i}", [ingress(blocks=[IPBlock(f"10.{i}.0.0/16")])], ["atg-b"]))
    objs.append(policy("bad", [ingress(blocks=[IPBlock("10.99.0.0/16")])], ["atg-a"]))
    for o in objs:
        env.ctl.handle(added(o))
    env.ctl.handle(BOOKMARK)
    result: BatchResult = await env.ctl.realize_dirty()
    for i in range(5):
        assert has(env.rt, f"nw_src=10.{i}.0.0/16"), i
    assert has(env.rt, "reg1=0x3 actions=drop") and not has(env.rt, "10.99.0.0")
    assert not has(env.rt, "reg1=0x3 actions=conjunction")
    assert list(result.failed_stage.values()) == ["crash"]
    assert env.ctl.policy_state("bad").phase == "Failed"  # type: ignore[union-attr]
    # and the next, unrelated change is realized normally
    await env.feed(policy("later", [ingress(blocks=[IPBlock("10.7.0.0/16")])], ["atg-b"]))
    assert has(env.rt, "nw_src=10.7.0.0/16")


def _acnp_drop(name: str, rule: Any, atgs: list[str], prio: float = 1.0) -> Any:
    import dataclasses

    from antrea.apis.controlplane.types import RuleAction

    r = dataclasses.replace(rule, action=RuleAction.DROP, priority=0)
    return dataclasses.replace(policy(name, [r], atgs), tier_priority=250, priority=prio)


async def test_antrea_native_rule_mixing_a_port_and_a_range_from_it_realizes() -> None:
    """Through the agent's controller: an Antrea-native Drop whose ports are 80 and 80-95
    (atoms ("tcp", 80, None) and ("tcp", 80, 0xFFF0)) used to crash sorting its clause atoms,
    and its isolation retry crashed the same way: no flow at all, the Drop unenforced (fail
    open) and the policy Failed. Now it is realized like any other rule."""
    env = Env()
    await env.feed(
        AddressGroup("ag", frozenset({PEER})),
        AppliedToGroup("atg-a", frozenset({A})),
        _acnp_drop("mix", ingress(groups=["ag"], services=[tcp(80), tcp(80, 95)]), ["atg-a"]),
        _acnp_drop("all", ingress(groups=["ag"], services=[udp(), udp(53)]), ["atg-a"], 2.0),
    )
    await settle()
    assert not env.ctl.rule_errors
    assert has(env.rt, "table=85", "tcp,tp_dst=80 actions=conjunction(")
    assert has(env.rt, "table=85", "tcp,tp_dst=0x50/0xfff0 actions=conjunction(")
    assert has(env.rt, "table=85", "udp actions=conjunction(")
    assert has(env.rt, "table=85", "conj_id=", "actions=drop")
    for name in ("mix", "all"):
        assert env.ctl.policy_state(name).phase == "Realized", name  # type: ignore[union-attr]


async def test_antrea_native_flows_that_cannot_be_built_drop_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crash building one Antrea-native rule's flows fails that rule closed (drops for its
    pods at its priority) in the same batch; the other rules are realized."""
    from antrea.agent.networkpolicy.antrea_native import NativeRealizer, NativeRule

    real = NativeRealizer.flows

    def flows(self: NativeRealizer, r: NativeRule) -> list[Flow]:
        if r.rule.policy == "bad" and not r.failed:  # (planned fine; its drops build fine)
            raise ValueError("injected flow bug")
        return real(self, r)

    monkeypatch.setattr(NativeRealizer, "flows", flows)
    env = Env()
    await env.feed(
        AddressGroup("ag", frozenset({PEER})),
        AppliedToGroup("atg-a", frozenset({A})),
        AppliedToGroup("atg-b", frozenset({B})),
        _acnp_drop("bad", ingress(groups=["ag"], services=[tcp(666)]), ["atg-a"]),
        _acnp_drop("good", ingress(groups=["ag"], services=[tcp(80)]), ["atg-b"], 2.0),
    )
    await settle()
    assert has(env.rt, "table=85", "reg1=0x3 actions=drop")  # the bad rule's pod: drops
    assert not has(env.rt, "table=85", "reg1=0x3 actions=conjunction")
    assert has(env.rt, "table=85", "reg1=0x4 actions=conjunction(")  # the good rule
    assert env.ctl.policy_state("bad").phase == "Failed"  # type: ignore[union-attr]
    assert env.ctl.policy_state("good").phase == "Realized"  # type: ignore[union-attr]
    assert env.failures("plan") == 1
