"""FlowClient.stage: new owners' flows streamed into the next sync's bundle change nothing but
when the switch gets them (same switch state, same owner index, same errors as without)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antrea.ovs.errors import BundleRejected
from antrea.ovs.openflow import Drop, Flow, Match, Normal, Output, RegMatch
from antrea.ovs.openflow.bundle import BufferedStream, OfctlBundleTransport, open_stream
from antrea.ovs.openflow.client import FlowClient, FlowOwnershipError
from antrea.ovs.openflow.flow import Proto
from antrea.testbed.openflow import RecordingTransport, StreamingRecorder

ACTIONS = (Drop(), Normal(), Output(3))


def f(port: int, action: int = 0, cookie: int = 0) -> Flow:
    return Flow(
        90, 200, Match(proto=Proto.IP, regs=(RegMatch(1, port),)), (ACTIONS[action],), cookie
    )


async def test_staged_flows_go_in_the_sync_bundle_and_nothing_before() -> None:
    t = StreamingRecorder()
    c = FlowClient(t)
    await c.sync({"old": [f(1)]})
    await c.stage({"a": [f(2), f(3)], "old": [f(9)], "b": None})  # "old" has flows: not staged
    await c.stage({"c": [f(4)]})
    assert t.streamed == [[f(2), f(3)], [f(4)]]
    assert set(t.flows) == {f(1).key} and c.flows_of("a") == [] and len(c) == 1
    plan = await c.sync({"a": [f(2), f(3)], "c": [f(4)], "old": [f(1, 1)], "d": [f(5)]})
    assert t.commits == 1 and t.bundles[-1] == ([f(2), f(3), f(4), f(5)], [f(1, 1)], [])
    assert len(plan.add) == 4  # the plan is the same as without staging
    assert c.flows_of("a") == [f(2), f(3)] and len(c) == 5
    assert t.flows == {x.key: x for x in (f(1, 1), f(2), f(3), f(4), f(5))}


async def test_a_staged_owner_changed_since_discards_the_stream() -> None:
    t = StreamingRecorder()
    c = FlowClient(t)
    await c.stage({"a": [f(2)], "b": [f(3)]})
    await c.sync({"a": [f(2, 1)], "b": [f(3)]})  # "a" changed: its staged add is not wanted
    assert t.discards == 1 and t.commits == 0
    assert t.flows == {f(2).key: f(2, 1), f(3).key: f(3)}
    await c.stage({"x": [f(7)]})
    await c.sync({"y": [f(8)]})  # "x" is not in the sync at all: not its stream
    assert t.discards == 1 and f(7).key not in t.flows and c.owners() == ["a", "b", "y"]
    await c.sync({"x": None, "y": [f(8)]})  # "x" is, and no longer wants its flows
    assert t.discards == 2 and f(7).key not in t.flows and c.owners() == ["a", "b", "y"]
    await c.stage({"z": [f(6)]})
    await c.discard_staged()
    assert t.discards == 3 and c._stream is None


async def test_a_refused_streamed_bundle_leaves_nothing_and_the_index_unchanged() -> None:
    t = StreamingRecorder(refuse=lambda x: x.cookie == 9)
    c = FlowClient(t)
    await c.sync({"old": [f(1)]})
    await c.stage({"a": [f(2), f(3, cookie=9)]})
    with pytest.raises(BundleRejected):
        await c.sync({"a": [f(2), f(3, cookie=9)], "old": None})
    assert t.flows == {f(1).key: f(1)} and c.owners() == ["old"] and len(c) == 1
    await c.sync({"a": [f(2)], "old": None})  # the next sync is a plain one
    assert t.flows == {f(2).key: f(2)} and t.commits == 0


async def test_a_sync_of_other_owners_leaves_the_stream_open() -> None:
    t = StreamingRecorder()
    c = FlowClient(t)
    await c.stage({"a": [f(2)]})
    await c.sync({"pod": [f(1)]})  # e.g. a CNI ADD while a policy batch is planned
    assert t.commits == 0 and t.discards == 0 and set(t.flows) == {f(1).key}
    await c.stage({"b": [f(3)]})
    await c.sync({"a": [f(2)], "b": [f(3)], "c": [f(4)]})
    assert t.commits == 1 and t.bundles[-1][0] == [f(2), f(3), f(4)]
    assert c.owners() == ["pod", "a", "b", "c"] and len(t.flows) == 4


async def test_ownership_conflicts_still_raise_and_discard() -> None:
    t = StreamingRecorder()
    c = FlowClient(t)
    await c.sync({"old": [f(1)]})
    await c.stage({"a": [f(1)]})  # held by "old": left to the sync
    await c.stage({"b": [f(2)], "c": [f(2)]})  # one key twice: left to the sync
    assert t.streamed == []
    await c.stage({"d": [f(4)]})
    with pytest.raises(FlowOwnershipError):
        await c.sync({"d": [f(4)], "e": [f(4)]})
    assert t.discards == 1 and set(t.flows) == {f(1).key} and c.owners() == ["old"]


async def test_the_rest_of_a_staged_sync_is_checked_against_the_staged_keys() -> None:
    """A staged sync plans only the owners not staged; a key of the rest (new or re-planned
    owner) or an installed one among the staged keys is still a conflict or a hand-over,
    exactly as without staging."""
    t = StreamingRecorder()
    c = FlowClient(t)
    await c.stage({"a": [f(2)]})
    with pytest.raises(FlowOwnershipError):  # a new owner of the rest wants a staged key
        await c.sync({"a": [f(2)], "n": [f(2, 1)]})
    assert t.discards == 1 and t.flows == {} and c.owners() == []

    await c.sync({"r": [f(1)]})
    await c.stage({"a": [f(2)]})
    with pytest.raises(FlowOwnershipError):  # a re-planned owner wants a staged key
        await c.sync({"a": [f(2)], "r": [f(1), f(2)]})
    assert t.discards == 2 and set(t.flows) == {f(1).key} and c.owners() == ["r"]

    await c.stage({"b": [f(3)]})
    await c.sync({"s": [f(4)]})  # another sync meanwhile: the stream stays open
    await c.sync({"r": [f(5)]})  # "r" moves to another key
    await c.stage({"h": [f(7)]})
    plan = await c.sync({"b": [f(3)], "h": [f(7)], "r": [f(1, 2)], "s": None})
    assert t.commits == 1 and t.bundles[-1] == ([f(3), f(7), f(1, 2)], [], [f(5), f(4)])
    assert len(plan.add) == 3 and len(plan.delete) == 2
    assert c.owners() == ["r", "b", "h"] and len(c) == 3
    assert t.flows == {x.key: x for x in (f(1, 2), f(3), f(7))}


async def test_owners_refused_by_a_stage_are_not_taken_for_staged() -> None:
    """A stage whose keys overlap those staged before stages none of its owners (nor their
    keys): the sync sends their flows."""
    t = StreamingRecorder()
    c = FlowClient(t)
    await c.stage({"a": [f(2)]})
    await c.stage({"b": [f(2, 1), f(3)]})  # f(2)'s key is staged for "a": "b" left to the sync
    assert t.streamed == [[f(2)]]
    await c.sync({"a": [f(2)], "b": [f(3)]})
    assert t.commits == 1 and t.flows == {f(2).key: f(2), f(3).key: f(3)}
    assert c.owners() == ["a", "b"]


async def test_a_staged_key_installed_meanwhile_goes_the_usual_way() -> None:
    t = StreamingRecorder()
    c = FlowClient(t)
    await c.stage({"a": [f(2)]})
    await c.sync({"pod": [f(2, 1)]})  # another owner's sync installs the staged key
    with pytest.raises(FlowOwnershipError):
        await c.sync({"a": [f(2)]})
    assert t.discards == 1 and t.flows == {f(2).key: f(2, 1)} and c.owners() == ["pod"]
    await c.stage({"b": [f(3)]})
    await c.sync({"pod": [f(3, 1)]})  # a hand-over: "pod" gives f(2) up, takes f(3)
    await c.sync({"b": [f(3)], "pod": None})  # ... and leaves: "b" takes f(3)
    assert t.flows == {f(3).key: f(3)} and c.owners() == ["b"]


async def test_transports_without_streams_buffer() -> None:
    t = RecordingTransport()
    stream = open_stream(t)
    assert isinstance(stream, BufferedStream)
    await stream.add([f(1)])
    assert t.flows == {}
    await stream.commit(add=[f(2)])
    assert len(t.bundles) == 1 and set(t.flows) == {f(1).key, f(2).key}
    assert isinstance(open_stream(OfctlBundleTransport("unix:/nonexistent")), BufferedStream)
    c = FlowClient(t)
    await c.stage({"a": [f(3)]})
    await c.sync({"a": [f(3)]})
    assert len(t.bundles) == 2 and t.flows[f(3).key] == f(3)


_FLOWS = st.lists(st.builds(f, st.integers(0, 7), st.integers(0, 2), st.integers(0, 1)), max_size=4)
_OWNERS = st.sampled_from("abcdef")
_ROUND = st.tuples(
    st.dictionaries(_OWNERS, st.none() | _FLOWS, max_size=6),  # desired
    st.lists(st.sets(_OWNERS), max_size=3),  # owners staged, call by call
    st.dictionaries(_OWNERS, st.none() | _FLOWS, max_size=2),  # changed after staging
    st.booleans(),  # the switch refuses the bundle
    st.dictionaries(st.sampled_from("xyz"), st.none() | _FLOWS, max_size=2),  # a sync between
)


@given(st.lists(_ROUND, min_size=1, max_size=5))
@settings(max_examples=300, deadline=None)
def test_staging_changes_nothing_but_when_flows_are_sent(
    rounds: list[
        tuple[
            dict[str, list[Flow] | None],
            list[set[str]],
            dict[str, object],
            bool,
            dict[str, list[Flow] | None],
        ]
    ],
) -> None:
    """Random rounds of staging and syncing (owners re-planned, taken over, conflicting,
    changed after staging, refused by the switch): the streaming client ends every round with
    the plain client's switch, owner index and errors."""

    async def run() -> None:
        plain_t, stream_t = RecordingTransport(), StreamingRecorder()
        plain, streaming = FlowClient(plain_t), FlowClient(stream_t)
        for desired, staged, changed, refuse, between in rounds:
            for i, owners in enumerate(staged):
                await streaming.stage({o: desired[o] for o in owners if o in desired})
                if i == 0 and between:  # other owners synced while the batch is staged
                    outcomes = []
                    for c in (plain, streaming):
                        try:
                            await c.sync(between)  # type: ignore[arg-type]
                            outcomes.append("ok")
                        except FlowOwnershipError:
                            outcomes.append("conflict")
                    assert outcomes[0] == outcomes[1]
                    assert stream_t.flows == plain_t.flows
            final = {**desired, **changed}
            outcomes = []
            for t, c in ((plain_t, plain), (stream_t, streaming)):
                t.reject = int(refuse)
                try:
                    await c.sync(final)  # type: ignore[arg-type]
                    outcomes.append("ok")
                except (FlowOwnershipError, BundleRejected) as exc:
                    outcomes.append(type(exc).__name__)
                t.reject = 0
            assert outcomes[0] == outcomes[1]
            assert stream_t.flows == plain_t.flows
            assert sorted(map(str, streaming.installed())) == sorted(map(str, plain.installed()))
            assert {o: streaming.flows_of(o) for o in streaming.owners()} == {
                o: plain.flows_of(o) for o in plain.owners()
            }
            assert streaming._stream is None and not streaming._staged

    asyncio.run(run())
