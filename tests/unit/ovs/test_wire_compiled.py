"""The compiled encoders of `FlowEncoder` (per match shape, per action signature, the bulk
bundle-adds) give exactly the bytes of the generic field-by-field encoder, for any flow."""

from __future__ import annotations

import ipaddress
from typing import Any, TypeVar

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from antrea.ovs.openflow import (
    Conjunction,
    Ct,
    CtClear,
    CtState,
    DecTTL,
    Drop,
    Flow,
    GotoTable,
    LoadReg,
    Match,
    Move,
    Normal,
    Output,
    OutputReg,
    RegMatch,
    Resubmit,
    SetField,
)
from antrea.ovs.openflow.flow import OutputGroup, Proto
from antrea.ovs.openflow.wire import (
    EncodeError,
    FlowEncoder,
    FlowModCommand,
    bundle_add,
    generic_flow_mod,
)

T = TypeVar("T")

# one encoder for every example: its compiled shapes meet many values of the same shape
ENCODER = FlowEncoder()

_V4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
_V6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
_PLEN = st.sampled_from([0, 1, 8, 16, 24, 30, 31]) | st.integers(0, 31)
_V4NET = st.tuples(st.integers(0, 2**32 - 1), _PLEN).map(
    lambda t: ipaddress.IPv4Network((t[0] >> (32 - t[1]) << (32 - t[1]) if t[1] else 0, t[1]))
)
_V6NET = st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 127)).map(
    lambda t: ipaddress.IPv6Network((t[0] >> (128 - t[1]) << (128 - t[1]) if t[1] else 0, t[1]))
)
_ADDR = st.one_of(_V4NET, _V4NET, _V4, _V6, _V6NET)
_MAC = st.integers(0, 2**48 - 1).map(lambda v: ":".join(f"{b:02x}" for b in v.to_bytes(6, "big")))
_REG = st.tuples(st.integers(0, 15), st.integers(0, 31)).flatmap(
    lambda t: st.tuples(st.integers(t[1], 31), st.integers(0, 2**32 - 1)).map(
        lambda u: RegMatch(t[0], u[1] & ((1 << (u[0] - t[1] + 1)) - 1), t[1], u[0])
    )
)
_FULL_REG = st.builds(RegMatch, st.integers(0, 15), st.integers(0, 2**32 - 1))
_CT = st.builds(CtState, *(st.none() | st.booleans() for _ in range(6)))
_U16 = st.integers(0, 65535)
_U32 = st.integers(0, 2**32 - 1)


def _opt(s: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.none() | s


@st.composite
def matches(draw: st.DrawFn) -> Match:
    # the hot shapes often, any field sometimes (the generic fallback and its errors)
    proto = draw(st.none() | st.sampled_from(list(Proto)))
    rare = draw(st.booleans())
    # transport ports mostly with a transport protocol (else the generic encoder refuses)
    tp = proto in (Proto.TCP, Proto.UDP, Proto.SCTP) or draw(st.integers(0, 9)) == 0
    m = Match(
        proto=proto,
        in_port=draw(_opt(_U32)),
        regs=tuple(draw(st.lists(_FULL_REG | _REG, max_size=3))),
        ct_state=draw(_opt(_CT)),
        ct_mark=draw(_opt(st.tuples(_U32, _U32))),
        ct_label=draw(_opt(st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 2**128 - 1)))),
        conj_id=draw(_opt(_U32)),
        nw_src=draw(_opt(_ADDR)),
        nw_dst=draw(_opt(_ADDR)),
        tp_src=draw(_opt(_U16)) if tp else None,
        tp_dst=draw(_opt(_U16)) if tp else None,
        tp_dst_mask=draw(_opt(st.sampled_from([0xFFFF, 0xFF00, 0xFFF0, 0]))) if tp else None,
        dl_src=draw(_opt(_MAC)) if rare else None,
        dl_dst=draw(_opt(_MAC)) if rare else None,
        tun_id=draw(_opt(st.integers(0, 2**64 - 1))) if rare else None,
        tun_dst=draw(_opt(_V4)) if rare else None,
        arp_op=draw(_opt(st.integers(0, 2))) if rare else None,
        arp_spa=draw(_opt(_V4)) if rare else None,
        arp_tpa=draw(_opt(_V4)) if rare else None,
        arp_sha=draw(_opt(_MAC)) if rare else None,
        tcp_flags=draw(_opt(st.sampled_from(["+syn-ack", "-rst", "+fin+psh"]))) if rare else None,
        icmp_type=draw(_opt(st.integers(0, 255))) if rare else None,
        icmp_code=draw(_opt(st.integers(0, 255))) if rare else None,
    )
    if draw(st.booleans()):
        hash(m)  # a hashed match carries its cached hash (a different shape key)
    return m


