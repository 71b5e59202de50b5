"""The one place where flow values become OpenFlow 1.5 bytes (what `render` is for text).

Pure `struct` packing of the messages the native transport sends: hello, echo reply, barrier,
bundle control and bundle-add around flow mods (add / modify_strict / delete_strict), and group
mods. Matches are OXM/NXM TLVs, actions the OpenFlow 1.5 ones plus the Nicira extensions the
pipeline uses (conjunction, ct, nat, ct_clear, resubmit, output_reg). The bytes are
those `ovs-ofctl -O OpenFlow15` sends for the same flow as rendered by `render` (checked by an
integration test with ``ovs-ofctl diff-flows``).

`FlowEncoder` is the fast path: encoders compiled per match shape and per action signature, and
one struct for a flow's bundle-add and flow-mod headers (see "the bulk path" below). The
field-by-field functions (`encode_match`, `encode_instructions`, `generic_flow_mod`) are the
reference it is tested against and its fallback for values it does not compile.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from enum import IntEnum
from functools import lru_cache
from typing import Any

from antrea.errors import AntreaError
from antrea.ovs.openflow.flow import (
    Action,
    Conjunction,
    Ct,
    CtClear,
    CtState,
    DecTTL,
    Drop,
    Flow,
    GotoTable,
    Learn,
    LoadReg,
    Match,
    Move,
    Normal,
    Output,
    OutputGroup,
    OutputReg,
    RegMatch,
    Resubmit,
    SetField,
)
from antrea.ovs.openflow.groups import Group, GroupType

OFP_VERSION = 0x06  # OpenFlow 1.5
MAX_MESSAGE = 0xFFFF


class MsgType(IntEnum):
    HELLO = 0
    ERROR = 1
    ECHO_REQUEST = 2
    ECHO_REPLY = 3
    FLOW_MOD = 14
    GROUP_MOD = 15
    BARRIER_REQUEST = 20
    BARRIER_REPLY = 21
    BUNDLE_CONTROL = 33
    BUNDLE_ADD_MESSAGE = 34


class FlowModCommand(IntEnum):
    ADD = 0
    MODIFY_STRICT = 2
    DELETE_STRICT = 4


class BundleCtrl(IntEnum):
    OPEN_REQUEST = 0
    OPEN_REPLY = 1
    CLOSE_REQUEST = 2
    CLOSE_REPLY = 3
    COMMIT_REQUEST = 4
    COMMIT_REPLY = 5
    DISCARD_REQUEST = 6
    DISCARD_REPLY = 7


BUNDLE_FLAGS = 0x1 | 0x2  # OFPBF_ATOMIC | OFPBF_ORDERED, as `ovs-ofctl --bundle`

NO_BUFFER = 0xFFFFFFFF
PORT_ANY = 0xFFFFFFFF
GROUP_ANY = 0xFFFFFFFF
PORTS = {
    "IN_PORT": 0xFFFFFFF8,
    "TABLE": 0xFFFFFFF9,
    "NORMAL": 0xFFFFFFFA,
    "FLOOD": 0xFFFFFFFB,
    "ALL": 0xFFFFFFFC,
    "CONTROLLER": 0xFFFFFFFD,
    "LOCAL": 0xFFFFFFFE,
}

_HDR = struct.Struct("!BBHI")
_FLOW_MOD = struct.Struct("!BBHIQQBBHHHIIIHH")  # header + ofp_flow_mod fixed part
_BUNDLE_CTRL = struct.Struct("!BBHIIHH")
_BUNDLE_ADD = struct.Struct("!BBHIIHH")


class EncodeError(AntreaError, ValueError):
    """A flow cannot be expressed in one OpenFlow message (too big, unknown field...)."""


# -- OXM / NXM fields -------------------------------------------------------------------------
OFB = 0x8000  # OFPXMC_OPENFLOW_BASIC
NXM0 = 0x0000
NXM1 = 0x0001


class Field:
    """One OXM/NXM field; its TLV headers are packed once."""

    __slots__ = ("cls", "code", "full", "hdr", "hdr_masked", "size")

    def __init__(self, cls: int, code: int, size: int) -> None:
        self.cls = cls
        self.code = code
        self.size = size
        self.full = (1 << (8 * size)) - 1
        self.hdr = struct.pack("!I", self.header())
        self.hdr_masked = struct.pack("!I", self.header(True))

    def __repr__(self) -> str:
        return f"Field({self.cls:#x}, {self.code}, {self.size})"

    def header(self, masked: bool = False) -> int:
        size = self.size * 2 if masked else self.size
        return (self.cls << 16) | (self.code << 9) | (int(masked) << 8) | size

    def tlv(self, value: int, mask: int | None = None) -> bytes:
        full = self.full
        if mask is None or mask & full == full:
            return self.hdr + (value & full).to_bytes(self.size, "big")
        return (
            self.hdr_masked
            + (value & mask & full).to_bytes(self.size, "big")
            + (mask & full).to_bytes(self.size, "big")
        )


IN_PORT = Field(OFB, 0, 4)
ETH_DST = Field(OFB, 3, 6)
ETH_SRC = Field(OFB, 4, 6)
ETH_TYPE = Field(OFB, 5, 2)
IP_PROTO = Field(OFB, 10, 1)
IPV4_SRC = Field(OFB, 11, 4)
IPV4_DST = Field(OFB, 12, 4)
TP_FIELDS = {
    "tcp": (Field(OFB, 13, 2), Field(OFB, 14, 2)),
    "udp": (Field(OFB, 15, 2), Field(OFB, 16, 2)),
    "sctp": (Field(OFB, 17, 2), Field(OFB, 18, 2)),
}
ICMPV4_TYPE = Field(OFB, 19, 1)
ICMPV4_CODE = Field(OFB, 20, 1)
ARP_OP = Field(OFB, 21, 2)
ARP_SPA = Field(OFB, 22, 4)
ARP_TPA = Field(OFB, 23, 4)
ARP_SHA = Field(OFB, 24, 6)
ARP_THA = Field(OFB, 25, 6)
IPV6_SRC = Field(OFB, 26, 16)
IPV6_DST = Field(OFB, 27, 16)
TUN_ID = Field(NXM1, 16, 8)
TUN_IPV4_DST = Field(NXM1, 32, 4)
TCP_FLAGS = Field(NXM1, 34, 2)
CONJ_ID = Field(NXM1, 37, 4)
CT_STATE = Field(NXM1, 105, 4)
CT_MARK = Field(NXM1, 107, 4)
CT_LABEL = Field(NXM1, 108, 16)


REGS = [Field(NXM1, n, 4) for n in range(16)]


def reg_field(n: int) -> Field:
    if not 0 <= n <= 15:
        raise EncodeError(f"no register {n}")
    return REGS[n]


# NXM names as `Move` spells them
NXM_NAMES: dict[str, Field] = {
    "NXM_OF_IN_PORT": Field(NXM0, 0, 2),
    "NXM_OF_ETH_DST": Field(NXM0, 1, 6),
    "NXM_OF_ETH_SRC": Field(NXM0, 2, 6),
    "NXM_OF_ETH_TYPE": Field(NXM0, 3, 2),
    "NXM_OF_IP_SRC": Field(NXM0, 7, 4),
    "NXM_OF_IP_DST": Field(NXM0, 8, 4),
    "NXM_OF_ARP_OP": Field(NXM0, 15, 2),
    "NXM_OF_ARP_SPA": Field(NXM0, 16, 4),
    "NXM_OF_ARP_TPA": Field(NXM0, 17, 4),
    "NXM_NX_ARP_SHA": Field(NXM1, 17, 6),
    "NXM_NX_ARP_THA": Field(NXM1, 18, 6),
    "NXM_NX_TUN_ID": TUN_ID,
    "NXM_NX_TUN_IPV4_DST": TUN_IPV4_DST,
    "NXM_NX_CT_MARK": CT_MARK,
    "NXM_NX_CT_LABEL": CT_LABEL,
    **{f"NXM_NX_REG{i}": Field(NXM1, i, 4) for i in range(16)},
}

# `SetField` names (ovs-ofctl's set_field:<value>-><field>)
SET_FIELDS: dict[str, Field] = {
    "eth_src": ETH_SRC,
    "eth_dst": ETH_DST,
    "arp_op": ARP_OP,
    "arp_spa": ARP_SPA,
    "arp_tpa": ARP_TPA,
    "arp_sha": ARP_SHA,
    "arp_tha": ARP_THA,
    "ip_src": IPV4_SRC,
    "nw_src": IPV4_SRC,
    "ip_dst": IPV4_DST,
    "nw_dst": IPV4_DST,
    "tun_dst": TUN_IPV4_DST,
    "tun_id": TUN_ID,
    "ct_mark": CT_MARK,
    **{f"reg{i}": Field(NXM1, i, 4) for i in range(16)},
}

_SUBFIELD = re.compile(r"^(\w+)\[(?:(\d+)(?:\.\.(\d+))?)?\]$")

ETH_TYPES = {"ip": 0x0800, "ipv6": 0x86DD, "arp": 0x0806}
IP_PROTOS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1}
CT_BITS = {"new": 0x01, "est": 0x02, "rel": 0x04, "rpl": 0x08, "inv": 0x10, "trk": 0x20}
TCP_FLAG_BITS = {
    "fin": 0x001, "syn": 0x002, "rst": 0x004, "psh": 0x008, "ack": 0x010, "urg": 0x020,
    "ece": 0x040, "cwr": 0x080, "ns": 0x100,
}  # fmt: skip


def _proto_tlvs() -> dict[tuple[str, bool], bytes]:
    """eth_type (+ ip_proto) TLVs of each `Match.proto`, for IPv4 and IPv6 addresses."""
    out: dict[tuple[str, bool], bytes] = {}
    for v6 in (False, True):
        ip = ETH_TYPES["ipv6" if v6 else "ip"]
        out[("ip", v6)] = ETH_TYPE.tlv(ip)
        out[("ipv6", v6)] = ETH_TYPE.tlv(ETH_TYPES["ipv6"])
        out[("arp", v6)] = ETH_TYPE.tlv(ETH_TYPES["arp"])
        for name, num in IP_PROTOS.items():
            proto = 58 if v6 and name == "icmp" else num
            out[(name, v6)] = ETH_TYPE.tlv(ip) + IP_PROTO.tlv(proto)
    return out


def _mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


def _value(f: Field, text: str) -> int:
    """A field value as ovs-ofctl reads it: MAC, IP address or number."""
    if f.size == 6:
        return _mac(text)
    if f.size in (4, 16) and ("." in text or ":" in text):
        return int(ipaddress.ip_address(text))
    return int(text, 0)


_V4_MASKS = [(0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF for n in range(33)]


def _prefix(value: object) -> tuple[int, int | None, bool]:
    """(address, mask or None, is_ipv6) of an nw_src/nw_dst value."""
    if type(value) is str and ":" not in value:  # "10.0.0.0/8", "10.0.0.1": the common case
        addr, _, plen = value.partition("/")
        n = int(plen) if plen else 32
        a = int.from_bytes(socket.inet_pton(socket.AF_INET, addr), "big")
        if n == 32:
            return a, None, False
        mask = _V4_MASKS[n]
        return a & mask, mask, False
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return int(value), None, value.version == 6
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        net = value
    else:
        net = ipaddress.ip_network(str(value), strict=False)
    full = net.max_prefixlen == net.prefixlen
    return int(net.network_address), None if full else int(net.netmask), net.version == 6


def _ct_state(s: CtState) -> tuple[int, int]:
    value = mask = 0
    for name, bit in CT_BITS.items():
        v = getattr(s, name)
        if v is not None:
            mask |= bit
            if v:
                value |= bit
    return value, mask


@lru_cache(maxsize=256)
def _ct_state_tlv(s: CtState) -> bytes:
    return CT_STATE.tlv(*_ct_state(s))


def _tcp_flags(text: str) -> tuple[int, int]:
    value = mask = 0
    for sign, name in re.findall(r"([+-])([a-z]+)", text):
        bit = TCP_FLAG_BITS.get(name)
        if bit is None:
            raise EncodeError(f"unknown tcp flag {name!r}")
        mask |= bit
        if sign == "+":
            value |= bit
    return value, mask


def _bits(start: int, end: int) -> int:
    return ((1 << (end - start + 1)) - 1) << start


def _regs_tlvs(match_regs: Iterable[RegMatch]) -> bytes:
    """One TLV per register, the bits matched in it merged (in order of first appearance)."""
    regs: dict[int, tuple[int, int]] = {}
    for r in match_regs:
        v, mk = regs.get(r.reg, (0, 0))
        bits = _bits(r.start, r.end)
        regs[r.reg] = (v | ((r.value << r.start) & bits), mk | bits)
    return b"".join([reg_field(reg).tlv(v, mk) for reg, (v, mk) in regs.items()])


def encode_match_fields(m: Match) -> bytes:
    """The OXM/NXM TLVs of a match, prerequisites first (OVS checks them in order)."""
    out: list[bytes] = []
    if m.in_port is not None:
        out.append(IN_PORT.tlv(m.in_port))
    if m.dl_dst is not None:
        out.append(ETH_DST.tlv(_mac(m.dl_dst)))
    if m.dl_src is not None:
        out.append(ETH_SRC.tlv(_mac(m.dl_src)))
    proto = m.proto
    src = None if m.nw_src is None else _prefix(m.nw_src)
    dst = None if m.nw_dst is None else _prefix(m.nw_dst)
    ipv6 = proto == "ipv6" or (src is not None and src[2]) or (dst is not None and dst[2])
    if proto is not None:
        head = _PROTO_TLVS.get((proto, ipv6))
        if head is None:
            raise EncodeError(f"unknown protocol {proto!r}")
        out.append(head)
    if m.regs:
        out.append(_regs_tlvs(m.regs))
    if m.ct_state is not None:
        out.append(_ct_state_tlv(m.ct_state))
    if m.ct_mark is not None:
        out.append(CT_MARK.tlv(*m.ct_mark))
    if m.ct_label is not None:
        out.append(CT_LABEL.tlv(*m.ct_label))
    if m.conj_id is not None:
        out.append(CONJ_ID.tlv(m.conj_id))
    if m.tun_id is not None:
        out.append(TUN_ID.tlv(m.tun_id))
    if m.tun_dst is not None:
        out.append(TUN_IPV4_DST.tlv(*_prefix(m.tun_dst)[:2]))
    if src is not None:
        out.append((IPV6_SRC if src[2] else IPV4_SRC).tlv(src[0], src[1]))
    if dst is not None:
        out.append((IPV6_DST if dst[2] else IPV4_DST).tlv(dst[0], dst[1]))
    if m.arp_op is not None:
        out.append(ARP_OP.tlv(m.arp_op))
    if m.arp_spa is not None:
        out.append(ARP_SPA.tlv(*_prefix(m.arp_spa)[:2]))
    if m.arp_tpa is not None:
        out.append(ARP_TPA.tlv(*_prefix(m.arp_tpa)[:2]))
    if m.arp_sha is not None:
        out.append(ARP_SHA.tlv(_mac(m.arp_sha)))
    if m.tp_src is not None or m.tp_dst is not None:
        if proto not in TP_FIELDS:
            raise EncodeError(f"transport ports need tcp, udp or sctp, not {proto!r}")
        tp_src, tp_dst = TP_FIELDS[proto]
        if m.tp_src is not None:
            out.append(tp_src.tlv(m.tp_src))
        if m.tp_dst is not None:
            out.append(tp_dst.tlv(m.tp_dst, m.tp_dst_mask))
    if m.tcp_flags is not None:
        out.append(TCP_FLAGS.tlv(*_tcp_flags(m.tcp_flags)))
    if m.icmp_type is not None or m.icmp_code is not None:
        if proto != "icmp":
            raise EncodeError(f"icmp_type/icmp_code need icmp, not {proto!r}")
        if m.icmp_type is not None:
            out.append(ICMPV4_TYPE.tlv(m.icmp_type))
        if m.icmp_code is not None:
            out.append(ICMPV4_CODE.tlv(m.icmp_code))
    return b"".join(out)


_PROTO_TLVS = _proto_tlvs()


def _pad8(data: bytes) -> bytes:
    return data + bytes(-len(data) % 8)


def encode_match(m: Match) -> bytes:
    """``struct ofp_match`` (OXM type), padded to 8 bytes."""
    fields = encode_match_fields(m)
    return _pad8(struct.pack("!HH", 1, 4 + len(fields)) + fields)


# -- actions ----------------------------------------------------------------------------------
NX_VENDOR = 0x00002320
OFPAT_OUTPUT = 0
OFPAT_DEC_NW_TTL = 24
OFPAT_SET_FIELD = 25
OFPAT_COPY_FIELD = 28  # OpenFlow 1.5's move (NXAST_REG_MOVE is not valid in 1.5)
NXAST_RESUBMIT_TABLE = 14
NXAST_OUTPUT_REG = 15
NXAST_CONJUNCTION = 34
NXAST_CT = 35
NXAST_NAT = 36
NXAST_CT_CLEAR = 43
NXAST_LEARN = 16
OFPAT_GROUP = 22
NX_NAT_F_SRC = 1 << 0
NX_NAT_F_DST = 1 << 1
NX_NAT_RANGE_IPV4_MIN = 1 << 0
NX_NAT_RANGE_PROTO_MIN = 1 << 4
NX_LEARN_F_DELETE_LEARNED = 1 << 1
OFPIT_GOTO_TABLE = 1
OFPIT_APPLY_ACTIONS = 4


def _subfield(text: str) -> tuple[Field, int, int]:
    """``NXM_NX_REG6[0..31]`` -> (field, offset, n_bits)."""
    m = _SUBFIELD.match(text)
    if m is None or m.group(1) not in NXM_NAMES:
        raise EncodeError(f"unknown field {text!r}")
    f = NXM_NAMES[m.group(1)]
    if m.group(2) is None:
        return f, 0, f.size * 8
    start = int(m.group(2))
    end = int(m.group(3)) if m.group(3) is not None else start
    return f, start, end - start + 1


def _nx(subtype: int, body: bytes) -> bytes:
    length = 10 + len(body)
    return struct.pack("!HHIH", 0xFFFF, length, NX_VENDOR, subtype) + body


def _set_field(f: Field, value: int, mask: int | None = None) -> bytes:
    tlv = f.tlv(value, mask)
    return _pad8(struct.pack("!HH", OFPAT_SET_FIELD, (4 + len(tlv) + 7) // 8 * 8) + tlv)


def _output(a: Output) -> bytes:
    port = a.port
    if isinstance(port, str):
        port = PORTS[port.upper()] if not port.isdigit() else int(port)
    # To the controller: the whole packet (ovs-ofctl's `output:CONTROLLER` default).
    return _OUTPUT.pack(OFPAT_OUTPUT, 16, port, 0xFFFF if port == PORTS["CONTROLLER"] else 0)


def _load(a: LoadReg) -> bytes:
    bits = _bits(a.start, a.end)
    return _set_field(reg_field(a.reg), (a.value << a.start) & bits, bits)


def _setfield(a: SetField) -> bytes:
    f = SET_FIELDS.get(a.field)
    if f is None:
        raise EncodeError(f"set_field to unknown field {a.field!r}")
    return _set_field(f, _value(f, a.value))


def _move(a: Move) -> bytes:
    src, src_ofs, n_bits = _subfield(a.src)
    dst, dst_ofs, dst_bits = _subfield(a.dst)
    if n_bits != dst_bits:
        raise EncodeError(f"move {a.src}->{a.dst}: {n_bits} bits into {dst_bits}")
    return struct.pack(
        "!HHHHH2xII4x", OFPAT_COPY_FIELD, 24, n_bits, src_ofs, dst_ofs,
        src.header(), dst.header(),
    )  # fmt: skip


def _ct(a: Ct) -> bytes:
    nested = b""
    if a.nat_dst is not None:
        ip, port = a.nat_dst
        flags = NX_NAT_RANGE_IPV4_MIN | NX_NAT_RANGE_PROTO_MIN
        nat = struct.pack("!2xHH", NX_NAT_F_DST, flags) + socket.inet_aton(ip)
        nat += struct.pack("!H", port)
        nested += _nx(NXAST_NAT, nat + bytes(-(10 + len(nat)) % 8))
    elif a.nat_src is not None:
        nat = struct.pack("!2xHH", NX_NAT_F_SRC, NX_NAT_RANGE_IPV4_MIN)
        nat += socket.inet_aton(a.nat_src)
        nested += _nx(NXAST_NAT, nat + bytes(-(10 + len(nat)) % 8))
    elif a.nat:
        nested += _nx(NXAST_NAT, struct.pack("!2xHH", 0, 0))
    nested += encode_actions(a.exec_)
    table = 0xFF if a.table is None else a.table
    body = struct.pack("!HIHB3xH", int(a.commit), 0, a.zone or 0, table, 0)
    return _nx(NXAST_CT, body + nested)


_LEARN_FIELDS = {
    "NXM_OF_ETH_TYPE": Field(NXM0, 3, 2),
    "NXM_OF_IP_PROTO": Field(NXM0, 6, 1),
    "NXM_OF_TCP_DST": Field(NXM0, 10, 2),
    "NXM_OF_UDP_DST": Field(NXM0, 12, 2),
    "OXM_OF_SCTP_DST": TP_FIELDS["sctp"][1],
}


def _learn_field(text: str) -> tuple[Field, int, int]:
    name = text.split("[", 1)[0]
    f = _LEARN_FIELDS.get(name)
    if f is not None:
        return f, 0, f.size * 8
    return _subfield(text)


def _learn(a: Learn) -> bytes:
    body = struct.pack(
        "!HHHQHBxHH", a.idle_timeout, a.hard_timeout, a.priority, a.cookie,
        NX_LEARN_F_DELETE_LEARNED if a.delete_learned else 0, a.table, 0, 0,
    )  # fmt: skip
    specs = b""
    for f, value in ((_LEARN_FIELDS["NXM_OF_ETH_TYPE"], a.eth_type),
                     (_LEARN_FIELDS["NXM_OF_IP_PROTO"], a.ip_proto)):  # fmt: skip
        n_bits = f.size * 8
        width = (n_bits + 15) // 16 * 2
        specs += struct.pack("!H", (1 << 13) | n_bits) + value.to_bytes(width, "big")
        specs += struct.pack("!IH", f.header(), 0)
    for spec in a.specs:
        dst, dst_ofs, n_bits = _learn_field(spec.dst)
        if spec.value is not None:  # immediate load
            width = (n_bits + 15) // 16 * 2
            specs += struct.pack("!H", (1 << 13) | (1 << 11) | n_bits)
            specs += spec.value.to_bytes(width, "big") + struct.pack("!IH", dst.header(), dst_ofs)
            continue
        src, src_ofs, src_bits = _learn_field(spec.src or spec.dst)
        if src_bits != n_bits:
            raise EncodeError(f"learn {spec}: {src_bits} bits into {n_bits}")
        dst_type = 1 if spec.kind == "load" else 0
        specs += struct.pack("!HIHIH", (dst_type << 11) | n_bits, src.header(), src_ofs,
                             dst.header(), dst_ofs)  # fmt: skip
    body += specs
    return _nx(NXAST_LEARN, body + bytes(-(10 + len(body)) % 8))


_OUTPUT = struct.Struct("!HHIH6x")
_CONJ = struct.Struct("!HHIHBBI")
_RESUBMIT = struct.Struct("!HHIHHB3x")
_NORMAL = _OUTPUT.pack(OFPAT_OUTPUT, 16, PORTS["NORMAL"], 0)
_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    Conjunction: lambda a: _CONJ.pack(
        0xFFFF, 16, NX_VENDOR, NXAST_CONJUNCTION, a.clause - 1, a.n_clauses, a.conj_id
    ),
    Output: _output,
    Normal: lambda a: _NORMAL,
    OutputReg: lambda a: _nx(
        NXAST_OUTPUT_REG, struct.pack("!HIH6x", 31, reg_field(a.reg).header(), 0)
    ),
    Resubmit: lambda a: _RESUBMIT.pack(
        0xFFFF, 16, NX_VENDOR, NXAST_RESUBMIT_TABLE, 0xFFF8, a.table
    ),
    LoadReg: _load,
    SetField: _setfield,
    Move: _move,
    DecTTL: lambda a: struct.pack("!HH4x", OFPAT_DEC_NW_TTL, 8),
    CtClear: lambda a: _nx(NXAST_CT_CLEAR, bytes(6)),
    Ct: _ct,
    Drop: lambda a: b"",
    OutputGroup: lambda a: struct.pack("!HHI", OFPAT_GROUP, 8, a.group_id),
    Learn: _learn,
}


def encode_action(a: Action) -> bytes:
    enc = _ENCODERS.get(type(a))
    if enc is None:
        raise EncodeError(f"no OpenFlow encoding for {a!r}")
    return enc(a)


def encode_actions(actions: Iterable[Action]) -> bytes:
    encoders = _ENCODERS
    try:
        return b"".join([encoders[type(a)](a) for a in actions])
    except KeyError:
        for a in actions:
            encode_action(a)  # raises EncodeError naming the action
        raise


def encode_instructions(actions: Sequence[Action]) -> bytes:
    """Apply-actions (if any) then goto_table (if any): what OVS expects."""
    goto: GotoTable | None = None
    apply: Sequence[Action] = actions
    if actions and type(actions[-1]) is GotoTable:  # the usual place
        goto = actions[-1]
        apply = actions[:-1]
    if GotoTable in map(type, apply):
        goto = next(a for a in reversed(apply) if isinstance(a, GotoTable))
        apply = [a for a in apply if not isinstance(a, GotoTable)]
    body = encode_actions(apply)
    n = len(body)
    if n > MAX_MESSAGE - 128:
        raise EncodeError(f"{n} bytes of actions: exceeds one OpenFlow message")
    out = _APPLY.pack(OFPIT_APPLY_ACTIONS, 8 + n) + body if n else b""
    if goto is not None:
        out += _GOTO[goto.table]
    return out


_APPLY = struct.Struct("!HH4x")
_GOTO = [struct.pack("!HHB3x", OFPIT_GOTO_TABLE, 8, table) for table in range(256)]


# -- messages ---------------------------------------------------------------------------------
def header(msg_type: int, length: int, xid: int) -> bytes:
    return _HDR.pack(OFP_VERSION, msg_type, length, xid)


def hello(xid: int = 0) -> bytes:
    # one version-bitmap element announcing only OpenFlow 1.5
    elem = struct.pack("!HHI", 1, 8, 1 << OFP_VERSION)
    return header(MsgType.HELLO, 8 + len(elem), xid) + elem


def echo_reply(xid: int, payload: bytes = b"") -> bytes:
    return header(MsgType.ECHO_REPLY, 8 + len(payload), xid) + payload


def barrier(xid: int) -> bytes:
    return header(MsgType.BARRIER_REQUEST, 8, xid)


def bundle_control(xid: int, bundle_id: int, ctrl: BundleCtrl) -> bytes:
    return _BUNDLE_CTRL.pack(
        OFP_VERSION, MsgType.BUNDLE_CONTROL, 16, xid, bundle_id, ctrl, BUNDLE_FLAGS
    )


def bundle_add(xid: int, bundle_id: int, inner: bytes) -> bytes:
    """Wrap one message; its xid must be the bundle-add's (OVS reports errors under it)."""
    length = 16 + len(inner)
    if length > MAX_MESSAGE:
        raise EncodeError(f"message of {len(inner)} bytes does not fit a bundle")
    return (
        _BUNDLE_ADD.pack(
            OFP_VERSION, MsgType.BUNDLE_ADD_MESSAGE, length, xid, bundle_id, 0, BUNDLE_FLAGS
        )
        + inner
    )


