"""A large batch streams its new conjunctions' flows into its bundle while it is planned
(`PolicyReconciler._stage`, `FlowClient.stage`): the switch ends up the same as without, and
a refused bundle fails closed exactly as without (discarded, bisected, rules withdrawn)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

import pytest

from antrea.agent.networkpolicy.controller import NetworkPolicyController
from antrea.agent.networkpolicy.reconciler import PLAN_CHUNK, BatchResult, PolicyReconciler
from antrea.apis.controlplane.types import (
    ControlPlaneObject,
    NetworkPolicyNodeStatus,
    PodReference,
)
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
)
from antrea.testbed.openflow import RecordingTransport, StreamingRecorder

A = member("x", "a", "10.244.1.10")
B = member("y", "b", "10.244.1.20")
PEER = member("z", "p", "10.244.2.30")
PORTS: dict[PodReference, int] = {A.pod: 3, B.pod: 4}
N = PLAN_CHUNK * 2 + 50  # rules: two chunks streamed, the rest sent at the commit
pytestmark = pytest.mark.timeout(120)


class PlainRecorder(RecordingTransport):
    """No streams (`open_stream` buffers): the reference."""

    def __init__(self, refuse: Callable[[Flow], bool] | None = None) -> None:
        super().__init__()
        self.refuse = refuse

    async def bundle(
        self,
        *,
        add: Sequence[Flow] = (),
        modify: Sequence[Flow] = (),
        delete: Sequence[Flow] = (),
        set_groups: Sequence[Group] = (),
        delete_groups: Sequence[Group] = (),
    ) -> None:
        if self.refuse is not None and any(self.refuse(f) for f in [*add, *modify, *delete]):
            from antrea.ovs.errors import BundleRejected

            raise BundleRejected(["fake"], 1, "refused by test")
        await super().bundle(add=add, modify=modify, delete=delete)


def policies(n: int, shift: int = 0) -> list[ControlPlaneObject]:
    out: list[ControlPlaneObject] = [
        AddressGroup("ag", frozenset({PEER})),
        AppliedToGroup("atg-a", frozenset({A})),
        AppliedToGroup("atg-b", frozenset({B})),
    ]
    for i in range(n):
        j = i + shift
        block = IPBlock(f"10.{j >> 8}.{j & 255}.0/24")
        rules = [ingress(blocks=[block], services=[tcp(80 + i % 3)])]
        if i % 4 == 0:
            rules.append(egress(groups=["ag"], services=[tcp(443)]))
        out.append(policy(f"p{j}", rules, ["atg-a" if i % 2 else "atg-b"]))
    return out


async def realize(t: RecordingTransport, *batches: list[ControlPlaneObject]) -> list[BatchResult]:
    async def report(st: NetworkPolicyNodeStatus) -> None:
        pass

    from antrea.ovs.openflow.client import FlowClient

    rec = PolicyReconciler(FlowClient(t), round_num=1, ofport_of=PORTS.get)
    ctl = NetworkPolicyController(node_name="n1", reconciler=rec, report_status=report)
    out = []
    for objs in batches:
        for o in objs:
            ctl.handle(added(o))
        ctl.handle(BOOKMARK)
        out.append(await ctl.realize_dirty())
    return out


async def test_a_large_batch_streams_and_installs_the_same_flows() -> None:
    plain, streaming = PlainRecorder(), StreamingRecorder()
    second = policies(N // 2, shift=N)  # a second large batch on top: re-planned clause flows
    want = await realize(plain, policies(N), second)
    start = time.perf_counter()
    got = await realize(streaming, policies(N), second)
    took = time.perf_counter() - start
    assert all(0 < r.seconds <= took for r in got)  # each batch's own duration
    assert streaming.flows == plain.flows
    assert [(r.flows_added, r.flows_modified, r.flows_deleted, r.failed) for r in got] == [
        (r.flows_added, r.flows_modified, r.flows_deleted, r.failed) for r in want
    ]
    assert streaming.commits == 2 and streaming.discards == 0
    streamed = [f for chunk in streaming.streamed for f in chunk]
    # the conjunctions' own flows (no shared clause flow), all installed
    assert len(streamed) > N and not any("conjunction(" in render_flow(f) for f in streamed)
    assert all(streaming.flows[f.key] == f for f in streamed)
    assert len(streaming.bundles) == len(plain.bundles) == 2


@pytest.mark.parametrize(
    "bad",
    [
        r"conj_id=100\b",  # a streamed flow (a conjunction's action flow)
        r"nw_src=10\.1\.244\.0/24",  # a clause flow, sent at the commit
    ],
)
async def test_a_refused_streamed_bundle_fails_closed_as_without(bad: str) -> None:
    def refuse(f: Flow) -> bool:
        return re.search(bad, render_flow(f)) is not None

    plain, streaming = PlainRecorder(refuse), StreamingRecorder(refuse)
    (want,) = await realize(plain, policies(N))
    (got,) = await realize(streaming, policies(N))
    assert want.failed and got.failed == want.failed
    assert got.failed_stage == want.failed_stage
    assert streaming.flows == plain.flows
    assert not any(refuse(f) for f in streaming.flows.values())
    assert (
        streaming.streamed and streaming.commits == 0
    )  # the streamed bundle was refused: the bisection is plain
    assert len(streaming.bundles) == len(plain.bundles) > 1


async def test_a_batch_that_crashes_after_streaming_discards_its_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Planning crashes in the second chunk, after the first was streamed: the streamed bundle
    is discarded there and then (not left open for a later sync to commit), nothing reaches the
    switch, and the batch's rules forget their conjunctions (the next batch relinks them)."""
    from antrea.agent.networkpolicy.cache import RuleCache
    from antrea.ovs.openflow.client import FlowClient

    t = StreamingRecorder()
    rec = PolicyReconciler(FlowClient(t), round_num=1, ofport_of=PORTS.get)
    cache = RuleCache()
    for o in policies(N):
        cache.apply(added(o))
    batch = {rid: cache.completed(rid) for rid in cache.take_dirty()}
    plan = PolicyReconciler._plan_rules
    calls = 0

    def crash_in_chunk_two(self: PolicyReconciler, *args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("planner bug (injected)")
        plan(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(PolicyReconciler, "_plan_rules", crash_in_chunk_two)
    with pytest.raises(RuntimeError, match="injected"):
        await rec.reconcile(batch, with_base=True, absorb=dict)
    assert t.streamed, "the first chunk was streamed before the crash"
    assert t.discards == 1 and t.commits == 0 and not t.flows
    monkeypatch.setattr(PolicyReconciler, "_plan_rules", plan)
    result = await rec.reconcile(batch, with_base=True)
    assert not result.failed and t.commits == 0 and t.flows  # realized from scratch