_ACTION = st.one_of(
    st.builds(Conjunction, _U32, st.integers(1, 4), st.integers(2, 4)),
    st.builds(GotoTable, st.integers(0, 254)),
    st.builds(LoadReg, st.integers(0, 15), _U32),
    st.builds(LoadReg, st.integers(0, 15), st.integers(0, 255), st.just(8), st.just(15)),
    st.builds(Output, st.integers(1, 60000) | st.sampled_from(["IN_PORT", "LOCAL", "NORMAL"])),
    st.builds(OutputReg, st.integers(0, 15)),
    st.builds(Resubmit, st.integers(0, 254)),
    st.builds(SetField, st.just("eth_dst"), _MAC),
    st.builds(OutputGroup, _U32),
    st.builds(Move, st.just("NXM_NX_REG5[]"), st.just("NXM_NX_CT_LABEL[32..63]")),
    st.builds(Ct, commit=st.booleans(), table=st.none() | st.integers(0, 254)),
    st.sampled_from([CtClear(), DecTTL(), Drop(), Normal()]),
)
# the shapes of a policy set: one conjunction, load + goto, a goto alone, many conjunctions
_ACTIONS = st.one_of(
    st.lists(_ACTION, max_size=5),
    st.builds(lambda c: [c], _ACTION),
    st.builds(lambda v, t: [LoadReg(6, v), GotoTable(t)], _U32, st.integers(0, 254)),
    st.lists(st.builds(Conjunction, _U32, st.just(1), st.just(2)), min_size=1, max_size=60),
    # longer than a cached signature: the conjunctions of a shared clause (any values, some
    # out of range), or any mix
    st.lists(
        st.builds(Conjunction, _U32 | st.just(2**32), st.integers(0, 256), st.integers(0, 256)),
        min_size=17,
        max_size=40,
    ),
    st.lists(_ACTION, min_size=17, max_size=24),
).map(tuple)
_FLOW = st.builds(Flow, st.integers(0, 254), _U16, matches(), _ACTIONS, st.integers(0, 2**64 - 1))
_COMMANDS = st.sampled_from(list(FlowModCommand))
_PROTO = st.sampled_from([Proto.IP, Proto.IP, Proto.IP, *Proto])
_TABLE = st.integers(0, 254) | st.sampled_from([255, 256])  # goto_table beyond 255: refused


def _maybe_hashed(m: Match, hashed: bool) -> Match:
    if hashed:
        hash(m)
    return m


# the three shapes a policy set is made of, with any values (the templates' ground)
_CLAUSE = st.builds(
    lambda p, addr, src, conj, h: (
        _maybe_hashed(Match(proto=p, **{"nw_src" if src else "nw_dst": addr}), h),
        (conj,),
    ),
    _PROTO,
    _ADDR,
    st.booleans(),
    st.builds(Conjunction, _U32, st.integers(1, 4), st.integers(2, 4)),
    st.booleans(),
)
_CONJ_ACTION = st.builds(
    lambda p, conj, load, goto, h: (
        _maybe_hashed(Match(proto=p, conj_id=conj), h),
        (load, GotoTable(goto)),
    ),
    _PROTO,
    _U32,
    st.builds(LoadReg, st.integers(0, 15), _U32)
    | st.builds(
        LoadReg,
        st.integers(0, 15),
        _U32,
        st.sampled_from([0, 1]),
        st.sampled_from([15, 30, 31]),
    )
    | _REG.map(lambda r: LoadReg(*vars_of(r))),
    _TABLE,
    st.booleans(),
)
_METRIC = st.builds(
    lambda p, state, label, goto, h: (
        _maybe_hashed(Match(proto=p, ct_state=state, ct_label=label), h),
        (GotoTable(goto),),
    ),
    _PROTO,
    _CT,
    st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 2**128 - 1) | st.just(2**128 - 1)),
    _TABLE,
    st.booleans(),
)
_POLICY_FLOW = st.builds(
    lambda t, p, ma, c: Flow(t, p, ma[0], ma[1], c),
    st.integers(0, 254),
    _U16,
    st.one_of(_CLAUSE, _CONJ_ACTION, _METRIC),
    st.integers(0, 2**64 - 1),
)


def vars_of(r: RegMatch) -> tuple[int, int, int, int]:
    return r.reg, r.value, r.start, r.end