def generic_flow_mod(flow: Flow, command: FlowModCommand, xid: int) -> bytes:
    """The flow mod of one flow, field by field: the reference `FlowEncoder` must equal."""
    match = encode_match(flow.match)
    if command is FlowModCommand.DELETE_STRICT:
        instructions = b""
        cookie = 0
    else:
        instructions = encode_instructions(flow.actions)
        cookie = flow.cookie if command is FlowModCommand.ADD else 0
    length = _FLOW_MOD.size + len(match) + len(instructions)
    if length > MAX_MESSAGE:
        raise _too_big(flow, length)
    fixed = _FLOW_MOD.pack(
        OFP_VERSION, MsgType.FLOW_MOD, length, xid,
        cookie, 0, flow.table, command, 0, 0, flow.priority,
        NO_BUFFER, PORT_ANY, GROUP_ANY, 0, 0,
    )  # fmt: skip
    return fixed + match + instructions


def _too_big(flow: Flow, length: int) -> EncodeError:
    return EncodeError(
        f"flow of {length} bytes exceeds one OpenFlow message (table={flow.table}, "
        f"priority={flow.priority}, {len(flow.actions)} actions)"
    )


# -- the bulk path: encoders compiled per match shape and per action signature ----------------
# A policy set is tens of thousands of flows of a handful of shapes (clause: ip + nw_src ->
# conjunction; action: ip + conj_id -> load + goto; metric: ip + ct_state + ct_label -> goto).
# `FlowEncoder` compiles, once per shape (the set of match fields present) and once per action
# signature (the tuple of action types), a function that packs just those fields, and wraps each
# flow mod in its bundle-add with one struct. Values the compiled parts do not handle (IPv6
# addresses, unusual fields) take the generic encoders above; the unit tests check that both
# give the same bytes for random flows.
MatchEncoder = Callable[[Match], bytes]
InstructionsEncoder = Callable[[Sequence[Action]], bytes]
# bundle-add header (version|type, length, xid, bundle id, flags) + the flow mod's fixed part
# (version|type, length, xid, cookie, table, command, priority, buffer, out_port, out_group)
_ADD_FLOW_MOD = struct.Struct("!HHII2xHHHIQ8xBB4xHIII4x")
_FLOW_MOD_ONLY = struct.Struct("!HHIQ8xBB4xHIII4x")
_ADD_TYPE = (OFP_VERSION << 8) | MsgType.BUNDLE_ADD_MESSAGE
_FLOW_MOD_TYPE = (OFP_VERSION << 8) | MsgType.FLOW_MOD
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
_U32_PAIR = struct.Struct("!II")
_OXM_HDRS = [struct.pack("!HH", 1, 4 + n) for n in range(512)]
_OXM_PADS = [bytes(-(4 + n) % 8) for n in range(8)]


