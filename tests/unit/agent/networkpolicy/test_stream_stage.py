"""Clause flows staged while a batch is planned (`PolicyReconciler._stage`): the switch gets the
same final flows as when nothing is staged before the sync, whatever the batch (shared clause
matches, priority bands, rules changed or deleted by an absorbed chunk after their matches were
staged: superseded inside the same bundle)."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antrea.agent.networkpolicy import reconciler as reconciler_mod
from antrea.agent.networkpolicy.cache import CompletedRule, RuleCache
from antrea.agent.networkpolicy.reconciler import BatchResult, PolicyReconciler
from antrea.agent.owners import PolicyOwner, is_policy_owner
from antrea.apis.controlplane.types import PodReference
from antrea.ovs.openflow import Flow
from antrea.ovs.openflow.client import FlowClient
from antrea.testbed.controlplane import (
    AppliedToGroup,
    IPBlock,
    added,
    deleted,
    egress,
    ingress,
    member,
    modified,
    policy,
    tcp,
)
from antrea.testbed.openflow import RecordingTransport, StreamingRecorder

PODS = [member("x", f"p{i}", f"10.244.1.{10 + i}") for i in range(3)]
OFPORTS = {PodReference("x", f"p{i}"): 3 + i for i in range(3)}
CIDRS = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "192.168.0.1/32", "172.16.0.0/12"]


def assert_sent_is_indexed(rec: PolicyReconciler) -> None:
    """Every owner's installed flows are what the indexes rebuild (as in test_bands)."""
    owners = {o for o in rec.client.owners() if is_policy_owner(o)}
    owners |= {(PolicyOwner.MATCH, t, a) for t, a in rec._matches}
    owners |= {(PolicyOwner.ISOLATION, t, a) for t, a in rec._isolation}
    for owner in owners:
        want = sorted(map(repr, rec._desired_of(owner) or ()))
        assert sorted(map(repr, rec.client.flows_of(owner))) == want, owner


class NoStageClient(FlowClient):
    """The reference: nothing streamed, every flow planned and sent at the sync."""

    async def stage_items(self, pairs: Iterable[tuple[Hashable, Sequence[Flow] | None]]) -> None:
        return None


class Env:
    def __init__(self, client: FlowClient, t: RecordingTransport, cap: int) -> None:
        self.t = t
        self.rec = PolicyReconciler(
            client, round_num=1, ofport_of=OFPORTS.get, max_conjunctions_per_flow=cap
        )
        self.cache = RuleCache()
        for i, p in enumerate(PODS):
            self.cache.apply(added(AppliedToGroup(f"atg-{i}", frozenset({p}))))

    def batch(self) -> dict[str, CompletedRule | None]:
        rules = self.cache.rules

        def order(rid: str) -> tuple[str, str]:  # (planned policy by policy)
            cr = rules.get(rid)
            return (str(cr.policy) if cr is not None else "", rid)

        return {r: self.cache.completed(r) for r in sorted(self.cache.take_dirty(), key=order)}

    async def realize(self, first: list[object], later: list[object]) -> BatchResult:
        """`first` applied, planned; `later` applied while it is planned (absorbed)."""
        for ev in first:
            self.cache.apply(ev)  # type: ignore[arg-type]
        pending = [later]

        def absorb() -> dict[str, CompletedRule | None]:
            if not pending:
                return {}
            for ev in pending.pop():
                self.cache.apply(ev)  # type: ignore[arg-type]
            return self.batch()

        return await self.rec.reconcile(self.batch(), absorb=absorb)


def _policy(n: int, pod: int, cidrs: list[str], port: int | None, *, out: bool, gen: int) -> object:
    services = [tcp(port)] if port is not None else None
    make = egress if out else ingress
    rules = [make(blocks=[IPBlock(c)], services=services) for c in cidrs]
    return policy(f"np-{n}", rules, [f"atg-{pod}"], generation=gen)


