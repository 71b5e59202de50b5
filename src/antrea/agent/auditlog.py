"""NetworkPolicy audit log: one line per new connection that hits a logged rule.

Upstream Antrea writes ``/var/log/antrea/networkpolicy/np.log`` on each node (the lab: each
node's directory). A logged rule's flow sends its packets to the agent (packet-in); the agent
turns each into an entry here. This module is the part shared by every kind of logged rule:
Kubernetes NetworkPolicies (whole policy logged through the Namespace annotation
``networkpolicy.antrea.io/enable-logging: "true"``) and Antrea-native rules
(``enableLogging`` per rule, with an optional ``logLabel``). The flow side (which flows send
packet-ins, and how a packet-in's cookie/registers map back to a rule) belongs to the policy
realization; it hands this module a `RuleInfo` and the packet's frame.

Line format, as upstream (fields separated by one space, ``<nil>`` for absent values)::

    2026/12/06 16:20:01.123456 IngressDefaultRule K8sNetworkPolicy:x/deny-all <nil> Drop <nil>
        x/a 10.244.1.5 40412 10.244.2.7 80 TCP 60 <nil> [1 packets in 0s]

(one line in the file; wrapped here)

timestamp (UTC, of the connection's first packet), table, policy (``Kind:namespace/name``),
rule name, disposition (Allow, Drop, Reject, Pass), OpenFlow priority, the applied-to pod,
source IP and port, destination IP and port, protocol, packet length, log label, and how many
packets of that connection were aggregated over how long.

One line per connection attempt: packets with the same rule and 5-tuple are aggregated while
they keep arriving (a dropped SYN is retransmitted after 1, 3, 7 s; each retransmission
extends the entry) and the line is written when none came for `idle` seconds (or the entry
is `max_age` old). A new source port is a new attempt, hence a new line. Packets beyond
`rate` per second are not logged (counted in `dropped`), as upstream's packet-in meter does.
The file rotates at `max_bytes` keeping `backups` old files (upstream: 100 MB, 3).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import logging.handlers
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from antrea.ovs.openflow.packetin import parse_packet_in, run_service

log = structlog.get_logger(__name__)

ETH_IPV4, ETH_IPV6, ETH_VLAN = 0x0800, 0x86DD, 0x8100
PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "IPv6-ICMP", 132: "SCTP"}
NIL = "<nil>"


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """What the policy realization knows about the logged rule a packet hit."""

    table: str  # e.g. IngressDefaultRule, AntreaPolicyIngressRule, EgressRule
    policy: str  # Kind:namespace/name, e.g. K8sNetworkPolicy:x/deny-all
    disposition: str  # Allow | Drop | Reject | Pass
    rule_name: str = ""
    priority: int | None = None
    applied_to: str = ""  # namespace/name of the pod the rule applies to
    label: str = ""


@dataclass(frozen=True, slots=True)
class PacketInfo:
    src_ip: str
    dst_ip: str
    protocol: str
    src_port: int | None
    dst_port: int | None
    length: int  # IP packet length

    @property
    def five_tuple(self) -> tuple[str, str, str, int | None, int | None]:
        return (self.src_ip, self.dst_ip, self.protocol, self.src_port, self.dst_port)


def parse_frame(frame: bytes) -> PacketInfo | None:
    """The addresses, ports and length of an Ethernet frame carrying IPv4 or IPv6."""
    if len(frame) < 14:
        return None
    (ethertype,) = struct.unpack("!H", frame[12:14])
    offset = 14
    if ethertype == ETH_VLAN and len(frame) >= 18:
        (ethertype,) = struct.unpack("!H", frame[16:18])
        offset = 18
    ip = frame[offset:]
    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    if ethertype == ETH_IPV4 and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        (length,) = struct.unpack("!H", ip[2:4])
        proto = ip[9]
        src, dst = ipaddress.IPv4Address(ip[12:16]), ipaddress.IPv4Address(ip[16:20])
        payload = ip[ihl:]
        frag_offset = struct.unpack("!H", ip[6:8])[0] & 0x1FFF
        if frag_offset:
            payload = b""  # not the first fragment: no ports
    elif ethertype == ETH_IPV6 and len(ip) >= 40:
        (plen,) = struct.unpack("!H", ip[4:6])
        length = plen + 40
        proto = ip[6]
        src, dst = ipaddress.IPv6Address(ip[8:24]), ipaddress.IPv6Address(ip[24:40])
        payload = ip[40:]
    else:
        return None
    sport = dport = None
    if proto in (6, 17, 132) and len(payload) >= 4:
        sport, dport = struct.unpack("!HH", payload[:4])
    return PacketInfo(
        str(src), str(dst), PROTOCOLS.get(proto, str(proto)), sport, dport, int(length)
    )


def _text(value: object) -> str:
    return NIL if value is None or value == "" else str(value)


def format_line(
    first_seen: float, rule: RuleInfo, pkt: PacketInfo, packets: int, duration: float
) -> str:
    stamp = dt.datetime.fromtimestamp(first_seen, dt.UTC).strftime("%Y/%m/%d %H:%M:%S.%f")
    fields = (
        stamp,
        rule.table,
        rule.policy,
        _text(rule.rule_name),
        rule.disposition,
        _text(rule.priority),
        _text(rule.applied_to),
        pkt.src_ip,
        _text(pkt.src_port),
        pkt.dst_ip,
        _text(pkt.dst_port),
        pkt.protocol,
        str(pkt.length),
        _text(rule.label),
        f"[{packets} packets in {duration:.6g}s]",
    )
    return " ".join(fields)


@dataclass(slots=True)
class _Entry:
    rule: RuleInfo
    pkt: PacketInfo
    first_wall: float
    first: float
    last: float
    packets: int = 1


@dataclass(slots=True)
class AuditLogger:
    """Aggregates packet-ins of logged rules into audit lines (see the module docstring)."""

    path: Path
    idle: float = 2.5
    max_age: float = 30.0
    rate: int = 500
    max_bytes: int = 100 * 1024 * 1024
    backups: int = 3
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    dropped: int = 0
    lines: int = 0
    _entries: dict[tuple[RuleInfo, tuple[str, str, str, int | None, int | None]], _Entry] = field(
        default_factory=dict
    )
    _window: tuple[float, int] = (0.0, 0)
    _logger: logging.Logger | None = None

    def _out(self) -> logging.Logger:
        if self._logger is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            logger = logging.Logger(f"antrea.audit.{self.path}")  # not in the logging tree
            handler = logging.handlers.RotatingFileHandler(
                self.path, maxBytes=self.max_bytes, backupCount=self.backups, encoding="utf-8"
            )
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
            logger.propagate = False
            self._logger = logger
        return self._logger

    def _allowed(self, now: float) -> bool:
        start, n = self._window
        if now - start >= 1.0:
            self._window = (now, 1)
            return True
        if n >= self.rate:
            return False
        self._window = (start, n + 1)
        return True

    def record(self, rule: RuleInfo, pkt: PacketInfo) -> None:
        """One packet of a logged rule (call from the packet-in handler)."""
        now = self.clock()
        key = (rule, pkt.five_tuple)
        entry = self._entries.get(key)
        if entry is not None and now - entry.last < self.idle:
            entry.packets += 1
            entry.last = now
            return
        if entry is not None:
            self._write(entry)
        if not self._allowed(now):
            self.dropped += 1
            self._entries.pop(key, None)
            return
        self._entries[key] = _Entry(rule, pkt, self.wall(), now, now)

    def flush(self, *, everything: bool = False) -> int:
        """Write the entries that are complete (idle or old; all with ``everything``)."""
        now = self.clock()
        done = [
            k
            for k, e in self._entries.items()
            if everything or now - e.last >= self.idle or now - e.first >= self.max_age
        ]
        for k in done:
            self._write(self._entries.pop(k))
        return len(done)

    def _write(self, e: _Entry) -> None:
        line = format_line(e.first_wall, e.rule, e.pkt, e.packets, e.last - e.first)
        out = self._out()
        out.log(logging.INFO, line)
        self.lines += 1

    async def run(self, interval: float = 0.5) -> None:
        """Flush periodically until cancelled (then write what is pending)."""
        try:
            while True:
                await asyncio.sleep(interval)
                self.flush()
        finally:
            self.flush(everything=True)
            self.close()

    def close(self) -> None:
        if self._logger is not None:
            for handler in self._logger.handlers:
                handler.close()
            self._logger = None


Resolver = Callable[[int, int, PacketInfo], RuleInfo | None]


class AuditListener:
    """Receives the packet-ins of logged flows on its own OpenFlow connection to the bridge's
    management socket and records them in an `AuditLogger`.

    ``accept(cookie, table_id, reason)`` says whether a packet-in comes from a logged flow
    (``reason``: the packet-in reason a policy flow loaded into reg0, `reject.packet_in_reason`);
    ``resolve(table_id, cookie, packet)`` names the rule behind it (None: not logged any
    more).
    """

    def __init__(
        self,
        target: str,
        logger: AuditLogger,
        *,
        accept: Callable[[int, int, int], bool],
        resolve: Resolver,
    ) -> None:
        self.path = target[len("unix:") :] if target.startswith("unix:") else target
        self.logger = logger
        self.accept = accept
        self.resolve = resolve
        self.received = 0

    def handle(self, body: bytes) -> None:
        """One OpenFlow 1.5 packet-in body (after the header)."""
        from antrea.agent.networkpolicy.reject import packet_in_reason

        if len(body) < 16:
            return
        table = body[7]
        parsed = parse_packet_in(body)
        if parsed is None:
            return
        cookie, _in_port, frame = parsed
        if not self.accept(cookie, table, packet_in_reason(body)):
            return
        pkt = parse_frame(frame)
        if pkt is None:
            return
        rule = self.resolve(table, cookie, pkt)
        if rule is not None:
            self.received += 1
            self.logger.record(rule, pkt)

    async def run(self) -> None:
        """Serve (and flush the logger) until cancelled, reconnecting to ovs-vswitchd."""
        flusher = asyncio.create_task(self.logger.run(), name="audit-log-flush")
        try:
            await run_service(self.path, self.handle, name="audit_listener")
        finally:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