def _oxm(body: bytes) -> bytes:
    """``struct ofp_match`` around packed TLVs, padded to 8 bytes."""
    n = len(body)
    head = _OXM_HDRS[n] if n < 512 else struct.pack("!HH", 1, 4 + n)
    return head + body + _OXM_PADS[n % 8]


# A match part returns the TLV bytes of its field(s), b"" when unset, or None when the value
# is not one the compiled part handles: then the whole match takes the generic encoder.
_Part = Callable[[Match], "bytes | None"]
_PROTO4 = {name: tlv for (name, v6), tlv in _proto_tlvs().items() if not v6}
_IN_PORT_HDR = IN_PORT.hdr
_CONJ_ID_HDR = CONJ_ID.hdr
_V4 = ipaddress.IPv4Address
_V4NET = ipaddress.IPv4Network


def _part_in_port(m: Match) -> bytes | None:
    v = m.in_port
    return b"" if v is None else _IN_PORT_HDR + _U32.pack(v & 0xFFFFFFFF)


def _part_proto(m: Match) -> bytes | None:
    p = m.proto
    # IPv6 addresses are not handled by the compiled address parts, so IPv4 here
    return b"" if p is None else _PROTO4.get(p)


def _part_regs(m: Match) -> bytes | None:
    regs = m.regs
    if len(regs) == 1:
        r = regs[0]
        if r.start == 0 and r.end == 31 and 0 <= r.reg <= 15:
            return _REG_HDRS[r.reg] + _U32.pack(r.value & 0xFFFFFFFF)
    return _regs_tlvs(regs)


