"""Reject: the agent answers packets that hit a Reject rule (packet-in, packet-out).

A Reject rule's action flow sends the packet to the controller (``output:CONTROLLER``, the
whole packet). `RejectResponder` holds its own OpenFlow 1.5 connection to the bridge's
management socket (a service connection, which gets packet-ins once it asks for them with a
non-zero ``miss_send_len``), and for each packet-in of a NetworkPolicy flow sends back, as the
rejected destination:

* TCP: a RST (ACK of the segment when it carried none; else with the segment's ACK as
  sequence number), so the client's connect fails with ECONNREFUSED at once;
* anything else (UDP, SCTP, ICMP): ICMP destination unreachable, code 13 (communication
  administratively prohibited), quoting the IP header and 8 bytes, as upstream.

Only packet-ins whose reason (reg0[18..19], `pipeline.PACKET_IN_REASON`, carried in the
packet-in's match) says "reject" are answered: the copies audit-logged rules send to the agent
(reason "log", or none for Kubernetes rules and isolation drops) are the audit log's.

Where it goes: a packet that came from a local pod (egress reject, or ingress reject between
two pods of this node) is answered straight to that pod's port (its conntrack never saw the
connection committed). Otherwise (from the tunnel or the gateway: the client is on another
node, or the host) the reply re-enters the pipeline at L3 forwarding (table 70) with the
gateway's MAC as destination, so it is tunnelled or routed like any reply; the client's node
committed the connection when it sent it, so its conntrack accepts the answer.

Answers are rate limited (`MAX_PER_SECOND`), as upstream's packet-in meter does.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import structlog

from antrea.agent.networkpolicy.flows import AUDIT_OBJECT_ID
from antrea.agent.openflow import pipeline as p
from antrea.ovs.openflow import wire
from antrea.ovs.openflow.cookie import OBJECT_MASK, Category
from antrea.ovs.openflow.flow import Match, Output, Resubmit, SetField
from antrea.ovs.openflow.packetin import (
    packet_in_reg0,
    parse_packet_in,
    run_service,
)

log = structlog.get_logger(__name__)

OFPT_PACKET_OUT = 13
OFP_NO_BUFFER = 0xFFFFFFFF
OFPP_CONTROLLER = 0xFFFFFFFD
L3_FORWARDING = 70
MAX_PER_SECOND = 500
ICMP_UNREACH, ICMP_ADMIN_PROHIBITED = 3, 13
_COOKIE_CATEGORY_SHIFT = 40


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int = 0) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto, 0,
                      src, dst)  # fmt: skip
    csum = _checksum(hdr)
    return hdr[:10] + struct.pack("!H", csum) + hdr[12:] + payload


def reject_reply(frame: bytes) -> bytes | None:
    """The Ethernet frame answering ``frame`` (IPv4), or None if it must not be answered."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    eth_dst, eth_src = frame[0:6], frame[6:12]
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[0] >> 4 != 4 or ihl < 20 or len(ip) < ihl:
        return None
    total = struct.unpack("!H", ip[2:4])[0]
    ip = ip[: max(total, ihl)]
    proto = ip[9]
    src, dst = ip[12:16], ip[16:20]
    if (struct.unpack("!H", ip[6:8])[0] & 0x1FFF) != 0:
        return None  # a non-first fragment: nothing to quote
    body = ip[ihl:]
    if proto == 6:
        if len(body) < 20:
            return None
        sport, dport, seq, ack, off_flags = struct.unpack("!HHIIH", body[:14])
        flags = off_flags & 0x3F
        if flags & 0x04:
            return None  # never answer a RST
        data_len = len(body) - (off_flags >> 12) * 4
        if flags & 0x10:  # it carried an ACK: RST with that sequence number
            r_seq, r_ack, r_flags = ack, 0, 0x04
        else:
            r_seq = 0
            r_ack = (
                seq + data_len + (1 if flags & 0x02 else 0) + (1 if flags & 0x01 else 0)
            ) & 0xFFFFFFFF
            r_flags = 0x14  # RST, ACK
        tcp = struct.pack("!HHIIHHHH", dport, sport, r_seq, r_ack, (5 << 12) | r_flags, 0, 0, 0)
        pseudo = struct.pack("!4s4sBBH", dst, src, 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
        reply_ip = _ipv4(dst, src, 6, tcp)
    else:
        if proto == 1 and len(body) >= 1 and body[0] not in (0, 8, 13, 15, 17):
            return None  # never answer an ICMP error with another one
        quoted = ip[: ihl + 8]
        icmp = struct.pack("!BBHI", ICMP_UNREACH, ICMP_ADMIN_PROHIBITED, 0, 0) + quoted
        icmp = icmp[:2] + struct.pack("!H", _checksum(icmp)) + icmp[4:]
        reply_ip = _ipv4(dst, src, 1, icmp)
    return eth_src + eth_dst + b"\x08\x00" + reply_ip


def packet_in_reason(body: bytes) -> int:
    """The packet-in "custom reason" a policy flow loaded into reg0[18..19] before sending the
    packet to the agent (`pipeline.PACKET_IN_REASON`; 0: none), read from the reg0 the
    packet-in's match carries (`packetin.packet_in_reg0`)."""
    reg0 = packet_in_reg0(body)
    if reg0 is None:
        return 0
    return (reg0 >> p.PACKET_IN_REASON.start) & (
        (1 << (p.PACKET_IN_REASON.end - p.PACKET_IN_REASON.start + 1)) - 1
    )


def packet_out(xid: int, frame: bytes, actions: tuple[object, ...]) -> bytes:
    acts = wire.encode_actions(actions)  # type: ignore[arg-type]
    match = wire.encode_match(Match(in_port=OFPP_CONTROLLER))
    body = struct.pack("!IHH", OFP_NO_BUFFER, len(acts), 0) + match + acts + frame
    return wire.header(OFPT_PACKET_OUT, 8 + len(body), xid) + body


class RejectResponder:
    """Answers Reject rules' packet-ins on its own management connection."""

    def __init__(
        self,
        target: str,
        *,
        is_pod_port: Callable[[int], bool],
        gateway_mac: Callable[[], str | None],
    ) -> None:
        self.path = target[len("unix:") :] if target.startswith("unix:") else target
        self.is_pod_port = is_pod_port
        self.gateway_mac = gateway_mac
        self.answered = 0
        self.limited = 0
        self._xid = 1
        self._window = (0.0, 0)

    def _allowed(self) -> bool:
        now = time.monotonic()
        start, n = self._window
        if now - start >= 1.0:
            self._window = (now, 1)
            return True
        if n >= MAX_PER_SECOND:
            self.limited += 1
            return False
        self._window = (start, n + 1)
        return True

    def reply_message(self, cookie: int, in_port: int, frame: bytes) -> bytes | None:
        if (cookie >> _COOKIE_CATEGORY_SHIFT) & 0xFF != Category.NETWORK_POLICY:
            return None
        if cookie & OBJECT_MASK == AUDIT_OBJECT_ID:
            return None  # a logged isolation drop: for the audit log, not answered
        reply = reject_reply(frame)
        if reply is None:
            return None
        actions: tuple[object, ...]
        if self.is_pod_port(in_port):
            actions = (Output(in_port),)
        else:
            gw = self.gateway_mac()
            actions = (
                (SetField("eth_dst", gw), Resubmit(L3_FORWARDING))
                if gw
                else (Resubmit(L3_FORWARDING),)
            )
        self._xid += 1
        return packet_out(self._xid, reply, actions)

    def handle(self, body: bytes) -> bytes | None:
        """One packet-in body (after the header) -> the packet-out answering it, if any."""
        if len(body) > 7 and body[7] in (p.INGRESS_RULE, p.EGRESS_RULE):
            return None  # Kubernetes rules never reject: an audit-logged rule's copy
        if not packet_in_reason(body) & p.PACKET_IN_REJECT:
            return None  # a copy for the audit log (an Antrea-native logged rule)
        parsed = parse_packet_in(body)
        if parsed is None or not self._allowed():
            return None
        msg = self.reply_message(*parsed)
        if msg is not None:
            self.answered += 1
        return msg

    async def run(self) -> None:
        """Serve until cancelled, reconnecting when ovs-vswitchd goes away."""
        await run_service(self.path, self.handle, name="reject_responder")
