"""Per-node translation of compiler changes into watch frames (antrea.controller.distribution)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from antrea.apis.controlplane.codec import EventType, FrameDecoder, WatchEvent
from antrea.apis.controlplane.names import STREAM_CONTENT_TYPE, STREAM_CONTENT_TYPE_V2
from antrea.apis.controlplane.types import (
    AddressGroup,
    AddressGroupPatch,
    AppliedToGroup,
    Direction,
    GroupMember,
    Kind,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyReference,
    NetworkPolicyRule,
    PodReference,
)
from antrea.controller.distribution import Dispatcher
from antrea.controller.server import stream_version


@dataclass(frozen=True)
class Change:
    kind: Kind
    name: str
    old: Any
    new: Any
    old_span: frozenset[str]
    new_span: frozenset[str]
    patch: AddressGroupPatch | None = None


class FakeStore:
    """A stand-in for the compiler's ComputedStore that also emits changes."""

    def __init__(self) -> None:
        self.objs: dict[tuple[Kind, str], tuple[Any, frozenset[str]]] = {}
        self.listeners: list[Any] = []

    def get(self, kind: Kind, name: str) -> tuple[Any, frozenset[str]] | None:
        return self.objs.get((kind, name))

    def list(self, kind: Kind) -> list[tuple[Any, frozenset[str]]]:
        return [v for (k, _), v in self.objs.items() if k is kind]

    def put(
        self, kind: Kind, obj: Any, span: set[str], patch: AddressGroupPatch | None = None
    ) -> None:
        old = self.objs.get((kind, obj.name))
        self.objs[(kind, obj.name)] = (obj, frozenset(span))
        ch = Change(
            kind,
            obj.name,
            old[0] if old else None,
            obj,
            old[1] if old else frozenset(),
            frozenset(span),
            patch,
        )
        for cb in self.listeners:
            cb(ch)

    def delete(self, kind: Kind, name: str) -> None:
        old = self.objs.pop((kind, name))
        ch = Change(kind, name, old[0], None, old[1], frozenset())
        for cb in self.listeners:
            cb(ch)


def member(name: str, node: str, ip: str) -> GroupMember:
    return GroupMember(PodReference("ns", name), (ip,), node)


def policy(name: str, gen: int = 1, atg: str = "atg1") -> NetworkPolicy:
    return NetworkPolicy(
        name=name,
        source_ref=NetworkPolicyReference("K8sNetworkPolicy", "ns", name, name),
        rules=(NetworkPolicyRule(Direction.IN, from_=NetworkPolicyPeer(address_groups=("ag1",))),),
        applied_to_groups=(atg,),
        generation=gen,
    )


def decode(frames: list[bytes]) -> list[WatchEvent]:
    dec = FrameDecoder()
    return [ev for f in frames for ev in dec.feed(f)]


def setup() -> tuple[FakeStore, Dispatcher]:
    store = FakeStore()
    disp = Dispatcher(store, max_queue=50)
    store.listeners.append(disp.on_change)
    return store, disp


def drain(w: Any) -> list[WatchEvent]:
    frames = list(w.queue)
    w.queue.clear()
    return decode(frames)


def test_snapshot_has_only_spanned_objects_and_own_members_then_bookmark() -> None:
    store, disp = setup()
    a, b = member("a", "n1", "10.0.1.2"), member("b", "n2", "10.0.2.2")
    store.put(Kind.APPLIED_TO_GROUP, AppliedToGroup("atg1", frozenset({a, b})), {"n1", "n2"})
    store.put(Kind.ADDRESS_GROUP, AddressGroup("ag1", frozenset({a, b})), {"n1", "n2"})
    store.put(Kind.NETWORK_POLICY, policy("np1"), {"n1", "n2"})
    store.put(Kind.NETWORK_POLICY, policy("np2", atg="atg2"), {"n2"})
    _, initial = disp.register("n1")
    evs = decode(initial)
    assert [e.type for e in evs] == [EventType.ADDED] * 3 + [EventType.BOOKMARK]
    assert [e.kind for e in evs[:3]] == [
        Kind.ADDRESS_GROUP,
        Kind.APPLIED_TO_GROUP,
        Kind.NETWORK_POLICY,
    ]
    atg = evs[1].object
    assert isinstance(atg, AppliedToGroup) and atg.members == frozenset({a})
    ag = evs[0].object
    assert isinstance(ag, AddressGroup) and ag.members == frozenset({a, b})
    assert evs[2].object is not None and evs[2].object.name == "np1"