_REG_HDRS = [f.hdr for f in REGS]
_CT_STATE_TLVS: dict[int, tuple[CtState, bytes]] = {}


def _part_ct_state(m: Match) -> bytes | None:
    s = m.ct_state
    if s is None:
        return b""
    got = _CT_STATE_TLVS.get(id(s))  # the few CtState values are shared objects
    if got is None or got[0] is not s:
        if len(_CT_STATE_TLVS) >= 1024:
            _CT_STATE_TLVS.clear()
        got = _CT_STATE_TLVS[id(s)] = (s, CT_STATE.tlv(*_ct_state(s)))
    return got[1]


def _part_ct_mark(m: Match) -> bytes | None:
    v = m.ct_mark
    return b"" if v is None else CT_MARK.tlv(*v)


def _part_ct_label(m: Match) -> bytes | None:
    v = m.ct_label
    return b"" if v is None else CT_LABEL.tlv(*v)


def _part_conj_id(m: Match) -> bytes | None:
    v = m.conj_id
    return b"" if v is None else _CONJ_ID_HDR + _U32.pack(v & 0xFFFFFFFF)


def _address_part(field: Field) -> _Part:
    hdr, hdr_masked = field.hdr, field.hdr_masked
    name = "nw_src" if field is IPV4_SRC else "nw_dst"
    pair = _U32_PAIR.pack
    one = _U32.pack

    def part(m: Match) -> bytes | None:
        v = getattr(m, name)
        t = type(v)
        if t is _V4NET:
            if v.prefixlen == 32:
                return hdr + one(int(v.network_address))
            return hdr_masked + pair(int(v.network_address), int(v.netmask))
        if t is _V4:
            return hdr + one(int(v))
        return b"" if v is None else None

    return part


