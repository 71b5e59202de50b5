"""The shape constructors of `antrea.ovs.openflow.flow` (``conj_id_match``, ``ct_label_match``,
``ipv4_prefix_match``) give the very value the generic
``Match(...)`` gives: equal, the same hash, the same set fields in the same order, the same
text and the same bytes (the compiled and the generic encoders), and the same error for what
the generic one refuses."""

from __future__ import annotations

import dataclasses
import ipaddress
import pickle
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antrea.ovs.openflow.flow import (
    CtState,
    Flow,
    IPNet,
    Match,
    Output,
    Proto,
    conj_id_match,
    ct_label_match,
    ipv4_prefix,
    ipv4_prefix_match,
    new_flow,
)
from antrea.ovs.openflow.render import render_match
from antrea.ovs.openflow.wire import FlowEncoder, FlowModCommand, encode_match, generic_flow_mod

ENCODER = FlowEncoder()

_U32 = st.integers(0, 2**32 - 1)
_FLAG = st.none() | st.booleans()
_CT_STATE = st.builds(CtState, _FLAG, _FLAG, _FLAG, _FLAG, _FLAG, _FLAG)


def _same(fast: Match, generic: Match) -> None:
    assert fast == generic and generic == fast
    assert hash(fast) == hash(generic)
    assert list(vars(fast).items()) == list(vars(generic).items())
    assert repr(fast) == repr(generic)
    assert render_match(fast) == render_match(generic)
    if fast.nw_src is not None and fast.nw_src.version == 6:
        return  # an IPv6 prefix under ``ip`` does not encode (both raise; not this test's point)
    assert encode_match(fast) == encode_match(generic)
    for i, match in enumerate((fast, generic)):
        flow = Flow(90, 200, match, (), 7)
        # the compiled encoder (which caches per match shape) and the generic one agree
        assert ENCODER.flow_mod(flow, FlowModCommand.ADD, i) == generic_flow_mod(
            flow, FlowModCommand.ADD, i
        )


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_conj_id_match_is_the_generic_match(conj_id: int) -> None:
    _same(conj_id_match(conj_id), Match(proto=Proto.IP, conj_id=conj_id))


@given(_CT_STATE, st.integers(0, 2**128 - 1), st.integers(0, 2**128 - 1))
@settings(max_examples=200, deadline=None)
def test_ct_label_match_is_the_generic_match(state: CtState, value: int, mask: int) -> None:
    label = (value & mask, mask)
    _same(ct_label_match(state, label), Match(proto=Proto.IP, ct_state=state, ct_label=label))


@given(st.sampled_from(["nw_src", "nw_dst"]), _U32, st.integers(1, 32))
@settings(max_examples=300, deadline=None)
def test_ipv4_prefix_match_is_the_generic_match(field: str, addr: int, plen: int) -> None:
    """A clause atom's match built from its integers (network address, length): /32 an
    address, 31 and 30 (the constructor's range edge) included."""
    value = addr >> (32 - plen) << (32 - plen)
    net = ipaddress.IPv4Network((value, plen))
    generic = Match(proto=Proto.IP, **{field: net})  # type: ignore[arg-type]
    _same(ipv4_prefix_match(field, value, plen), generic)
    prefix = ipv4_prefix(value, plen)
    assert prefix == (net.network_address if plen == 32 else net)
    assert type(prefix) is type(net.network_address if plen == 32 else net)


@given(_CT_STATE)
def test_ct_state_hash_key_follows_the_flags(state: CtState) -> None:
    """`CtState.hash_key` (what a match hashes for its state) is made with every value, also
    a copy, a replaced one and an unpickled one; it takes no part in equality, hash or text."""
    flags = {f: getattr(state, f) for f in ("new", "est", "rel", "rpl", "inv", "trk")}
    copies = [
        CtState(**flags),
        dataclasses.replace(state),
        pickle.loads(pickle.dumps(state)),
    ]
    for other in copies:
        assert other == state and hash(other) == hash(state)
        assert other.hash_key == state.hash_key
        assert hash(Match(proto=Proto.IP, ct_state=other)) == hash(
            Match(proto=Proto.IP, ct_state=state)
        )
    assert "hash_key" not in repr(state)
    flipped = dataclasses.replace(state, est=not state.est)
    assert flipped.hash_key != state.hash_key
    assert Match(proto=Proto.IP, ct_state=flipped) != Match(proto=Proto.IP, ct_state=state)


@pytest.mark.parametrize(
    "make",
    [
        lambda n: ipv4_prefix_match("nw_src", int(n.network_address), n.prefixlen),
        lambda n: Match(proto=Proto.IP, nw_src=n),
    ],
    ids=["ipv4_prefix_match", "Match"],
)
def test_prefixes_ipaddress_hashes_alike_are_told_apart(make: Callable[[IPNet], Match]) -> None:
    """`IPv4Network.__hash__` hashes address ^ netmask: a prefix and a longer one whose extra
    bits are all ones collide (a Python-level comparison in every dict of flow keys); the
    matches of both do not."""
    a, b = ipaddress.IPv4Network("10.0.0.0/8"), ipaddress.IPv4Network("10.255.0.0/16")
    assert hash(a) == hash(b)
    assert hash(make(a)) != hash(make(b))
    assert hash(make(a)) == hash(Match(proto=Proto.IP, nw_src=a))


@given(
    st.integers(0, 254),
    st.integers(0, 0xFFFF),
    st.sampled_from([conj_id_match(7), ct_label_match(CtState(est=True), (1, 3)), Match()]),
    st.lists(st.builds(Output, st.integers(1, 9)), max_size=3).map(tuple),
    st.integers(0, 2**64 - 1),
)
def test_new_flow_is_the_constructors_flow(
    table: int, priority: int, match: Match, actions: tuple[Output, ...], cookie: int
) -> None:
    """`new_flow` (built through a slot builder) is the very value `Flow(...)` builds."""
    fast, slow = (
        new_flow(table, priority, match, actions, cookie),
        Flow(table, priority, match, actions, cookie),
    )
    assert type(fast) is Flow and fast == slow and hash(fast) == hash(slow)
    assert repr(fast) == repr(slow) and fast.key == slow.key and hash(fast.key) == hash(slow.key)
    assert pickle.loads(pickle.dumps(fast)) == slow
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.__setattr__("cookie", 0)