def test_span_enter_stay_leave_is_added_modified_deleted() -> None:
    store, disp = setup()
    w1, _ = disp.register("n1")
    w2, _ = disp.register("n2")
    store.put(Kind.NETWORK_POLICY, policy("np1"), {"n1"})
    assert [e.type for e in drain(w1)] == [EventType.ADDED]
    assert drain(w2) == []
    store.put(Kind.NETWORK_POLICY, policy("np1", gen=2), {"n1", "n2"})
    e1, e2 = drain(w1), drain(w2)
    assert [e.type for e in e1] == [EventType.MODIFIED]
    assert [e.type for e in e2] == [EventType.ADDED]
    assert isinstance(e2[0].object, NetworkPolicy) and e2[0].object.generation == 2
    # span-only change: nothing for the node that stays, DELETED for the one that leaves
    store.put(Kind.NETWORK_POLICY, policy("np1", gen=2), {"n2"})
    assert [(e.type, e.object.name if e.object else None) for e in drain(w1)] == [
        (EventType.DELETED, "np1")
    ]
    assert drain(w2) == []
    store.delete(Kind.NETWORK_POLICY, "np1")
    assert [e.type for e in drain(w2)] == [EventType.DELETED]
    assert drain(w1) == []


def test_applied_to_group_carries_only_the_nodes_members() -> None:
    store, disp = setup()
    w1, _ = disp.register("n1")
    w2, _ = disp.register("n2")
    a, b, c = (
        member("a", "n1", "10.0.1.2"),
        member("b", "n2", "10.0.2.2"),
        member("c", "n2", "10.0.2.3"),
    )
    store.put(Kind.APPLIED_TO_GROUP, AppliedToGroup("atg1", frozenset({a, b})), {"n1", "n2"})
    (ev1,), (ev2,) = drain(w1), drain(w2)
    assert ev1.object == AppliedToGroup("atg1", frozenset({a}))
    assert ev2.object == AppliedToGroup("atg1", frozenset({b}))
    # a member appears on n2 only: n1 hears nothing
    store.put(Kind.APPLIED_TO_GROUP, AppliedToGroup("atg1", frozenset({a, b, c})), {"n1", "n2"})
    assert drain(w1) == []
    (ev2,) = drain(w2)
    assert ev2.type is EventType.MODIFIED
    assert ev2.object == AppliedToGroup("atg1", frozenset({b, c}))
    # the n1 member moves away: n1 gets DELETED
    store.put(Kind.APPLIED_TO_GROUP, AppliedToGroup("atg1", frozenset({b, c})), {"n2"})
    (ev1,) = drain(w1)
    assert (ev1.type, ev1.kind) == (EventType.DELETED, Kind.APPLIED_TO_GROUP)


def test_address_group_changes_are_shared_patches() -> None:
    store, disp = setup()
    w1, _ = disp.register("n1")
    w2, _ = disp.register("n2")
    a, b = member("a", "n1", "10.0.1.2"), member("b", "n2", "10.0.2.2")
    store.put(Kind.ADDRESS_GROUP, AddressGroup("ag1", frozenset({a})), {"n1", "n2"})
    drain(w1), drain(w2)
    patch = AddressGroupPatch("ag1", frozenset({b}), frozenset({a}))
    store.put(Kind.ADDRESS_GROUP, AddressGroup("ag1", frozenset({b})), {"n1", "n2"}, patch)
    f1, f2 = list(w1.queue), list(w2.queue)
    assert f1 == f2 and f1[0] is f2[0]  # encoded once, shared
    (ev,) = drain(w1)
    assert ev.type is EventType.MODIFIED and ev.object is None and ev.patch == patch
    drain(w2)
    # an empty patch (span-only change) sends nothing
    store.put(
        Kind.ADDRESS_GROUP,
        AddressGroup("ag1", frozenset({b})),
        {"n1", "n2"},
        AddressGroupPatch("ag1", frozenset(), frozenset()),
    )
    assert drain(w1) == [] and drain(w2) == []
    # entering the span is a full ADDED even when the compiler supplied a patch
    w3, _ = disp.register("n3")
    store.put(
        Kind.ADDRESS_GROUP,
        AddressGroup("ag1", frozenset({a, b})),
        {"n1", "n2", "n3"},
        AddressGroupPatch("ag1", frozenset({a}), frozenset()),
    )
    (ev3,) = drain(w3)
    assert ev3.type is EventType.ADDED and ev3.object == AddressGroup("ag1", frozenset({a, b}))


