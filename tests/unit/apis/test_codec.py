"""The control-plane wire format round-trips every object and rejects garbage clearly."""

from __future__ import annotations

import msgpack
import pytest

from antrea.apis.controlplane.codec import (
    DecodeError,
    EventType,
    FrameDecoder,
    WatchEvent,
    decode_event,
    decode_status,
    encode_event,
    encode_status,
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
    NetworkPolicyNodeStatus,
    NetworkPolicyPeer,
    NetworkPolicyReference,
    NetworkPolicyRule,
    PodReference,
    Protocol,
    Service,
)

M1 = GroupMember(
    PodReference("x", "a"),
    ("10.244.1.10",),
    "node1",
    (NamedPort("serve-80-tcp", Protocol.TCP, 80),),
)
M2 = GroupMember(PodReference("y", "b"), ("10.244.2.20",), "node2")
NP = NetworkPolicy(
    name="uid-1",
    source_ref=NetworkPolicyReference("K8sNetworkPolicy", "x", "allow", "uid-1"),
    rules=(
        NetworkPolicyRule(
            Direction.IN,
            from_=NetworkPolicyPeer(("ag1",), (IPBlock("10.0.0.0/8", ("10.1.0.0/16",)),)),
            services=(Service(Protocol.TCP, "serve-80-tcp"), Service(Protocol.UDP, 81, 90)),
        ),
        NetworkPolicyRule(Direction.OUT),
        NetworkPolicyRule(Direction.OUT, to=NetworkPolicyPeer(ip_blocks=(IPBlock("0.0.0.0/0"),))),
    ),
    applied_to_groups=("atg1",),
    generation=3,
)

EVENTS = [
    WatchEvent(EventType.ADDED, Kind.NETWORK_POLICY, NP, rv=1),
    WatchEvent(EventType.ADDED, Kind.ADDRESS_GROUP, AddressGroup("ag1", frozenset({M1, M2})), rv=2),
    WatchEvent(
        EventType.ADDED, Kind.APPLIED_TO_GROUP, AppliedToGroup("atg1", frozenset({M1})), rv=3
    ),
    WatchEvent(EventType.BOOKMARK, rv=3),
    WatchEvent(
        EventType.MODIFIED,
        Kind.ADDRESS_GROUP,
        patch=AddressGroupPatch("ag1", frozenset({M2}), frozenset({M1})),
        rv=4,
    ),
    WatchEvent(EventType.DELETED, Kind.NETWORK_POLICY, NP, rv=5),
]


@pytest.mark.parametrize("ev", EVENTS, ids=lambda e: f"{e.type}-{e.kind}")
def test_roundtrip(ev: WatchEvent) -> None:
    assert decode_event(encode_event(ev)) == ev


def test_stream_decoder_handles_arbitrary_chunking() -> None:
    data = b"".join(encode_event(e) for e in EVENTS)
    dec = FrameDecoder()
    got: list[WatchEvent] = []
    for i in range(0, len(data), 7):
        got.extend(dec.feed(data[i : i + 7]))
    assert got == EVENTS


@pytest.mark.parametrize(
    "frame",
    [
        b"\xc1",
        msgpack.packb({"v": 99, "type": "ADDED"}),
        msgpack.packb({"v": 1, "type": "NOPE"}),
        msgpack.packb({"v": 1, "type": "ADDED", "kind": "NetworkPolicy", "object": {"name": 1}}),
    ],
)
def test_garbage_is_a_decode_error(frame: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_event(frame)


def test_status_roundtrip() -> None:
    st = NetworkPolicyNodeStatus("uid-1", "node1", 3, False, "bundle rejected")
    assert decode_status(encode_status(st)) == st