_OP = st.tuples(
    st.integers(0, 9),  # policy
    st.integers(0, 2),  # target pod
    st.lists(st.sampled_from(CIDRS), min_size=1, max_size=3),  # peers (shared across rules)
    st.sampled_from([None, 80]),
    st.booleans(),  # egress
    st.booleans(),  # delete instead of apply
)
_BATCH = st.tuples(st.lists(_OP, max_size=8), st.lists(_OP, max_size=4))  # first, absorbed


def _events(
    ops: list[tuple[int, int, list[str], int | None, bool, bool]], live: dict[int, object], gen: int
) -> list[object]:
    evs: list[object] = []
    for n, pod, cidrs, port, out, delete in ops:
        old = live.pop(n, None)
        if delete:
            if old is not None:
                evs.append(deleted(old))  # type: ignore[arg-type]
            continue
        live[n] = new = _policy(n, pod, cidrs, port, out=out, gen=gen)
        evs.append(modified(new) if old is not None else added(new))  # type: ignore[arg-type]
    return evs


@settings(max_examples=80, deadline=None)
@given(
    st.lists(_BATCH, min_size=1, max_size=4),
    st.sampled_from([2, 10**6]),  # the per-flow cap: bands, or one flow per match
    st.integers(1, 3),  # rules planned between two stage points
)
def test_staged_batches_install_what_unstaged_ones_do(
    batches: list[tuple[list[tuple[int, int, list[str], int | None, bool, bool]], ...]],
    cap: int,
    chunk: int,
) -> None:
    async def run() -> None:
        ref_t, stream_t, buf_t = RecordingTransport(), StreamingRecorder(), RecordingTransport()
        envs = [
            Env(NoStageClient(ref_t), ref_t, cap),
            Env(FlowClient(stream_t), stream_t, cap),  # streamed (native order at the commit)
            Env(FlowClient(buf_t), buf_t, cap),  # buffered: one plain bundle at the commit
        ]
        live: dict[int, object] = {}
        for gen, (first_ops, later_ops) in enumerate(batches, 1):
            first = _events(first_ops, live, gen)
            later = _events(later_ops, live, gen)
            results = [await env.realize(first, later) for env in envs]
            counts = [
                (r.flows_added, r.flows_modified, r.flows_deleted, r.failed, r.bundles)
                for r in results
            ]
            assert counts[1] == counts[0] and counts[2] == counts[0]
            assert stream_t.flows == ref_t.flows and buf_t.flows == ref_t.flows
            for env in envs:
                assert_sent_is_indexed(env.rec)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reconciler_mod, "PLAN_CHUNK", chunk)
        asyncio.run(run())


async def test_a_staged_clause_flow_touched_again_is_superseded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A peer's clause flow staged with one conjunction, then shared by a rule planned later in
    the batch, and one dropped by an absorbed change: the later flows win in the same bundle."""
    monkeypatch.setattr(reconciler_mod, "PLAN_CHUNK", 1)
    t = StreamingRecorder()
    env = Env(FlowClient(t), t, 10**6)
    a = _policy(0, 0, ["10.1.0.0/16"], None, out=False, gen=1)
    b = _policy(1, 1, ["10.2.0.0/16"], None, out=False, gen=1)
    c = _policy(2, 2, ["10.1.0.0/16"], None, out=False, gen=1)  # shares a's peer, planned after it
    result = await env.realize([added(a), added(b), added(c)], [deleted(b)])  # type: ignore[arg-type]
    assert not result.failed and t.commits == 1 and t.discards == 0
    streamed = [f for chunk in t.streamed for f in chunk]
    peer = [f for f in streamed if "10.1.0.0" in str(f.match.nw_src)]
    gone = [f for f in streamed if "10.2.0.0" in str(f.match.nw_src)]
    assert [len(f.actions) for f in peer] == [1] and gone  # staged with one conjunction
    (installed,) = [f for f in t.flows.values() if f.key == peer[0].key]
    assert len(installed.actions) == 2  # re-added at the commit with both
    assert gone[0].key not in t.flows  # deleted at the commit (after its streamed add)
    adds, _, deletes = t.bundles[-1]
    assert installed in adds and gone[0] in deletes
    assert_sent_is_indexed(env.rec)