def _part_tp(m: Match) -> bytes | None:
    src, dst = m.tp_src, m.tp_dst
    if src is None and dst is None:
        return b""
    fields = TP_FIELDS.get(m.proto)  # type: ignore[arg-type]
    if fields is None:
        return None  # the generic encoder names the error
    out = b"" if src is None else fields[0].tlv(src)
    return out if dst is None else out + fields[1].tlv(dst, m.tp_dst_mask)


# the compiled parts, in the generic encoder's order (OVS checks prerequisites in order)
_PARTS: dict[str, _Part] = {
    "in_port": _part_in_port,
    "proto": _part_proto,
    "regs": _part_regs,
    "ct_state": _part_ct_state,
    "ct_mark": _part_ct_mark,
    "ct_label": _part_ct_label,
    "conj_id": _part_conj_id,
    "nw_src": _address_part(IPV4_SRC),
    "nw_dst": _address_part(IPV4_DST),
    "tp_src": _part_tp,
    "tp_dst": _part_tp,
    "tp_dst_mask": _part_tp,
}


def compile_match(names: Iterable[str]) -> MatchEncoder:
    """The encoder of matches whose set fields are among ``names`` (underscore names are not
    fields): compiled parts if every field has one, else the generic `encode_match`."""
    wanted = {n for n in names if not n.startswith("_")}
    if not wanted <= _PARTS.keys():
        return encode_match
    parts: list[_Part] = []
    for name, part in _PARTS.items():
        if name in wanted and part not in parts:
            parts.append(part)
    if not parts:
        empty = _oxm(b"")
        return lambda m: empty
    if len(parts) == 1:
        (p1,) = parts

        def one(m: Match) -> bytes:
            b1 = p1(m)
            if b1 is None:
                return encode_match(m)
            return _oxm(b1)

        return one
    if len(parts) == 2:
        p1, p2 = parts

        def two(m: Match) -> bytes:
            b1 = p1(m)
            b2 = p2(m)
            if b1 is None or b2 is None:
                return encode_match(m)
            return _oxm(b1 + b2)

        return two

    def many(m: Match) -> bytes:
        out = []
        for p in parts:
            b = p(m)
            if b is None:
                return encode_match(m)
            out.append(b)
        return _oxm(b"".join(out))

    return many


_SET_REG_FULL = [struct.pack("!HH", OFPAT_SET_FIELD, 16) + f.hdr for f in REGS]
_U32_PAD4 = struct.Struct("!I4x")
_APPLY_CONJ = struct.Struct("!HH4xHHIHBBI")


def _load_fast(a: LoadReg) -> bytes:
    if a.start == 0 and a.end == 31 and 0 <= a.reg <= 15:  # a whole register: no mask
        return _SET_REG_FULL[a.reg] + _U32_PAD4.pack(a.value & 0xFFFFFFFF)
    return _load(a)


_FAST_ACTIONS: dict[type, Callable[[Any], bytes]] = {**_ENCODERS, LoadReg: _load_fast}