def test_slow_watcher_is_dropped_without_affecting_others() -> None:
    store, disp = setup()
    dropped: list[Any] = []
    disp.on_drop = dropped.append
    slow, _ = disp.register("n1")
    fast, _ = disp.register("n1")
    for i in range(200):
        store.put(Kind.NETWORK_POLICY, policy(f"np{i}"), {"n1"})
        fast.queue.clear()  # the fast one keeps up
    assert slow.closed and slow.close_reason == "slow"
    assert dropped == [slow]
    assert not fast.closed
    assert disp.watchers == [fast]
    store.put(Kind.NETWORK_POLICY, policy("last"), {"n1"})
    assert len(fast.queue) == 1


def test_reconnect_gets_consistent_full_state() -> None:
    store, disp = setup()
    w, _ = disp.register("n1")
    store.put(Kind.NETWORK_POLICY, policy("np1"), {"n1"})
    store.put(Kind.NETWORK_POLICY, policy("np2"), {"n1"})
    store.delete(Kind.NETWORK_POLICY, "np1")
    disp.unregister(w)
    _, initial = disp.register("n1")
    evs = decode(initial)
    assert [(e.type, e.object.name if e.object else "") for e in evs] == [
        (EventType.ADDED, "np2"),
        (EventType.BOOKMARK, ""),
    ]


async def test_next_frames_waits_and_heartbeat_times_out() -> None:
    store, disp = setup()
    w, _ = disp.register("n1")
    assert await w.next_frames(0.01) == []
    store.put(Kind.NETWORK_POLICY, policy("np1"), {"n1"})
    frames = await w.next_frames(1.0)
    assert [e.type for e in decode(frames)] == [EventType.ADDED]
    hb = decode([disp.heartbeat_frame()])[0]
    assert hb.type is EventType.BOOKMARK and hb.message == "heartbeat"


def test_applied_to_group_patch_limits_fanout_to_touched_nodes() -> None:
    store, disp = setup()
    w1, _ = disp.register("n1")
    w2, _ = disp.register("n2")
    a, b, c = (
        member("a", "n1", "10.0.1.2"),
        member("b", "n2", "10.0.2.2"),
        member("c", "n2", "10.0.2.3"),
    )
    store.put(Kind.APPLIED_TO_GROUP, AppliedToGroup("atg1", frozenset({a, b})), {"n1", "n2"})
    drain(w1), drain(w2)
    store.put(
        Kind.APPLIED_TO_GROUP,
        AppliedToGroup("atg1", frozenset({a, b, c})),
        {"n1", "n2"},
        AddressGroupPatch("atg1", frozenset({c}), frozenset()),
    )
    assert drain(w1) == []
    (ev,) = drain(w2)
    assert ev.type is EventType.MODIFIED and ev.object == AppliedToGroup("atg1", frozenset({b, c}))
    # a node entering the span gets ADDED even though the patch names only its member
    d = member("d", "n3", "10.0.3.2")
    w3, _ = disp.register("n3")
    store.put(
        Kind.APPLIED_TO_GROUP,
        AppliedToGroup("atg1", frozenset({a, b, c, d})),
        {"n1", "n2", "n3"},
        AddressGroupPatch("atg1", frozenset({d}), frozenset()),
    )
    assert [e.type for e in drain(w3)] == [EventType.ADDED]
    assert drain(w1) == [] and drain(w2) == []


def burst_setup(grace: float) -> tuple[FakeStore, Dispatcher]:
    store = FakeStore()
    disp = Dispatcher(store, max_queue=10, burst_grace=grace)
    store.listeners.append(disp.on_change)
    return store, disp


