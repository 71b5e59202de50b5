"""`encode_event` builds a NetworkPolicy frame piece by piece (bulk rules from fixed bytes): the
result must be byte for byte the msgpack of `event_to_map`, the wire format's definition, in
every wire version, for any policy, and in particular for rules on either side of the bulk
shape (one ipBlock without except on the remote side, nothing else set)."""

from __future__ import annotations

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from antrea.apis.controlplane.codec import (
    WIRE_VERSIONS,
    EventType,
    FrameDecoder,
    WatchEvent,
    encode_event,
    event_to_map,
)
from antrea.apis.controlplane.types import (
    Direction,
    IPBlock,
    Kind,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyReference,
    NetworkPolicyRule,
    Protocol,
    RuleAction,
    Service,
)

names = st.text(min_size=0, max_size=5)
# short and long CIDR texts: a str of 32 bytes or more has a longer msgpack header
cidrs = st.one_of(
    st.sampled_from(["0.0.0.0/0", "10.0.0.0/8", "192.168.1.7/32", "fd00::/8"]),
    st.text(max_size=3),
    st.text("0123456789abcdef.:/", min_size=29, max_size=34),  # around the 32-byte header
)
blocks = st.builds(IPBlock, cidrs, st.lists(cidrs, max_size=2).map(tuple))
bulk_blocks = st.builds(IPBlock, cidrs)
peers = st.builds(
    NetworkPolicyPeer,
    st.lists(names, max_size=2).map(tuple),
    st.lists(blocks, max_size=2).map(tuple),
)
empty_peer = st.just(NetworkPolicyPeer())
one_block_peer = st.builds(NetworkPolicyPeer, st.just(()), st.tuples(bulk_blocks))
services = st.builds(
    Service,
    st.sampled_from(Protocol),
    st.one_of(st.none(), st.integers(0, 65535), names),
    st.one_of(st.none(), st.integers(0, 65535)),
)


@st.composite
def rules(draw: st.DrawFn) -> NetworkPolicyRule:
    direction = draw(st.sampled_from(Direction))
    if draw(st.booleans()):  # the bulk shape, possibly with one field off
        remote, local = draw(one_block_peer), draw(st.one_of(empty_peer, empty_peer, peers))
    else:
        remote, local = draw(peers), draw(peers)
    from_, to = (remote, local) if direction is Direction.IN else (local, remote)
    plain = draw(st.booleans())
    return NetworkPolicyRule(
        direction,
        from_,
        to,
        services=None if plain else draw(st.one_of(st.none(), st.lists(services).map(tuple))),
        name="" if plain else draw(names),
        priority=-1 if plain else draw(st.integers(-2, 100)),
        action=None if plain else draw(st.one_of(st.none(), st.sampled_from(RuleAction))),
        applied_to_groups=() if plain else draw(st.lists(names, max_size=2).map(tuple)),
        enable_logging=False if plain else draw(st.booleans()),
        log_label="" if plain else draw(names),
    )


policies = st.builds(
    NetworkPolicy,
    name=names,
    source_ref=st.builds(NetworkPolicyReference, names, names, names, names),
    # few rules (packed from the map) and enough to be packed piece by piece
    rules=st.one_of(st.lists(rules(), max_size=3), st.lists(rules(), min_size=16, max_size=20)).map(
        tuple
    ),
    applied_to_groups=st.lists(names, max_size=3).map(tuple),
    generation=st.integers(0, 2**40),
    tier_priority=st.one_of(st.none(), st.integers(-(2**33), 2**33)),
    priority=st.one_of(st.none(), st.floats(allow_nan=False)),
)
events = st.builds(
    WatchEvent,
    st.sampled_from(EventType),
    st.one_of(st.none(), st.just(Kind.NETWORK_POLICY)),
    policies,
    rv=st.integers(0, 2**63),
    message=names,
)


versions = st.sampled_from(WIRE_VERSIONS)


@given(events, versions)
def test_a_policy_frame_is_the_msgpack_of_its_map(ev: WatchEvent, version: int) -> None:
    expected = msgpack.packb(event_to_map(ev, version), use_bin_type=True)
    assert encode_event(ev, version) == expected


@given(st.lists(events, min_size=1, max_size=3), versions)
def test_policy_frames_decode_to_the_encoded_policies(evs: list[WatchEvent], version: int) -> None:
    data = b"".join(encode_event(ev, version) for ev in evs)
    decoded = list(FrameDecoder().feed(data))
    assert [d.object for d in decoded] == [ev.object for ev in evs]