def compile_instructions(signature: tuple[type, ...]) -> InstructionsEncoder:
    """The encoder of action tuples whose types are ``signature`` (`encode_instructions`'s
    layout: apply-actions without the goto, then the goto)."""
    n = len(signature)
    goto: int | None = None
    apply = list(range(n))
    if n and signature[-1] is GotoTable:
        goto, apply = n - 1, apply[:-1]
    gotos = [i for i in apply if issubclass(signature[i], GotoTable)]
    if gotos:
        goto = gotos[-1]
        apply = [i for i in apply if i not in gotos]
    if any(signature[i] not in _FAST_ACTIONS for i in apply):
        return encode_instructions  # raises EncodeError naming the action
    if signature == (Conjunction,):
        pack = _APPLY_CONJ.pack
        return lambda acts: pack(
            OFPIT_APPLY_ACTIONS, 24, 0xFFFF, 16, NX_VENDOR, NXAST_CONJUNCTION,
            acts[0].clause - 1, acts[0].n_clauses, acts[0].conj_id,  # type: ignore[attr-defined]
        )  # fmt: skip
    encoders = [_FAST_ACTIONS[signature[i]] for i in apply]
    same = encoders[0] if apply == list(range(len(apply))) and len(set(encoders)) == 1 else None
    gotos_table = _GOTO
    limit = MAX_MESSAGE - 128

    def instructions(acts: Sequence[Action]) -> bytes:
        if same is not None:
            body = b"".join(map(same, acts[: len(apply)]))
        else:
            body = b"".join([e(acts[i]) for e, i in zip(encoders, apply, strict=True)])
        size = len(body)
        if size > limit:
            raise EncodeError(f"{size} bytes of actions: exceeds one OpenFlow message")
        out = _APPLY.pack(OFPIT_APPLY_ACTIONS, 8 + size) + body if size else b""
        if goto is not None:
            out += gotos_table[acts[goto].table]  # type: ignore[attr-defined]
        return out

    return instructions


_CONJ_ACTION = struct.Struct("!10sBBI")
_CONJ_ACTION_HEAD = struct.pack("!HHIH", 0xFFFF, 16, NX_VENDOR, NXAST_CONJUNCTION)
_ONLY_CONJUNCTIONS = {Conjunction}


def long_instructions(actions: Sequence[Action]) -> bytes:
    """The instructions of an action tuple too long to have its signature compiled and cached
    (`MAX_SIGNATURE`): a shared clause flow's conjunctions, up to thousands of them, packed
    in one comprehension; any other mix compiled for this call."""
    if set(map(type, actions)) != _ONLY_CONJUNCTIONS:
        return compile_instructions(tuple(map(type, actions)))(actions)
    pack, head = _CONJ_ACTION.pack, _CONJ_ACTION_HEAD
    acts: Any = actions
    body = b"".join([pack(head, a.clause - 1, a.n_clauses, a.conj_id) for a in acts])
    size = len(body)
    if size > MAX_MESSAGE - 128:
        raise EncodeError(f"{size} bytes of actions: exceeds one OpenFlow message")
    return _APPLY.pack(OFPIT_APPLY_ACTIONS, 8 + size) + body


# Action tuples longer than this (a clause flow shared by many conjunctions: any length up to
# thousands, changing as policies come and go) are encoded without caching their signature, so
# the caches stay small in a long-running agent.
MAX_SIGNATURE = 16
MAX_CACHED = 4096  # compiled encoders per cache (shapes in use are a few dozen)


def _cache(cache: dict[Any, Any], key: object, value: Any) -> Any:
    if len(cache) >= MAX_CACHED:
        cache.clear()
    cache[key] = value
    return value


def _signature(actions: Sequence[Action]) -> tuple[type, ...] | None:
    n = len(actions)
    if n == 1:
        return (type(actions[0]),)
    return tuple(map(type, actions)) if n <= MAX_SIGNATURE else None


class FlowEncoder:
    """Flow mods through compiled encoders, one per match shape and per action signature.

    A match's shape is the names in its ``__dict__`` (a `Match` stores only the fields that are
    set); parts of a shape still skip unset fields, so any `Match` encodes right."""

    def __init__(self) -> None:
        self._matches: dict[tuple[str, ...], MatchEncoder] = {}
        self._instructions: dict[tuple[type, ...], InstructionsEncoder] = {}
        self._templates: dict[tuple[tuple[str, ...], tuple[type, ...]], FlowTemplate | None] = {}

    def match(self, flow: Flow) -> bytes:
        m = flow.match
        shape = tuple(getattr(m, "__dict__", _ALL_FIELDS))
        enc = self._matches.get(shape)
        if enc is None:
            enc = _cache(self._matches, shape, compile_match(shape))
        return enc(m)

    def instructions(self, actions: Sequence[Action]) -> bytes:
        signature = _signature(actions)
        if signature is None:
            return long_instructions(actions)
        enc = self._instructions.get(signature)
        if enc is None:
            enc = _cache(self._instructions, signature, compile_instructions(signature))
        return enc(actions)

    def flow_mod(self, flow: Flow, command: FlowModCommand, xid: int) -> bytes:
        signature = _signature(flow.actions)
        if command is FlowModCommand.ADD and signature is not None:
            key = (tuple(getattr(flow.match, "__dict__", _ALL_FIELDS)), signature)
            template = self._templates.get(key, _UNKNOWN)
            if template is _UNKNOWN:
                template = _cache(self._templates, key, flow_template(*key))
            if template is not None:
                msg: bytes | None = template(flow, 0, xid)
                if msg is not None:
                    return msg[16:]  # the flow mod inside the bundle-add
        match = self.match(flow)
        if command is FlowModCommand.DELETE_STRICT:
            instructions = b""
            cookie = 0
        else:
            instructions = self.instructions(flow.actions)
            cookie = flow.cookie if command is FlowModCommand.ADD else 0
        length = _FLOW_MOD.size + len(match) + len(instructions)
        if length > MAX_MESSAGE:
            raise _too_big(flow, length)
        fixed = _FLOW_MOD_ONLY.pack(
            _FLOW_MOD_TYPE, length, xid, cookie, flow.table, command, flow.priority,
            NO_BUFFER, PORT_ANY, GROUP_ANY,
        )  # fmt: skip
        return fixed + match + instructions

    def bundle_adds(
        self, flows: Iterable[Flow], command: FlowModCommand, bundle_id: int, xid: int
    ) -> bytes:
        """The ``BUNDLE_ADD_MESSAGE`` of each flow's flow mod, xids ``xid, xid + 1, ...``, as
        one byte string (what `bundle_add` around `flow_mod` gives, flow after flow).
        Raises `EncodeError` for a flow that does not fit one message."""
        matches = self._matches
        instr = self._instructions
        templates = self._templates
        pack = _ADD_FLOW_MOD.pack
        fixed = _FLOW_MOD.size
        delete = command is FlowModCommand.DELETE_STRICT
        add = command is FlowModCommand.ADD
        out: list[bytes] = []
        append = out.append
        by_action, by_actions, match_type = _BY_ACTION, _BY_ACTIONS, Match
        for flow in flows:
            m = flow.match
            acts = flow.actions
            n = len(acts)
            if add and type(m) is match_type:  # (a template reads its __dict__)
                if n == 1:
                    fast = by_action.get(type(acts[0]))
                elif n == 2:
                    fast = by_actions.get((type(acts[0]), type(acts[1])))
                else:
                    fast = None
                if fast is not None:
                    msg = fast(flow, bundle_id, xid)
                    if msg is not None:
                        append(msg)
                        xid += 1
                        continue
            shape = tuple(getattr(m, "__dict__", _ALL_FIELDS))
            if n == 1:
                signature: tuple[type, ...] | None = (type(acts[0]),)
            else:
                signature = tuple(map(type, acts)) if n <= MAX_SIGNATURE else None
            if add and signature is not None:
                key = (shape, signature)
                template = templates.get(key, _UNKNOWN)
                if template is _UNKNOWN:
                    template = _cache(templates, key, flow_template(shape, signature))
                if template is not None:
                    msg = template(flow, bundle_id, xid)
                    if msg is not None:
                        append(msg)
                        xid += 1
                        continue
            menc = matches.get(shape)
            if menc is None:
                menc = _cache(matches, shape, compile_match(shape))
            mb = menc(m)
            if delete:
                ib = b""
                cookie = 0
            else:
                if signature is None:  # long: not cached
                    ib = long_instructions(acts)
                else:
                    ienc = instr.get(signature)
                    if ienc is None:
                        ienc = _cache(instr, signature, compile_instructions(signature))
                    ib = ienc(acts)
                cookie = flow.cookie if add else 0
            length = fixed + len(mb) + len(ib)
            if length > MAX_MESSAGE - 16:
                if length > MAX_MESSAGE:
                    raise _too_big(flow, length)
                raise EncodeError(f"message of {length} bytes does not fit a bundle")
            head = pack(
                _ADD_TYPE, length + 16, xid, bundle_id, BUNDLE_FLAGS,
                _FLOW_MOD_TYPE, length, xid, cookie, flow.table, command, flow.priority,
                NO_BUFFER, PORT_ANY, GROUP_ANY,
            )  # fmt: skip
            append(head + mb + ib)
            xid += 1
        return b"".join(out)


