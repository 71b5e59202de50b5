"""The stream consumer: initial bundle after BOOKMARK, coalescing, resync, status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import structlog

from antrea.agent.networkpolicy.controller import NetworkPolicyController
from antrea.agent.networkpolicy.reconciler import PolicyReconciler
from antrea.apis.controlplane.codec import EventType, WatchEvent
from antrea.apis.controlplane.types import (
    AddressGroupPatch,
    IPBlock,
    Kind,
    NetworkPolicyNodeStatus,
    PodReference,
)
from antrea.ovs.openflow.client import FlowClient
from antrea.testbed.controlplane import (
    BOOKMARK,
    RESTART,
    AddressGroup,
    AppliedToGroup,
    added,
    deleted,
    feed,
    ingress,
    member,
    policy,
    tcp,
)
from antrea.testbed.openflow import RecordingTransport

A = member("x", "a", "10.244.1.10")
B = member("x", "b", "10.244.1.20")
YB = member("y", "b", "10.244.2.20")
PORTS: dict[PodReference, int] = {A.pod: 3, B.pod: 4}


def make() -> tuple[NetworkPolicyController, RecordingTransport, list[NetworkPolicyNodeStatus]]:
    rt = RecordingTransport()
    reports: list[NetworkPolicyNodeStatus] = []

    async def report(st: NetworkPolicyNodeStatus) -> None:
        reports.append(st)

    rec = PolicyReconciler(FlowClient(rt), round_num=1, ofport_of=PORTS.get)
    return (
        NetworkPolicyController(node_name="n1", reconciler=rec, report_status=report),
        rt,
        reports,
    )


def initial(n: int) -> list[WatchEvent]:
    evs = [added(AppliedToGroup("atg", frozenset({A, B})))]
    for i in range(n):
        evs.append(added(AddressGroup(f"ag{i}", frozenset({member("y", f"p{i}", f"10.9.{i}.1")}))))
        evs.append(
            added(policy(f"p{i}", [ingress(groups=[f"ag{i}"], services=[tcp(80)])], ["atg"]))
        )
    return evs


async def test_initial_state_is_one_bundle_after_bookmark() -> None:
    ctl, rt, reports = make()
    await ctl.run(feed([*initial(50), BOOKMARK]))
    assert ctl.ready.is_set()
    assert len(rt.bundles) == 1
    assert len(ctl.reconciler.realized) == 50
    await asyncio.sleep(0)
    assert {r.policy for r in reports} == {f"p{i}" for i in range(50)}
    assert all(r.realized and r.generation == 1 and r.node == "n1" for r in reports)


async def test_nothing_realized_before_bookmark() -> None:
    ctl, rt, _ = make()
    await ctl.run(feed(initial(3)))
    assert not rt.bundles and not ctl.ready.is_set()


async def test_resync_keeps_right_flows_and_drops_stale_ones() -> None:
    ctl, rt, _ = make()
    q: asyncio.Queue[WatchEvent | None] = asyncio.Queue()

    async def stream():
        while (ev := await q.get()) is not None:
            yield ev

    task = asyncio.create_task(ctl.run(stream()))
    for ev in [*initial(3), BOOKMARK]:
        q.put_nowait(ev)
    await asyncio.sleep(0.05)
    await ctl.wait_idle()
    flows_before = dict(rt.flows)
    n_bundles = len(rt.bundles)

    # reconnect: the same state minus p2 (and its group)
    for ev in [RESTART, *initial(2), BOOKMARK]:
        q.put_nowait(ev)
    await asyncio.sleep(0.05)
    await ctl.wait_idle()
    assert len(rt.bundles) == n_bundles + 1
    adds, _mods, dels = rt.bundles[-1]
    assert not adds  # nothing that was right was re-installed
    assert dels and all(k in flows_before for k in (f.key for f in dels))
    assert set(ctl.cache.policies) == {"p0", "p1"}

    # an identical reconnection changes nothing at all
    for ev in [RESTART, *initial(2), BOOKMARK]:
        q.put_nowait(ev)
    await asyncio.sleep(0.05)
    await ctl.wait_idle()
    assert len(rt.bundles) == n_bundles + 1
    q.put_nowait(None)
    await task


async def test_address_group_patch_and_pod_port_changes() -> None:
    ctl, rt, _ = make()
    ag = AddressGroup("ag", frozenset({YB}))
    evs = [
        added(AppliedToGroup("atg", frozenset({A, member("x", "c", "10.244.1.30")}))),
        added(ag),
        added(policy("p", [ingress(groups=["ag"])], ["atg"])),
        BOOKMARK,
        WatchEvent(
            EventType.MODIFIED,
            Kind.ADDRESS_GROUP,
            patch=AddressGroupPatch("ag", frozenset({B}), frozenset({YB})),
        ),
    ]
    await ctl.run(feed(evs))
    srcs = [f for f in rt.table(90) if f.match.nw_src is not None]
    assert [str(f.match.nw_src) for f in srcs] == ["10.244.1.20"]
    assert len(rt.table(100)) == 1  # x/c has no port yet: only x/a isolated

    PORTS[PodReference("x", "c")] = 5
    try:
        ctl.pod_changed(PodReference("x", "c"))
        await ctl.realize_dirty()
    finally:
        del PORTS[PodReference("x", "c")]
    assert len(rt.table(100)) == 2


async def test_policy_delete_and_status_generation() -> None:
    ctl, rt, reports = make()
    p1 = policy("p", [ingress(groups=["ag"])], ["atg"])
    p2 = policy("p", [ingress(groups=["ag"])], ["atg"], generation=2)
    evs = [
        added(AppliedToGroup("atg", frozenset({A}))),
        added(AddressGroup("ag", frozenset({YB}))),
        added(p1),
        BOOKMARK,
        added(p2),
    ]
    await ctl.run(feed(evs))
    await asyncio.sleep(0)
    assert (reports[-1].generation, reports[-1].realized) == (2, True)
    assert len(rt.bundles) == 1  # generation bump, same rules: no flow change
    await ctl.run(feed([deleted(p2)]))
    base = len(ctl.reconciler.base_flows())
    assert len(rt.flows) == base


async def test_incomplete_rule_waits_for_its_group() -> None:
    ctl, _rt, reports = make()
    q: asyncio.Queue[WatchEvent | None] = asyncio.Queue()

    async def stream():
        while (ev := await q.get()) is not None:
            yield ev

    task = asyncio.create_task(ctl.run(stream()))
    for ev in [
        added(AppliedToGroup("atg", frozenset({A}))),
        added(policy("p", [ingress(groups=["late"])], ["atg"])),
        BOOKMARK,
    ]:
        q.put_nowait(ev)
    await asyncio.sleep(0.05)
    await ctl.wait_idle()
    assert ctl.ready.is_set()
    assert not ctl.reconciler.realized
    assert not any(r.realized for r in reports)
    q.put_nowait(added(AddressGroup("late", frozenset({YB}))))
    await asyncio.sleep(0.05)
    await ctl.wait_idle()
    assert len(ctl.reconciler.realized) == 1
    assert reports and reports[-1].realized
    q.put_nowait(None)
    await task


async def test_policy_events_realized_changed_deleted() -> None:
    """One structured log event per policy outcome on the node, with the policy and node."""
    ctl, _, _ = make()
    p1 = policy("p", [ingress(groups=["ag"])], ["atg"])
    p2 = policy("p", [ingress(groups=["ag"])], ["atg"], generation=2)
    with structlog.testing.capture_logs() as logs:
        await ctl.run(
            feed(
                [
                    added(AppliedToGroup("atg", frozenset({A}))),
                    added(AddressGroup("ag", frozenset({YB}))),
                    added(p1),
                    BOOKMARK,
                ]
            )
        )
        await asyncio.sleep(0)
        await ctl.run(feed([added(p2)]))
        await asyncio.sleep(0)
        await ctl.run(feed([deleted(p2)]))
        await asyncio.sleep(0)
    events = [
        (e["event"], e.get("generation"), e["node"])
        for e in logs
        if e["event"].startswith("policy_") and e.get("policy") == "p"
    ]
    assert events == [
        ("policy_realized", 1, "n1"),
        ("policy_changed", 2, "n1"),
        ("policy_deleted", None, "n1"),
    ], events
    realized = next(e for e in logs if e["event"] == "policy_realized")
    assert realized["source"].startswith("K8sNetworkPolicy:") and realized["log_level"] == "info"


async def test_back_to_back_batches_wait_for_the_datapath_once() -> None:
    """A batch whose successor arrived during its bundle leaves the datapath wait to the
    successor; statuses ("realized" = enforced) are reported only after that wait."""
    ctl, rt, reports = make()
    settles: list[tuple[int, int]] = []  # (bundles so far, reports so far) at each wait
    later = added(policy("late", [ingress(groups=["ag0"], services=[tcp(81)])], ["atg"]))

    async def settle() -> None:
        settles.append((len(rt.bundles), len(reports)))

    ctl.reconciler.settle = settle
    plain_bundle = rt.bundle

    async def bundle(**kw: object) -> None:
        await plain_bundle(**kw)  # type: ignore[arg-type]
        if len(rt.bundles) == 2:  # the first batch after the initial one is in flight
            ctl.handle(later)

    rt.bundle = bundle  # type: ignore[method-assign]

    async def events() -> AsyncIterator[WatchEvent]:
        for ev in [*initial(1), BOOKMARK]:
            yield ev
        await ctl.ready.wait()
        yield added(policy("p1", [ingress(groups=["ag0"], services=[tcp(82)])], ["atg"]))

    await ctl.run(events())
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(rt.bundles) == 3
    # initial batch: settled; batch 2 (successor waiting): deferred; batch 3 settles both
    assert settles == [(1, 0), (3, 1)]
    assert not ctl.reconciler.unsettled
    assert {r.policy for r in reports if r.realized} == {"p0", "p1", "late"}


async def test_policies_arriving_while_a_batch_is_planned_join_its_bundle() -> None:
    """A burst (policies arriving one after the other while the first are being planned)
    lands as ONE bundle: the batch yields while it plans, the stream keeps being read, and
    the rules made dirty meanwhile are planned into the same bundle; statuses follow it."""
    ctl, rt, reports = make()
    big = [ingress(blocks=[IPBlock(f"10.{i // 250}.{i % 250}.0/24")]) for i in range(600)]
    burst = [added(policy(f"b{i}", big if i == 0 else big[:3], ["atg"])) for i in range(3)]
    planned_while_arriving: list[int] = []

    async def events() -> AsyncIterator[WatchEvent]:
        for ev in [*initial(1), BOOKMARK]:
            yield ev
        await ctl.ready.wait()
        for ev in burst:
            yield ev
            await asyncio.sleep(0)  # the next policy comes in the next read from the socket
            planned_while_arriving.append(len(ctl.reconciler.realized))

    await ctl.run(events())
    await asyncio.sleep(0)
    assert 1 < planned_while_arriving[0] < 600  # arrived while b0 was still being planned
    assert len(rt.bundles) == 2  # the initial state, then the whole burst
    assert len(ctl.reconciler.realized) == 1 + 600 + 3 + 3
    assert {r.policy for r in reports if r.realized} == {"p0", "b0", "b1", "b2"}


async def test_antrea_native_policy_reports_realized() -> None:
    """An Antrea-native policy's rules live in the native realizer, not the conjunction
    table: once realized, the agent reports it realized (not 'waiting for groups')."""
    import dataclasses

    from antrea.apis.controlplane.types import RuleAction

    ctl, _, reports = make()
    rule = dataclasses.replace(
        ingress(groups=["ag"]), name="r0", priority=0, action=RuleAction.DROP
    )
    p = dataclasses.replace(policy("acnp", [rule], ["atg"]), tier_priority=250, priority=1.0)
    evs = [
        BOOKMARK,
        added(AppliedToGroup("atg", frozenset({A}))),
        added(AddressGroup("ag", frozenset({YB}))),
        added(p),
    ]
    await ctl.run(feed(evs))
    await asyncio.sleep(0)
    assert [(r.policy, r.realized, r.message) for r in reports][-1] == ("acnp", True, "")


async def test_agent_view_says_realized_only_after_the_datapath_wait() -> None:
    """The agent's own view (its API, what the conformance settle reads) never calls a policy
    realized before the datapath wait that covers its bundle has returned, deferred or not."""
    ctl, rt, _ = make()
    seen: list[tuple[str, bool]] = []
    later = added(policy("late", [ingress(groups=["ag0"], services=[tcp(81)])], ["atg"]))

    def realized(name: str) -> bool:
        st = ctl.policy_state(name)
        return st is not None and st.realized

    async def settle() -> None:
        seen.append(("wait", realized("p1") or realized("late")))

    ctl.reconciler.settle = settle
    plain_bundle = rt.bundle

    async def bundle(**kw: object) -> None:
        await plain_bundle(**kw)  # type: ignore[arg-type]
        if len(rt.bundles) == 2:  # batch 2 (p1) in flight: its successor arrives
            ctl.handle(later)
        if len(rt.bundles) == 3:  # batch 3 in flight, batch 2's wait deferred to it
            seen.append(("bundle 3", realized("p1")))

    rt.bundle = bundle  # type: ignore[method-assign]

    async def events() -> AsyncIterator[WatchEvent]:
        for ev in [*initial(1), BOOKMARK]:
            yield ev
        await ctl.ready.wait()
        yield added(policy("p1", [ingress(groups=["ag0"], services=[tcp(82)])], ["atg"]))

    await ctl.run(events())
    assert len(rt.bundles) == 3
    assert seen == [("wait", False), ("bundle 3", False), ("wait", False)]
    assert realized("p1") and realized("late")


async def test_initial_statuses_follow_ready_and_say_the_same() -> None:
    """The initial batch's per-policy statuses are decided with the batch but logged and
    sent after `ready`'s waiters ran (the agent deleting the previous round is not held up by
    thousands of status lines): nothing of them is out when a waiter wakes, all of them
    are right after, with the realized-at-generation-1 content of before."""
    ctl, _, reports = make()
    at_ready: list[tuple[int, int]] = []

    with structlog.testing.capture_logs() as logs:

        async def waiter() -> None:
            await ctl.ready.wait()
            realized_lines = [e for e in logs if e["event"] == "policy_realized"]
            at_ready.append((len(realized_lines), len(reports)))

        task = asyncio.create_task(waiter())
        await ctl.run(feed([*initial(20), BOOKMARK]))
        await task
        for _ in range(3):
            await asyncio.sleep(0)
    assert at_ready == [(0, 0)]
    assert sorted(e["policy"] for e in logs if e["event"] == "policy_realized") == sorted(
        f"p{i}" for i in range(20)
    )
    assert sorted(r.policy for r in reports) == sorted(f"p{i}" for i in range(20))
    assert all(r.realized and r.generation == 1 and not r.message for r in reports)


async def test_initial_state_is_frozen_out_of_the_gc_while_it_arrives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before `ready`, what exists is frozen out of the cyclic GC before each policy is
    applied (young and full collections would otherwise traverse the growing initial state
    again and again), and once more after the (large) initial batch; after `ready` the stream
    does not freeze."""
    import gc

    from antrea.agent.networkpolicy import controller

    ctl, _, _ = make()
    frozen_at: list[int] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen_at.append(len(ctl.cache.rules)))
    monkeypatch.setattr(controller, "GC_PAUSE_RULES", 10)
    await ctl.run(feed([*initial(25), BOOKMARK]))
    # before each of the 25 policies (0..24 rules so far), then after the initial batch
    assert frozen_at == [*range(25), 25]
    more = [added(policy(f"q{i}", [ingress(groups=["ag0"])], ["atg"])) for i in range(30)]
    await ctl.run(feed(more))  # after `ready`: no freezing as events arrive or after batches
    assert frozen_at == [*range(25), 25]
