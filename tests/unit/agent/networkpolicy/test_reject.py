"""Reject replies: TCP RST and ICMP administratively-prohibited, built from the rejected frame."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from antrea.agent.networkpolicy.reject import (
    RejectResponder,
    _checksum,
    packet_in_reason,
    reject_reply,
)
from antrea.agent.openflow.pipeline import PACKET_IN_LOG, PACKET_IN_REASON, PACKET_IN_REJECT
from antrea.ovs.openflow import wire
from antrea.ovs.openflow.cookie import Category, make_cookie
from antrea.ovs.openflow.flow import Match
from antrea.ovs.openflow.packetin import parse_packet_in

CLIENT_MAC, SERVER_MAC = bytes.fromhex("0a0000000001"), bytes.fromhex("0a0000000002")
CLIENT, SERVER = bytes([10, 244, 3, 10]), bytes([10, 244, 1, 10])


def _ip(proto: int, payload: bytes) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 7, 0x4000, 64, proto, 0,
                      CLIENT, SERVER)  # fmt: skip
    hdr = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
    return SERVER_MAC + CLIENT_MAC + b"\x08\x00" + hdr + payload


def _tcp(flags: int, seq: int, ack: int = 0, data: bytes = b"") -> bytes:
    return _ip(6, struct.pack("!HHIIHHHH", 40000, 80, seq, ack, (5 << 12) | flags, 1024, 0, 0)
               + data)  # fmt: skip


@given(st.integers(0, 2**32 - 1), st.binary(max_size=40))
def test_rst_answers_a_syn_with_the_acceptable_ack(seq: int, data: bytes) -> None:
    reply = reject_reply(_tcp(0x02, seq, data=data))
    assert reply is not None
    assert reply[0:6] == CLIENT_MAC and reply[6:12] == SERVER_MAC
    ip = reply[14:34]
    assert _checksum(ip) == 0
    assert ip[12:16] == SERVER and ip[16:20] == CLIENT and ip[9] == 6
    tcp = reply[34:]
    sport, dport, rseq, rack, off_flags = struct.unpack("!HHIIH", tcp[:14])
    assert (sport, dport) == (80, 40000)
    assert off_flags & 0x3F == 0x14  # RST+ACK
    assert rseq == 0 and rack == (seq + len(data) + 1) & 0xFFFFFFFF
    pseudo = struct.pack("!4s4sBBH", SERVER, CLIENT, 0, 6, len(tcp))
    assert _checksum(pseudo + tcp) == 0


def test_rst_to_a_segment_with_ack_uses_its_ack_and_rst_is_never_answered() -> None:
    reply = reject_reply(_tcp(0x10, 5, ack=1234))
    assert reply is not None
    _, _, rseq, _, off_flags = struct.unpack("!HHIIH", reply[34:48])
    assert rseq == 1234 and off_flags & 0x3F == 0x04
    assert reject_reply(_tcp(0x04, 5)) is None


def test_udp_gets_icmp_admin_prohibited_quoting_the_datagram() -> None:
    frame = _ip(17, struct.pack("!HHHH", 40000, 80, 12, 0) + b"hiya")
    reply = reject_reply(frame)
    assert reply is not None
    ip = reply[14:34]
    assert ip[9] == 1 and ip[12:16] == SERVER and ip[16:20] == CLIENT and _checksum(ip) == 0
    icmp = reply[34:]
    assert icmp[0:2] == bytes([3, 13]) and _checksum(icmp) == 0
    assert icmp[8:] == frame[14 : 14 + 28]  # IP header + 8 bytes
    # An ICMP error is never answered with another.
    assert reject_reply(_ip(1, bytes([3, 3, 0, 0, 0, 0, 0, 0]))) is None


def test_packet_in_round_trip_and_where_the_reply_goes() -> None:
    frame = _tcp(0x02, 1)
    match = wire.encode_match(Match(in_port=5))
    cookie = make_cookie(3, Category.NETWORK_POLICY, 9)
    body = struct.pack("!IHBBQ", 0xFFFFFFFF, len(frame), 1, 85, cookie) + match + b"\0\0" + frame
    assert parse_packet_in(body) == (cookie, 5, frame)
    r = RejectResponder("unix:/nonexistent", is_pod_port=lambda p: p == 5,
                        gateway_mac=lambda: "0a:00:00:00:00:fe")  # fmt: skip
    local = r.reply_message(cookie, 5, frame)
    remote = r.reply_message(cookie, 1, frame)
    assert local is not None and remote is not None
    assert wire.parse_header(local[:8])[1] == 13  # PACKET_OUT
    assert local.endswith(reject_reply(frame) or b"!")
    assert len(remote) > len(local)  # set eth_dst + resubmit(,70) instead of output
    # Only NetworkPolicy flows are answered.
    assert r.reply_message(make_cookie(3, Category.SERVICE), 5, frame) is None


def _packet_in(oxms: bytes, frame: bytes) -> bytes:
    match = struct.pack("!HH", 1, 4 + len(oxms)) + oxms
    match += b"\0" * (-len(match) % 8)
    return struct.pack("!IHBBQ", 0xFFFFFFFF, len(frame), 1, 85, 0) + match + b"\0\0" + frame


def test_packet_in_reason_read_from_reg0_in_either_encoding() -> None:
    """reg0[18..19] of the packet-in's match: NXM_NX_REG0, or the upper half of
    OXM_OF_PKT_REG0 (xreg0); absent (registers zero) is no reason."""
    frame = _tcp(0x02, 1)
    in_port = struct.pack("!HBBI", 0x8000, 0, 4, 5)
    for reason in (1, 2, 3):
        reg0 = (reason << PACKET_IN_REASON.start) | 0x2  # and the packet-source mark
        nxm = struct.pack("!HBBI", 0x0001, 0, 4, reg0)
        xreg = struct.pack("!HBBQ", 0x8001, 0, 8, (reg0 << 32) | 0xFFFF)
        assert packet_in_reason(_packet_in(in_port + nxm, frame)) == reason
        assert packet_in_reason(_packet_in(xreg + in_port, frame)) == reason
        assert parse_packet_in(_packet_in(in_port + nxm, frame)) == (0, 5, frame)
    assert packet_in_reason(_packet_in(in_port, frame)) == 0
    other_reg = struct.pack("!HBBI", 0x0001, 2, 4, 0xFFFFFFFF)  # reg1
    assert packet_in_reason(_packet_in(in_port + other_reg, frame)) == 0
    assert PACKET_IN_REJECT & 3 and not PACKET_IN_REJECT & PACKET_IN_LOG