# -- templates: whole bundle-add messages of a policy set's three flow shapes -----------------
# A template packs the entire message of a flow add (bundle-add header, flow mod, match,
# instructions) with ONE struct, its integers being all that differs between flows; a value
# outside the template's layout (another protocol, an address form, a partial register...)
# returns None and the flow takes the compiled parts above.
FlowTemplate = Callable[[Flow, int, int], "bytes | None"]  # (flow, bundle id, xid)
_UNKNOWN: Any = object()
_ETH_IP = ETH_TYPE.tlv(ETH_TYPES["ip"])
_IP = "ip"
_FULL128 = (1 << 128) - 1


# The constant runs of a template's message are packed once, as byte strings: each template
# packs its few variable integers and four to six constant strings (a third of the arguments
# the layout has), so that struct does less per flow.
# head: bundle-add header (type, length | xid | bundle id | pad, flags, flow mod type and
# length) | xid | cookie | cookie mask | table, command ADD (0), timeouts | priority | buffer,
# out port, out group, flags, importance
_T_HEAD = "!4sII8sIQ8xB5xH16s"
_T_TAIL = _U32.pack(NO_BUFFER) + _U32.pack(PORT_ANY) + _U32.pack(GROUP_ANY) + bytes(4)


def _t_consts(size: int) -> tuple[bytes, bytes]:
    """The head's two constant runs before the xid, for a message of `size` bytes."""
    return (
        struct.pack("!HH", _ADD_TYPE, size),
        struct.pack("!2xHHH", BUNDLE_FLAGS, _FLOW_MOD_TYPE, size - 16),
    )


# clause flows: ip, nw_src or nw_dst (a prefix or an address) -> conjunction
_CLAUSE_NET = struct.Struct(_T_HEAD + "14sII2x" + "18sBBI")
_CLAUSE_HOST = struct.Struct(_T_HEAD + "14sI6x" + "18sBBI")
_APPLY_CONJ_HEAD = struct.pack(
    "!HH4xHHIH", OFPIT_APPLY_ACTIONS, 24, 0xFFFF, 16, NX_VENDOR, NXAST_CONJUNCTION
)
# conjunction action flows: ip, conj_id -> load a whole register, goto_table
_ACTION = struct.Struct(_T_HEAD + "14sI6x" + "16sI4x" + "4sB3x")
_GOTO_HEAD = struct.pack("!HH", OFPIT_GOTO_TABLE, 8)
# apply-actions header and set_field header of each whole register
_LOAD_HEADS = [
    struct.pack("!HH4xHH", OFPIT_APPLY_ACTIONS, 24, OFPAT_SET_FIELD, 16) + h for h in _REG_HDRS
]
# metric flows: ip, ct_state, ct_label (masked) -> goto_table
_METRIC = struct.Struct(_T_HEAD + "10s16s16s16s6x" + "4sB3x")


def _fast_ipv4_hold() -> bool:
    """`ipaddress` keeps an IPv4 value's integer in ``_ip`` and a network's prefix length in
    ``_prefixlen`` (read directly by the clause template: the public ``int()`` and
    ``prefixlen`` are Python-level calls); checked here, else the public ones are used."""
    try:
        net = ipaddress.IPv4Network("10.1.128.0/17")
        addr = ipaddress.IPv4Address("192.0.2.7")
        return bool(
            net._prefixlen == net.prefixlen  # type: ignore[attr-defined]
            and net.network_address._ip == int(net.network_address)  # type: ignore[attr-defined]
            and addr._ip == int(addr)  # type: ignore[attr-defined]
        )
    except Exception:
        return False


_FAST_IPV4 = _fast_ipv4_hold()


def _clause_template() -> FlowTemplate:
    net_size, host_size = _CLAUSE_NET.size, _CLAUSE_HOST.size
    pack_net, pack_host = _CLAUSE_NET.pack, _CLAUSE_HOST.pack
    net_a, net_b = _t_consts(net_size)
    host_a, host_b = _t_consts(host_size)
    src_net = struct.pack("!HH6s4s", 1, 22, _ETH_IP, IPV4_SRC.hdr_masked)
    src_host = struct.pack("!HH6s4s", 1, 18, _ETH_IP, IPV4_SRC.hdr)
    dst_net = struct.pack("!HH6s4s", 1, 22, _ETH_IP, IPV4_DST.hdr_masked)
    dst_host = struct.pack("!HH6s4s", 1, 18, _ETH_IP, IPV4_DST.hdr)
    tail, conj, masks, v4net, v4, ip = _T_TAIL, _APPLY_CONJ_HEAD, _V4_MASKS, _V4NET, _V4, _IP
    fast = _FAST_IPV4

    def clause(flow: Flow, bundle_id: int, xid: int) -> bytes | None:
        # exactly ip + nw_src or nw_dst (+ the cached hash), else not this template's
        d = flow.match.__dict__
        if len(d) != 3 or d.get("proto") != ip or "_hash" not in d:
            return None
        v: Any = d.get("nw_src")
        if v is not None:
            net_match, host_match = src_net, src_host
        else:
            v = d.get("nw_dst")
            if v is None:
                return None
            net_match, host_match = dst_net, dst_host
        a: Any = flow.actions[0]
        t = type(v)
        if t is v4net:
            plen = v._prefixlen if fast else v.prefixlen
            if plen == 32:
                return None
            mask = masks[plen]
            addr = v.network_address._ip if fast else int(v.network_address)
            return pack_net(
                net_a, xid, bundle_id, net_b, xid, flow.cookie, flow.table, flow.priority,
                tail, net_match, addr & mask, mask,
                conj, a.clause - 1, a.n_clauses, a.conj_id,
            )  # fmt: skip
        if t is v4:
            return pack_host(
                host_a, xid, bundle_id, host_b, xid, flow.cookie, flow.table, flow.priority,
                tail, host_match, v._ip if fast else int(v),
                conj, a.clause - 1, a.n_clauses, a.conj_id,
            )  # fmt: skip
        return None

    return clause


