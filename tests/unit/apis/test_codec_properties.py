"""The stream decoder's fast path returns exactly the objects that were encoded.

`FrameDecoder` decodes msgpack arrays as tuples and builds rules with table lookups and a
shared empty peer; `object_from_map` is also fed list-form maps (antctl, the controller's
tests). For random objects of every kind and field, in any chunking, both give back values
equal to the encoded ones *and of the same types* (a plain ``"In"`` equals ``Direction.IN``
and a list does not equal a tuple only by accident of the comparison: `same` checks types).
Garbage never escapes as anything but a `DecodeError`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from antrea.apis.controlplane.codec import (
    WIRE_VERSIONS,
    DecodeError,
    EventType,
    FrameDecoder,
    WatchEvent,
    decode_event,
    encode_event,
    event_to_map,
    object_from_map,
    object_to_map,
    rule_array,
)
from antrea.apis.controlplane.types import (
    AddressGroup,
    AddressGroupPatch,
    AppliedToGroup,
    Direction,
    GroupMember,
    IPBlock,
    Kind,
    NamedPort,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyReference,
    NetworkPolicyRule,
    PodReference,
    Protocol,
    RuleAction,
    Service,
)

names = st.text("abz-0", min_size=0, max_size=4)
cidrs = st.sampled_from(["0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "192.168.1.7/32"])
ips = st.sampled_from(["10.244.1.10", "10.244.2.20", "fd00::1"])
ports = st.one_of(st.none(), st.integers(0, 65535), names)
small = st.one_of(st.none(), st.integers(0, 255))

named_ports = st.builds(NamedPort, names, st.sampled_from(Protocol), st.integers(1, 65535))
members = st.builds(
    GroupMember,
    st.builds(PodReference, names, names),
    st.lists(ips, max_size=2).map(tuple),
    names,
    st.lists(named_ports, max_size=2).map(tuple),
)
member_sets = st.frozensets(members, max_size=3)
blocks = st.builds(IPBlock, cidrs, st.lists(cidrs, max_size=2).map(tuple))
peers = st.builds(
    NetworkPolicyPeer,
    st.lists(names, max_size=2).map(tuple),
    st.lists(blocks, max_size=2).map(tuple),
)
services = st.builds(Service, st.sampled_from(Protocol), ports, small, small, small)
rules = st.builds(
    NetworkPolicyRule,
    direction=st.sampled_from(Direction),
    from_=peers,
    to=peers,
    services=st.one_of(st.none(), st.lists(services, max_size=3).map(tuple)),
    name=names,
    priority=st.integers(-1, 100),
    action=st.one_of(st.none(), st.sampled_from(RuleAction)),
    applied_to_groups=st.lists(names, max_size=2).map(tuple),
    enable_logging=st.booleans(),
    log_label=names,
)
policies = st.builds(
    NetworkPolicy,
    name=names,
    source_ref=st.builds(NetworkPolicyReference, names, names, names, names),
    rules=st.lists(rules, max_size=4).map(tuple),
    applied_to_groups=st.lists(names, max_size=3).map(tuple),
    generation=st.integers(0, 2**40),
    tier_priority=st.one_of(st.none(), st.integers(0, 255)),
    priority=st.one_of(st.none(), st.floats(0, 1e4, allow_nan=False)),
)
objects = st.one_of(
    policies,
    st.builds(AddressGroup, names, member_sets),
    st.builds(AppliedToGroup, names, member_sets),
)
events = st.one_of(
    st.builds(
        WatchEvent,
        st.sampled_from([EventType.ADDED, EventType.MODIFIED, EventType.DELETED]),
        st.none(),
        objects,
        rv=st.integers(0, 2**31),
    ),
    st.builds(
        WatchEvent,
        st.just(EventType.MODIFIED),
        st.just(Kind.ADDRESS_GROUP),
        st.none(),
        st.builds(AddressGroupPatch, names, member_sets, member_sets),
    ),
    st.builds(WatchEvent, st.just(EventType.BOOKMARK), rv=st.integers(0, 99)),
    st.builds(WatchEvent, st.just(EventType.ERROR), message=names),
)


def same(a: Any, b: Any) -> None:
    """Equal values of the same types, all the way down (fields that are not part of the value,
    compare=False, left out)."""
    assert type(a) is type(b), (a, b)
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            if f.compare:
                same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, tuple | list):
        assert len(a) == len(b), (a, b)
        for x, y in zip(a, b, strict=True):
            same(x, y)
    elif isinstance(a, frozenset):
        assert a == b
        by_value = {y: y for y in b}
        for x in a:
            same(x, by_value[x])
    else:
        assert a == b, (a, b)


def kind_of(ev: WatchEvent) -> WatchEvent:
    """The event as the decoder returns it: with its kind filled in."""
    if ev.object is None:
        return ev
    kind = {
        NetworkPolicy: Kind.NETWORK_POLICY,
        AddressGroup: Kind.ADDRESS_GROUP,
        AppliedToGroup: Kind.APPLIED_TO_GROUP,
    }[type(ev.object)]
    return dataclasses.replace(ev, kind=kind)


@given(st.lists(events, max_size=6), st.integers(1, 64), st.sampled_from(WIRE_VERSIONS))
def test_stream_decodes_to_the_encoded_objects(
    evs: list[WatchEvent], chunk: int, version: int
) -> None:
    data = b"".join(encode_event(e, version) for e in evs)
    dec = FrameDecoder()
    got: list[WatchEvent] = []
    for i in range(0, len(data), chunk):
        got.extend(dec.feed(data[i : i + chunk]))
    same(got, [kind_of(e) for e in evs])
    for e in evs:
        same(decode_event(encode_event(e, version)), kind_of(e))
    for g in got:  # a version-2 policy carries its rules' arrays (the agent hashes them)
        if version == 2 and isinstance(g.object, NetworkPolicy):
            assert g.rule_arrays is not None
            packed = [msgpack.packb(a) for a in g.rule_arrays]
            assert packed == [msgpack.packb(rule_array(r)) for r in g.object.rules]
        else:
            assert g.rule_arrays is None


@given(st.lists(events, max_size=6))
def test_one_decoder_takes_frames_of_both_versions(evs: list[WatchEvent]) -> None:
    """A version-2 policy frame differs from version 1 (positional rules, fewer bytes) and
    both decode to the same objects, even interleaved in one stream."""
    data = b"".join(encode_event(e, 1 + i % 2) for i, e in enumerate(evs))
    same(list(FrameDecoder().feed(data)), [kind_of(e) for e in evs])
    for e in evs:
        if isinstance(e.object, NetworkPolicy) and e.object.rules:
            assert len(encode_event(e, 2)) < len(encode_event(e, 1))


@given(objects, st.sampled_from(WIRE_VERSIONS))
def test_list_form_maps_decode_like_the_stream(obj: Any, version: int) -> None:
    """object_from_map on the lists object_to_map builds equals the stream's tuples."""
    kind = kind_of(WatchEvent(EventType.ADDED, object=obj)).kind
    assert kind is not None
    from_lists = object_from_map(kind, object_to_map(obj, version), version)
    (from_stream,) = FrameDecoder().feed(
        encode_event(WatchEvent(EventType.ADDED, kind, obj), version)
    )
    same(from_lists, obj)
    same(from_stream.object, obj)


garbage = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), names, st.binary(max_size=2)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(names | st.sampled_from(["ag"]), inner)
    ),
    max_leaves=6,
)


def _paths(v: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(v, dict):
        for k, x in v.items():
            out += _paths(x, (*path, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out += _paths(x, (*path, i))
    return out


def _replace(v: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(v, dict):
        return {**v, head: _replace(v[head], rest, new)}
    return [*v[:head], _replace(v[head], rest, new), *v[head + 1 :]]


@given(events, st.data(), garbage, st.sampled_from(WIRE_VERSIONS))
def test_a_damaged_frame_is_a_decode_error_or_a_value(
    ev: WatchEvent, data: st.DataObject, junk: Any, version: int
) -> None:
    """Any one value of a valid frame replaced by garbage: a DecodeError, never another
    exception (the stream client drops the connection on DecodeError, nothing else)."""
    m = msgpack.unpackb(msgpack.packb(event_to_map(ev, version), use_bin_type=True), raw=False)
    path = data.draw(st.sampled_from(_paths(m)))
    frame = msgpack.packb(_replace(m, path, junk), use_bin_type=True)
    try:
        decode_event(frame)
    except DecodeError:
        pass
    try:
        list(FrameDecoder().feed(frame))
    except DecodeError:
        pass