class FakeClock:
    """The dispatcher's clock, moved by hand: the grace period is judged on it, not on how
    long 300 puts take on a loaded machine."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_burst_is_tolerated_when_the_writer_catches_up() -> None:
    store, disp = burst_setup(grace=0.2)
    disp.clock = clock = FakeClock()
    w, _ = disp.register("n1")
    for i in range(300):  # one compiler batch: 30x the bound before any writer runs
        store.put(Kind.NETWORK_POLICY, policy(f"np{i}"), {"n1"})
    assert not w.closed and len(w.queue) == 300
    assert len(await w.next_frames(0)) == 300  # the writer drains it
    clock.now += 0.3  # past the grace period, but the queue is back under the bound
    store.put(Kind.NETWORK_POLICY, policy("after"), {"n1"})
    assert not w.closed and disp.stats.watchers_dropped == 0


async def test_a_watcher_still_behind_after_the_grace_period_is_dropped() -> None:
    store, disp = burst_setup(grace=0.05)
    disp.clock = clock = FakeClock()
    w, _ = disp.register("n1")
    for i in range(20):
        store.put(Kind.NETWORK_POLICY, policy(f"np{i}"), {"n1"})
    assert not w.closed
    clock.now += 0.1
    store.put(Kind.NETWORK_POLICY, policy("late"), {"n1"})
    assert w.closed and w.close_reason == "slow" and disp.watchers == []


def test_the_burst_allowance_has_a_hard_cap() -> None:
    store, disp = burst_setup(grace=60)
    w, _ = disp.register("n1")
    for i in range(10 * 50 + 1):
        store.put(Kind.NETWORK_POLICY, policy(f"np{i}"), {"n1"})
    assert w.closed and disp.stats.watchers_dropped == 1


def _versions(frames: list[bytes]) -> list[int]:
    return [msgpack.unpackb(f)["v"] for f in frames]


def test_watchers_of_one_node_get_frames_in_their_own_wire_version() -> None:
    """A version-1 and a version-2 watcher of the same node (an old and a new agent, e.g. during
    a rolling upgrade): each gets every frame, snapshot included, in its own version, and both
    decode to the same events."""
    store, disp = setup()
    a = member("a", "n1", "10.0.1.2")
    store.put(Kind.APPLIED_TO_GROUP, AppliedToGroup("atg1", frozenset({a})), {"n1"})
    store.put(Kind.NETWORK_POLICY, policy("np1"), {"n1"})
    w1, init1 = disp.register("n1")
    w2, init2 = disp.register("n1", wire=2)
    assert (w1.wire, w2.wire) == (1, 2)
    assert set(_versions(init1)) == {1} and set(_versions(init2)) == {2}
    assert decode(init1) == decode(init2)
    b = member("b", "n1", "10.0.1.3")
    store.put(Kind.APPLIED_TO_GROUP, AppliedToGroup("atg1", frozenset({a, b})), {"n1"})
    store.put(Kind.NETWORK_POLICY, policy("np1", gen=2), {"n1"})
    store.put(Kind.NETWORK_POLICY, policy("np2"), {"n1"})
    store.delete(Kind.NETWORK_POLICY, "np1")
    f1, f2 = list(w1.queue), list(w2.queue)
    assert set(_versions(f1)) == {1} and set(_versions(f2)) == {2}
    e1, e2 = drain(w1), drain(w2)
    assert e1 == e2 and len(e1) == 4
    assert [e.type for e in e1] == [
        EventType.MODIFIED,
        EventType.MODIFIED,
        EventType.ADDED,
        EventType.DELETED,
    ]
    assert _versions([disp.heartbeat_frame(), disp.heartbeat_frame(2)]) == [1, 2]


def test_stream_version_follows_accept() -> None:
    v1, v2 = STREAM_CONTENT_TYPE, STREAM_CONTENT_TYPE_V2
    assert stream_version("") == 1
    assert stream_version("*/*") == 1
    assert stream_version(v1) == 1
    assert stream_version(v2) == 2
    assert stream_version(f"{v2}, {v1};q=0.5") == 2
    assert stream_version(f"{v1}, {v2.upper()} ; q=0.9") == 2
    assert stream_version(f"{v2};q=0") == 1
    assert stream_version(f"{v2};q=zero") == 1
