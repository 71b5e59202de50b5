"""FlowClient turns desired state into minimal bundles; CoalescingWriter batches and isolates."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antrea.ovs.errors import BundleRejected
from antrea.ovs.openflow import Action, Drop, Flow, GotoTable, Match, Normal, RegMatch
from antrea.ovs.openflow.client import CoalescingWriter, FlowClient, FlowOwnershipError, Plan
from antrea.ovs.openflow.flow import FlowKey, Proto
from antrea.testbed.openflow import RecordingTransport


def f(port: int, action: Action | None = None, cookie: int = 0) -> Flow:
    return Flow(
        90, 200, Match(proto=Proto.IP, regs=(RegMatch(1, port),)), (action or Drop(),), cookie
    )


async def test_sync_sends_only_deltas() -> None:
    t = RecordingTransport()
    c = FlowClient(t)
    await c.sync({"a": [f(1), f(2)], "b": [f(3)]})
    assert len(t.bundles) == 1 and len(t.flows) == 3
    plan = await c.sync({"a": [f(2, Normal()), f(4)]})
    assert (
        [x.key for x in plan.add],
        [x.key for x in plan.modify],
        [x.key for x in plan.delete],
    ) == ([f(4).key], [f(2).key], [f(1).key])
    assert len(t.flows) == 3
    plan = await c.sync({"a": [f(2, Normal()), f(4)]})
    assert len(plan) == 0 and len(t.bundles) == 2  # nothing to do: no bundle


async def test_cookie_change_readds() -> None:
    t = RecordingTransport()
    c = FlowClient(t)
    await c.sync({"a": [f(1, cookie=1)]})
    plan = await c.sync({"a": [f(1, cookie=2)]})
    assert len(plan.add) == 1 and t.flows[f(1).key].cookie == 2


async def test_key_conflict_between_owners_is_an_error() -> None:
    c = FlowClient(RecordingTransport())
    await c.sync({"a": [f(1)]})
    with pytest.raises(FlowOwnershipError):
        await c.sync({"b": [f(1)]})
    # handing a flow over in one sync is allowed
    await c.sync({"a": None, "b": [f(1)]})
    assert c.owners() == ["b"]


async def test_rejected_bundle_leaves_cache_unchanged() -> None:
    t = RecordingTransport()
    c = FlowClient(t)
    await c.sync({"a": [f(1)]})
    t.reject = 1
    with pytest.raises(BundleRejected):
        await c.sync({"a": [f(2)]})
    assert [x.key for x in c.flows_of("a")] == [f(1).key]


async def test_writer_coalesces_and_blames_the_bad_owner() -> None:
    t = RecordingTransport()
    w = CoalescingWriter(FlowClient(t))
    await asyncio.gather(*(w.submit(i, [f(i)]) for i in range(10)))
    assert len(t.bundles) <= 2 and len(t.flows) == 10

    class Picky(RecordingTransport):
        async def bundle(self, *, add=(), modify=(), delete=(), **groups):
            if any(isinstance(a, GotoTable) for fl in add for a in fl.actions):
                raise BundleRejected(["fake"], 1, "bad goto")
            await super().bundle(add=add, modify=modify, delete=delete, **groups)

    p = Picky()
    w = CoalescingWriter(FlowClient(p))
    results = await asyncio.gather(
        w.submit("ok1", [f(1)]),
        w.submit("bad", [f(2, GotoTable(0))]),
        w.submit("ok2", [f(3)]),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], BundleRejected)
    assert len(p.flows) == 2


async def test_writer_hands_a_transport_failure_to_every_submitter_of_the_bundle() -> None:
    """A broken connection is nobody's fault: no split, every waiter gets the error (and
    nobody waits forever), and the next submission gets a fresh bundle."""
    from antrea.ovs.errors import OvsError

    class Down(RecordingTransport):
        down = True

        async def bundle(self, *, add=(), modify=(), delete=(), **groups):
            await asyncio.sleep(0)
            if self.down:
                raise OvsError("connection refused")
            await super().bundle(add=add, modify=modify, delete=delete, **groups)

    t = Down()
    w = CoalescingWriter(FlowClient(t))
    results = await asyncio.wait_for(
        asyncio.gather(*(w.submit(i, [f(i)]) for i in range(4)), return_exceptions=True), 5
    )
    assert all(isinstance(r, OvsError) for r in results)
    t.down = False
    await asyncio.wait_for(w.submit(9, [f(9)]), 5)
    assert len(t.flows) == 1


# -- property: the plan equals a naive diff (new owners take a fast path; both must agree) --
Op = tuple[FlowKey, int, tuple[Action, ...]]


def _reference_plan(
    installed: dict[Hashable, dict[FlowKey, Flow]], desired: dict[Hashable, list[Flow] | None]
) -> tuple[set[Op], set[Op], set[Op]] | None:
    """(added, modified, deleted) flows as (key, cookie, actions); None = ownership error."""
    claimed: dict[FlowKey, Hashable] = {}
    holder = {k: o for o, flows in installed.items() for k in flows}
    add, modify, delete = set(), set(), set()
    news: dict[Hashable, dict[FlowKey, Flow]] = {}
    for owner, flows in desired.items():
        new = {fl.key: fl for fl in flows or ()}
        news[owner] = new
        for k, fl in new.items():
            if claimed.setdefault(k, owner) != owner:
                return None
            h = holder.get(k)
            if h is not None and h != owner and h not in desired:
                return None
            prev = installed.get(owner, {}).get(k)
            if prev is None or prev.cookie != fl.cookie:
                add.add((k, fl.cookie, fl.actions))
            elif prev.actions != fl.actions:
                modify.add((k, fl.cookie, fl.actions))
    for owner, new in news.items():
        for k, fl in installed.get(owner, {}).items():
            if k not in new and k not in claimed:
                delete.add((k, fl.cookie, fl.actions))
    return add, modify, delete


_flow = st.builds(
    lambda port, table, action, cookie: Flow(
        table, 200, Match(proto=Proto.IP, regs=(RegMatch(1, port),)), (action,), cookie
    ),
    st.integers(1, 4),
    st.sampled_from([90, 100]),
    st.sampled_from([Drop(), Normal(), GotoTable(105)]),
    st.integers(0, 1),
)
_desired = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]),
    st.one_of(st.none(), st.lists(_flow, max_size=4)),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_desired, min_size=1, max_size=5))
def test_plan_matches_a_naive_diff(steps: list[dict[Hashable, list[Flow] | None]]) -> None:
    c = FlowClient(RecordingTransport())
    installed: dict[Hashable, dict[FlowKey, Flow]] = {}
    for desired in steps:
        want = _reference_plan(installed, desired)
        try:
            plan = c.plan(desired)
        except FlowOwnershipError:
            assert want is None
            continue
        assert want is not None
        got = tuple(
            {(x.key, x.cookie, x.actions) for x in xs}
            for xs in (plan.add, plan.modify, plan.delete)
        )
        assert got == want
        assert len(plan.add) == len(want[0]) and len(plan.delete) == len(want[2])
        c._commit(plan)
        for owner, flows in desired.items():
            new = {fl.key: fl for fl in flows or ()}
            if new:
                installed[owner] = new
            else:
                installed.pop(owner, None)
        assert {o: {fl.key: fl for fl in c.flows_of(o)} for o in c.owners()} == installed


class _EachClient(FlowClient):
    """The flow-by-flow planner only (no bulk path for new owners): the reference."""

    def plan(self, desired: Mapping[Hashable, Iterable[Flow] | None]) -> Plan:
        return self._plan_each(desired)


def _ops(flows: list[Flow]) -> Counter[Op]:
    return Counter((x.key, x.cookie, x.actions) for x in flows)


@settings(max_examples=300, deadline=None)
@given(st.lists(_desired, min_size=1, max_size=6))
def test_bulk_path_equals_the_flow_by_flow_path(
    steps: list[dict[Hashable, list[Flow] | None]],
) -> None:
    """The bulk path of new owners sends the same bundles and ends in the same installed
    state (owners, their flows, who holds each key) as planning every flow on its own; both
    refuse the same conflicts."""
    fast_t, each_t = RecordingTransport(), RecordingTransport()
    fast, each = FlowClient(fast_t), _EachClient(each_t)
    for desired in steps:
        outcomes: list[Plan | None] = []
        # the bulk path gets one-shot iterators (read once, also when it falls back)
        streamed = {o: None if fl is None else iter(fl) for o, fl in desired.items()}
        for client, wanted in ((fast, streamed), (each, desired)):
            try:
                outcomes.append(asyncio.run(client.sync(wanted)))
            except FlowOwnershipError:
                outcomes.append(None)
        got, want = outcomes
        assert (got is None) == (want is None)
        if got is None or want is None:
            continue
        for mine, ref in ((got.add, want.add), (got.modify, want.modify)):
            assert _ops(mine) == _ops(ref)
        assert _ops(got.delete) == _ops(want.delete)
        assert set(fast.owners()) == set(each.owners())
        for owner in each.owners():
            assert fast.flows_of(owner) == each.flows_of(owner)
        assert fast._key_owner == each._key_owner
        assert fast_t.flows == each_t.flows


async def test_flows_given_as_iterators_survive_the_flow_by_flow_fallback() -> None:
    """A hand-over sends the plan to the flow-by-flow path after the bulk path has read the
    owners' flows: flows given as one-shot iterators are not lost on the way."""
    t = RecordingTransport()
    c = FlowClient(t)
    await c.sync({"a": iter([f(1), f(2)]), "b": iter([f(3)])})
    plan = await c.sync({"a": iter([f(2, Normal())]), "c": iter([f(1), f(4)])})
    assert {x.key for x in plan.add} == {f(1).key, f(4).key} and len(plan.add) == 2
    assert [x.key for x in plan.modify] == [f(2).key]
    assert plan.delete == []
    assert {o: [x.key for x in c.flows_of(o)] for o in c.owners()} == {
        "a": [f(2).key],
        "b": [f(3).key],
        "c": [f(1).key, f(4).key],
    }
    assert set(t.flows) == {f(k).key for k in (1, 2, 3, 4)}
