"""Packet-in services: an OpenFlow 1.5 service connection that receives packet-ins.

The agent holds such connections to the bridge's management socket for features that answer
or record packets sent to the controller (the reject responder, the audit log). A service
connection gets packet-ins only once it asks for them with a non-zero ``miss_send_len``
(``OFPT_SET_CONFIG``). `run_service` serves one until cancelled, reconnecting with backoff
when ovs-vswitchd goes away; it answers echo requests and hands each packet-in body (after
the header) to the feature's handler, writing back what the handler returns (a packet-out).

The parsing of a packet-in body is here too: `parse_packet_in` (cookie, in_port, frame) and
`packet_in_reg0` (the packet's reg0, which the pipeline uses to carry the packet-in reason).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Iterator

import structlog

from antrea.ovs.openflow import wire

log = structlog.get_logger(__name__)

OFPT_PACKET_IN = 10
OFPT_SET_CONFIG = 9

# One packet-in body -> the message to send back on the connection, if any.
PacketInHandler = Callable[[bytes], bytes | None]


def match_fields(body: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(class, field, value) of each entry of a packet-in body's OXM match (none when the
    body carries no OXM match)."""
    if len(body) < 20:
        return
    mtype, mlen = struct.unpack("!HH", body[16:20])
    if mtype != 1:
        return
    oxms = body[20 : 16 + mlen]
    i = 0
    while i + 4 <= len(oxms):
        cls, fld, length = struct.unpack("!HBB", oxms[i : i + 4])
        yield cls, fld >> 1, oxms[i + 4 : i + 4 + length]
        i += 4 + length


def parse_packet_in(body: bytes) -> tuple[int, int, bytes] | None:
    """(cookie, in_port, frame) of an OpenFlow 1.5 packet-in body (after the header)."""
    if len(body) < 24:
        return None
    _buffer, _total, _reason, _table, cookie = struct.unpack("!IHBBQ", body[:16])
    mtype, mlen = struct.unpack("!HH", body[16:20])
    if mtype != 1:
        return None
    in_port = 0
    for cls, fld, value in match_fields(body):
        if cls == 0x8000 and fld == 0 and len(value) == 4:
            in_port = struct.unpack("!I", value)[0]
    start = 16 + ((mlen + 7) // 8 * 8) + 2
    return cookie, in_port, body[start:]


def packet_in_reg0(body: bytes) -> int | None:
    """The packet's reg0 as the packet-in's match carries it (only non-zero registers are
    carried): as NXM_NX_REG0 (class 0x0001, field 0), or inside OXM_OF_PKT_REG0 (class 0x8001,
    field 0: reg0 is the upper half of xreg0). None when absent."""
    reg0: int | None = None
    for cls, fld, value in match_fields(body):
        if cls == 0x0001 and fld == 0 and len(value) >= 4:
            reg0 = struct.unpack("!I", value[:4])[0]
        elif cls == 0x8001 and fld == 0 and len(value) >= 8:
            reg0 = struct.unpack("!Q", value[:8])[0] >> 32
    return reg0


async def serve(path: str, handle: PacketInHandler, *, name: str) -> None:
    """One service connection to the unix socket `path`, until it closes. `name` prefixes
    the log events (``<name>_connected``, ``<name>_packet_in_failed``)."""
    reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
    try:
        writer.write(wire.hello(1))
        # A service connection gets packet-ins only with a non-zero miss_send_len.
        writer.write(wire.header(OFPT_SET_CONFIG, 12, 2) + struct.pack("!HH", 0, 0xFFFF))
        await writer.drain()
        log.info(f"{name}_connected", target=path)
        while True:
            hdr = await reader.readexactly(8)
            _, mtype, length, xid = wire.parse_header(hdr)
            body = await reader.readexactly(length - 8) if length > 8 else b""
            if mtype == wire.MsgType.ECHO_REQUEST:
                writer.write(wire.echo_reply(xid, body))
                continue
            if mtype != OFPT_PACKET_IN:
                continue
            try:
                reply = handle(body)
            except Exception:
                log.exception(f"{name}_packet_in_failed")
                continue
            if reply is not None:
                writer.write(reply)
    finally:
        writer.close()


async def run_service(path: str, handle: PacketInHandler, *, name: str) -> None:
    """`serve` until cancelled, reconnecting (0.2 s backoff doubling to 5 s) whenever the
    connection is lost or cannot be made (``<name>_disconnected``)."""
    delay = 0.2
    while True:
        try:
            await serve(path, handle, name=name)
            delay = 0.2
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug(f"{name}_disconnected", error=repr(exc))
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)