def _generic(flow: Flow, command: FlowModCommand, xid: int) -> bytes | type[Exception]:
    try:
        return generic_flow_mod(flow, command, xid)
    except Exception as exc:  # the compiled path must raise the same type
        return type(exc)


@given(st.lists(_POLICY_FLOW, min_size=1, max_size=20), _U32, st.integers(0, 2**32 - 100))
@settings(max_examples=300, deadline=None)
def test_policy_flow_adds_are_the_generic_bundle_adds(
    flows: list[Flow], bundle_id: int, xid: int
) -> None:
    """The templates of clause, action and metric flows, any values: the generic bytes."""
    want = [_generic(f, FlowModCommand.ADD, xid + i) for i, f in enumerate(flows)]
    errors = [w for w in want if not isinstance(w, bytes)]
    if errors:
        with pytest.raises(errors[0]):
            ENCODER.bundle_adds(flows, FlowModCommand.ADD, bundle_id, xid)
        return
    expected = b"".join(
        bundle_add(xid + i, bundle_id, w) for i, w in enumerate(want) if isinstance(w, bytes)
    )
    assert ENCODER.bundle_adds(flows, FlowModCommand.ADD, bundle_id, xid) == expected


_EXTRA = st.sampled_from(
    [
        ("in_port", 3),
        ("conj_id", 9),
        ("ct_mark", (1, 1)),
        ("ct_state", CtState(trk=True)),
        ("ct_label", (1, 1)),
        ("regs", (RegMatch(1, 5),)),
        ("nw_src", ipaddress.IPv4Network("10.0.0.0/8")),
        ("nw_dst", ipaddress.IPv4Address("10.0.0.1")),
        ("tun_id", 5),
    ]
)


_CONJ = st.builds(Conjunction, _U32, st.integers(1, 4), st.integers(2, 4))
# exactly the templates' shapes (each encoded by its template as such)
_TEMPLATE_FLOW = st.one_of(
    st.builds(
        lambda a, c: Flow(90, 200, Match(proto=Proto.IP, nw_src=a), (c,)), _V4NET | _V4, _CONJ
    ),
    st.builds(
        lambda a, c: Flow(90, 200, Match(proto=Proto.IP, nw_dst=a), (c,)), _V4NET | _V4, _CONJ
    ),
    st.builds(
        lambda i, v, t: Flow(
            90, 190, Match(proto=Proto.IP, conj_id=i), (LoadReg(6, v), GotoTable(t))
        ),
        _U32,
        _U32,
        st.integers(0, 254),
    ),
    st.builds(
        lambda s, v, t: Flow(
            90, 211, Match(proto=Proto.IP, ct_state=s, ct_label=(v, 2**64 - 1)), (GotoTable(t),)
        ),
        _CT,
        st.integers(0, 2**128 - 1),
        st.integers(0, 254),
    ),
)


@given(_TEMPLATE_FLOW, _EXTRA, _U32)
@settings(max_examples=200, deadline=None)
def test_a_policy_shape_with_one_more_field_is_encoded_whole(
    flow: Flow, extra: tuple[str, object], xid: int
) -> None:
    """A template is picked by the action types; the match's shape is its own check: one
    more field set and the flow is no longer the template's (the generic bytes)."""
    fields: dict[str, Any] = {k: v for k, v in vars(flow.match).items() if not k.startswith("_")}
    fields[extra[0]] = extra[1]
    assume(extra[0] not in vars(flow.match))
    wider = Flow(flow.table, flow.priority, Match(**fields), flow.actions, 7)
    want = _generic(wider, FlowModCommand.ADD, xid)
    if isinstance(want, bytes):
        got = ENCODER.bundle_adds([wider], FlowModCommand.ADD, 1, xid)
        assert got == bundle_add(xid, 1, want)
    else:
        with pytest.raises(want):
            ENCODER.bundle_adds([wider], FlowModCommand.ADD, 1, xid)


@given(_FLOW | _POLICY_FLOW, _COMMANDS, _U32)
@settings(max_examples=300, deadline=None)
def test_flow_mod_is_the_generic_encoding(flow: Flow, command: FlowModCommand, xid: int) -> None:
    want = _generic(flow, command, xid)
    if isinstance(want, bytes):
        assert ENCODER.flow_mod(flow, command, xid) == want
    else:
        with pytest.raises(want):
            ENCODER.flow_mod(flow, command, xid)


