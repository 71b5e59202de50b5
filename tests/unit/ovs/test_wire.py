"""OpenFlow 1.5 encoding of flow values (the byte-level checks; tests/integration compares with
ovs-ofctl on a real bridge)."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antrea.ovs.openflow import Conjunction, Drop, Flow, GotoTable, Match, RegMatch
from antrea.ovs.openflow.flow import Proto
from antrea.ovs.openflow.wire import (
    EncodeError,
    FlowEncoder,
    FlowModCommand,
    bundle_add,
    encode_action,
    encode_match,
)


def tlvs(match: bytes) -> list[tuple[int, int, bool, bytes]]:
    """(class, field, hasmask, payload) of each OXM in an encoded ofp_match."""
    mtype, length = struct.unpack_from("!HH", match)
    assert mtype == 1 and len(match) % 8 == 0 and len(match) - length < 8
    out, i = [], 4
    while i < length:
        (hdr,) = struct.unpack_from("!I", match, i)
        size = hdr & 0xFF
        out.append((hdr >> 16, (hdr >> 9) & 0x7F, bool(hdr & 0x100), match[i + 4 : i + 4 + size]))
        i += 4 + size
    assert i == length
    return out


def test_conjunction_is_nicira_34_with_zero_based_clause() -> None:
    raw = encode_action(Conjunction(0x01020304, 2, 3))
    assert raw == struct.pack("!HHIHBBI", 0xFFFF, 16, 0x2320, 34, 1, 3, 0x01020304)


def test_prerequisites_come_first_and_registers_merge() -> None:
    m = Match(
        proto=Proto.TCP,
        regs=(RegMatch(0, 2, 0, 15), RegMatch(0, 1, 16, 16)),
        nw_src=ipaddress.ip_network("10.0.0.0/8"),
        tp_dst=80,
    )
    fields = tlvs(encode_match(m))
    assert [(c, f) for c, f, _, _ in fields[:2]] == [(0x8000, 5), (0x8000, 10)]  # eth, ip_proto
    reg0 = [x for x in fields if x[:2] == (1, 0)]
    assert reg0 == [(1, 0, True, struct.pack("!II", 0x10002, 0x1FFFF))]
    assert (0x8000, 11, True, bytes([10, 0, 0, 0, 255, 0, 0, 0])) in fields


@given(
    st.integers(0, 32).flatmap(
        lambda plen: st.tuples(st.just(plen), st.integers(0, 2**32 - 1), st.integers(0, 65535))
    ),
    st.integers(0, 15),
    st.integers(0, 31).flatmap(lambda s: st.tuples(st.just(s), st.integers(s, 31))),
)
def test_masked_values_never_set_bits_outside_the_mask(
    prefix: tuple[int, int, int], reg: int, bits: tuple[int, int]
) -> None:
    plen, addr, value = prefix
    net = ipaddress.ip_network((addr >> (32 - plen) << (32 - plen) if plen else 0, plen))
    m = Match(proto=Proto.IP, nw_src=net, regs=(RegMatch(reg, value, bits[0], bits[1]),))
    for _, _, masked, payload in tlvs(encode_match(m)):
        if masked:
            half = len(payload) // 2
            v = int.from_bytes(payload[:half], "big")
            mask = int.from_bytes(payload[half:], "big")
            assert v & ~mask == 0 and mask != (1 << (8 * half)) - 1


def test_flow_mod_lengths_and_oversize() -> None:
    enc = FlowEncoder()
    f = Flow(90, 200, Match(proto=Proto.IP), (Conjunction(1, 1, 2), GotoTable(105)), cookie=7)
    msg = enc.flow_mod(f, FlowModCommand.ADD, 42)
    version, mtype, length, xid = struct.unpack_from("!BBHI", msg)
    assert (version, mtype, length, xid) == (6, 14, len(msg), 42)
    assert struct.unpack_from("!Q", msg, 8)[0] == 7
    assert len(bundle_add(42, 1, msg)) == len(msg) + 16
    delete = enc.flow_mod(f, FlowModCommand.DELETE_STRICT, 43)
    assert len(delete) < len(msg)  # no instructions
    assert len(enc.flow_mod(f.with_actions((Drop(),)), FlowModCommand.ADD, 1)) < len(msg)
    big = Flow(90, 200, Match(proto=Proto.IP), tuple(Conjunction(i, 1, 2) for i in range(1, 4100)))
    with pytest.raises(EncodeError, match="exceeds one OpenFlow message"):
        enc.flow_mod(big, FlowModCommand.ADD, 1)
    fits = Flow(90, 200, Match(proto=Proto.IP), tuple(Conjunction(i, 1, 2) for i in range(1, 4001)))
    assert len(bundle_add(1, 1, enc.flow_mod(fits, FlowModCommand.ADD, 1))) <= 0xFFFF