def _action_template() -> FlowTemplate:
    size = _ACTION.size
    pack = _ACTION.pack
    head_a, head_b = _t_consts(size)
    match = struct.pack("!HH6s4s", 1, 18, _ETH_IP, _CONJ_ID_HDR)
    tail, loads, goto_head, ip = _T_TAIL, _LOAD_HEADS, _GOTO_HEAD, _IP

    def action(flow: Flow, bundle_id: int, xid: int) -> bytes | None:
        # exactly ip + conj_id (+ the cached hash), else not this template's
        d = flow.match.__dict__
        conj_id = d.get("conj_id")
        if len(d) != 3 or conj_id is None or "_hash" not in d:
            return None
        load, goto = flow.actions
        reg = load.reg  # type: ignore[attr-defined]
        table = goto.table  # type: ignore[attr-defined]
        if (
            d.get("proto") != ip
            or load.start != 0  # type: ignore[attr-defined]
            or load.end != 31  # type: ignore[attr-defined]
            or not 0 <= reg <= 15
            or not 0 <= table <= 255
        ):
            return None
        return pack(
            head_a, xid, bundle_id, head_b, xid, flow.cookie, flow.table, flow.priority,
            tail, match, conj_id & 0xFFFFFFFF,
            loads[reg], load.value & 0xFFFFFFFF, goto_head, table,  # type: ignore[attr-defined]
        )  # fmt: skip

    return action


def _metric_template() -> FlowTemplate:
    size = _METRIC.size
    pack = _METRIC.pack
    head_a, head_b = _t_consts(size)
    match = struct.pack("!HH6s", 1, 58, _ETH_IP)
    label_hdr = CT_LABEL.hdr_masked
    tail, goto_head, ip, full = _T_TAIL, _GOTO_HEAD, _IP, _FULL128
    # ct_state TLV + ct_label header of each CtState (the few values are shared objects), and
    # the bytes of the few label masks in use
    states: dict[int, tuple[CtState, bytes]] = {}
    masks: dict[int, bytes] = {}

    def metric(flow: Flow, bundle_id: int, xid: int) -> bytes | None:
        # exactly ip + ct_state + ct_label (+ the cached hash), else not this template's
        d = flow.match.__dict__
        label = d.get("ct_label")
        s = d.get("ct_state")
        if len(d) != 4 or label is None or s is None or "_hash" not in d:
            return None
        value, mask = label
        goto: Any = flow.actions[0]
        table = goto.table
        if d.get("proto") != ip or mask & full == full or not 0 <= table <= 255:
            return None
        got = states.get(id(s))
        if got is None or got[0] is not s:
            if len(states) >= 64:
                states.clear()
            got = states[id(s)] = (s, CT_STATE.tlv(*_ct_state(s)) + label_hdr)
        mask_bytes = masks.get(mask)
        if mask_bytes is None:
            if len(masks) >= 64:
                masks.clear()
            mask_bytes = masks[mask] = (mask & full).to_bytes(16, "big")
        return pack(
            head_a, xid, bundle_id, head_b, xid, flow.cookie, flow.table, flow.priority,
            tail, match, got[1], (value & mask & full).to_bytes(16, "big"), mask_bytes,
            goto_head, table,
        )  # fmt: skip

    return metric


# Each template checks the match's exact shape itself (the set fields, read from its
# ``__dict__``), so `FlowEncoder.bundle_adds` picks one by the action types alone, before it
# works out the match's shape for the compiled parts (half the cost of a template flow).
_CLAUSE_T, _ACTION_T, _METRIC_T = _clause_template(), _action_template(), _metric_template()
_TEMPLATES: dict[tuple[frozenset[str], tuple[type, ...]], FlowTemplate] = {
    (frozenset({"proto", "nw_src"}), (Conjunction,)): _CLAUSE_T,
    (frozenset({"proto", "nw_dst"}), (Conjunction,)): _CLAUSE_T,
    (frozenset({"proto", "conj_id"}), (LoadReg, GotoTable)): _ACTION_T,
    (frozenset({"proto", "ct_state", "ct_label"}), (GotoTable,)): _METRIC_T,
}
# by the type of a flow's only action, or of its two
_BY_ACTION: dict[type, FlowTemplate] = {Conjunction: _CLAUSE_T, GotoTable: _METRIC_T}
_BY_ACTIONS: dict[tuple[type, type], FlowTemplate] = {(LoadReg, GotoTable): _ACTION_T}


def flow_template(shape: Iterable[str], signature: tuple[type, ...]) -> FlowTemplate | None:
    """The template for adds of flows with these match fields and action types, if any."""
    fields = frozenset(n for n in shape if not n.startswith("_"))
    return _TEMPLATES.get((fields, signature))


# a value without __dict__ (another representation of Match): every field is looked at
_ALL_FIELDS = tuple(f.name for f in dataclasses.fields(Match))


# -- groups -----------------------------------------------------------------------------------
class GroupCommand(IntEnum):
    ADD = 0
    MODIFY = 1
    DELETE = 2
    ADD_OR_MOD = 0x8000  # Open vSwitch extension (ovs-ofctl's add_or_mod)


OFPGBP_WEIGHT = 0
OFPG_BUCKET_ALL = 0xFFFFFFFF


def group_mod(group: Group, command: GroupCommand, xid: int) -> bytes:
    """OpenFlow 1.5 ``ofp_group_mod`` with buckets numbered 0.. and weights as properties."""
    buckets = b""
    if command is not GroupCommand.DELETE:
        for i, b in enumerate(group.buckets):
            actions = encode_actions(b.actions)
            props = b""
            if group.type is GroupType.SELECT:
                props = struct.pack("!HHH2x", OFPGBP_WEIGHT, 8, b.weight or 1)
            buckets += struct.pack("!HHI", 8 + len(actions) + len(props), len(actions), i)
            buckets += actions + props
    body = struct.pack(
        "!HBxIH2xI", command, group.type, group.group_id, len(buckets), OFPG_BUCKET_ALL
    )
    length = 8 + len(body) + len(buckets)
    if length > MAX_MESSAGE:
        raise EncodeError(f"group {group.group_id} does not fit one OpenFlow message")
    return header(MsgType.GROUP_MOD, length, xid) + body + buckets


# -- replies ----------------------------------------------------------------------------------
ERROR_TYPES = {
    0: "HELLO_FAILED", 1: "BAD_REQUEST", 2: "BAD_ACTION", 3: "BAD_INSTRUCTION",
    4: "BAD_MATCH", 5: "FLOW_MOD_FAILED", 6: "GROUP_MOD_FAILED", 7: "PORT_MOD_FAILED",
    8: "TABLE_MOD_FAILED", 9: "QUEUE_OP_FAILED", 10: "SWITCH_CONFIG_FAILED",
    11: "ROLE_REQUEST_FAILED", 12: "METER_MOD_FAILED", 13: "TABLE_FEATURES_FAILED",
    17: "BUNDLE_FAILED", 0xFFFF: "EXPERIMENTER",
}  # fmt: skip


def parse_header(data: bytes) -> tuple[int, int, int, int]:
    """(version, type, length, xid)."""
    return _HDR.unpack_from(data)


def parse_error(body: bytes) -> tuple[int, int, bytes]:
    """(type, code, data) of an OFPT_ERROR body (after the 8-byte header)."""
    etype, code = struct.unpack_from("!HH", body)
    return etype, code, body[4:]


def error_text(etype: int, code: int) -> str:
    return f"OpenFlow error {ERROR_TYPES.get(etype, etype)} code {code}"