@given(
    st.lists(_FLOW | _POLICY_FLOW, max_size=12),
    _COMMANDS,
    _U32,
    st.integers(0, 2**32 - 100),
)
@settings(max_examples=120, deadline=None)
def test_bundle_adds_are_the_generic_bundle_adds(
    flows: list[Flow], command: FlowModCommand, bundle_id: int, xid: int
) -> None:
    want = [_generic(f, command, xid + i) for i, f in enumerate(flows)]
    errors = [w for w in want if not isinstance(w, bytes)]
    if errors:
        with pytest.raises(errors[0]):
            ENCODER.bundle_adds(flows, command, bundle_id, xid)
        return
    expected = b"".join(
        bundle_add(xid + i, bundle_id, w) for i, w in enumerate(want) if isinstance(w, bytes)
    )
    assert ENCODER.bundle_adds(flows, command, bundle_id, xid) == expected


def test_policy_shapes_take_the_templates() -> None:
    """The three hot shapes of a policy set take their templates (adds) or compiled parts."""
    enc = FlowEncoder()
    net = ipaddress.ip_network("10.1.0.0/16")
    flows = [
        Flow(90, 200, Match(proto=Proto.IP, nw_src=net), (Conjunction(5, 1, 2),)),
        Flow(90, 190, Match(proto=Proto.IP, conj_id=5), (LoadReg(6, 5), GotoTable(105))),
        Flow(
            90,
            211,
            Match(proto=Proto.IP, ct_state=CtState(new=False, est=True), ct_label=(5, 2**32 - 1)),
            (GotoTable(105),),
        ),
    ]
    data = enc.bundle_adds(flows, FlowModCommand.ADD, 1, 1)
    assert data == b"".join(
        bundle_add(1 + i, 1, generic_flow_mod(f, FlowModCommand.ADD, 1 + i))
        for i, f in enumerate(flows)
    )
    # picked by their action types (each template checks the match's shape): neither the
    # per-shape template cache nor the compiled parts were needed
    assert not enc._templates and not enc._matches and not enc._instructions
    # and the compiled parts, for the other commands
    enc.bundle_adds(flows, FlowModCommand.MODIFY_STRICT, 1, 1)
    from antrea.ovs.openflow import wire

    assert wire.encode_match not in enc._matches.values()
    assert wire.encode_instructions not in enc._instructions.values()


def test_a_flow_too_big_for_a_bundle_is_refused() -> None:
    enc = FlowEncoder()
    fits = Flow(90, 200, Match(proto=Proto.IP), tuple(Conjunction(i, 1, 2) for i in range(4001)))
    assert len(enc.bundle_adds([fits], FlowModCommand.ADD, 1, 1)) <= 0xFFFF
    # fits one flow mod, not a bundle-add around it
    wide = Match(
        proto=Proto.IP,
        in_port=1,
        ct_label=(1, 3),
        conj_id=7,
        nw_src=ipaddress.ip_network("10.0.0.0/8"),
    )  # an 80-byte match
    edge = Flow(90, 200, wide, tuple(Conjunction(i, 1, 2) for i in range(4087)))
    assert len(generic_flow_mod(edge, FlowModCommand.ADD, 1)) <= 0xFFFF
    with pytest.raises(EncodeError, match="does not fit a bundle"):
        enc.bundle_adds([edge], FlowModCommand.ADD, 1, 1)
    big = Flow(90, 200, Match(proto=Proto.IP), tuple(Conjunction(i, 1, 2) for i in range(4100)))
    with pytest.raises(EncodeError, match="exceeds one OpenFlow message"):
        enc.bundle_adds([big], FlowModCommand.ADD, 1, 1)


def test_long_action_lists_do_not_grow_the_caches() -> None:
    """A clause flow's conjunction count changes with every policy sharing it: encoders are
    not cached per such length, and the bytes are still the generic encoder's."""
    enc = FlowEncoder()
    match = Match(proto=Proto.TCP, tp_dst=8080)
    for k in (1, 2, 16, 17, 100, 1000):
        f = Flow(90, 200, match, tuple(Conjunction(i, 2, 2) for i in range(k)))
        for cmd in (FlowModCommand.ADD, FlowModCommand.MODIFY_STRICT):
            assert enc.flow_mod(f, cmd, 7) == generic_flow_mod(f, cmd, 7)
            assert enc.bundle_adds([f], cmd, 1, 7) == bundle_add(7, 1, generic_flow_mod(f, cmd, 7))
    assert sorted(len(s) for s in enc._instructions) == [1, 2, 16]
    assert sorted(len(s) for _, s in enc._templates) == [1, 2, 16]
