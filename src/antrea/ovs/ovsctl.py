"""Read-side and maintenance helpers around `ovs-ofctl` / `ovs-appctl` (Antrea's ovsctl).

Flow *changes* go through `antrea.ovs.openflow.bundle` only. What lives here: dumping and parsing
flows (antctl get ovsflows, flow-count metrics, the restart canary), the one cookie-masked
delete of a stale round, ``ofproto/trace`` for antctl trace-packet, and the conntrack dump and
flush with which AntreaProxy ends the connections to an endpoint a Service lost.

This is the one parser of dump text: a `DumpedFlow` reads its match back into a typed `Match`
(`DumpedFlow.parsed`, `parse_match`) and its ``conjunction(id,k/n)`` actions into `Conjunction`
values, so nothing else looks for ``conj_id=`` or ``ct_label=`` in dumped text.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from antrea.ovs import unixctl
from antrea.ovs.errors import OfctlError
from antrea.ovs.openflow.flow import (
    Conjunction,
    ConntrackEntry,
    ConntrackTuple,
    CtState,
    FlowFilter,
    Match,
    Proto,
    RegMatch,
)
from antrea.ovs.openflow.render import render_ct_tuple, render_ct_zone, render_filter


@dataclass(frozen=True, slots=True)
class DumpedMatch:
    """A dumped match as values: ``match`` holds every field a `Match` can carry; ``other`` the
    rest as dumped (fields or values `Match` has no place for, e.g. ``in_port=LOCAL``)."""

    match: Match
    other: tuple[str, ...] = ()

    @property
    def exact(self) -> Match | None:
        """The whole match as a `Match`, None when part of it has no typed field."""
        return None if self.other else self.match


def _int(text: str) -> int:
    return int(text, 0)


def _masked(full: int) -> Callable[[str], tuple[int, int]]:
    """(value, mask) of ``0x5/0xff``; an unmasked value (``0x5``) has the field's full mask."""

    def parse(text: str) -> tuple[int, int]:
        value, slash, mask = text.partition("/")
        return int(value, 0), int(mask, 0) if slash else full

    return parse


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def _prefix(text: str) -> Any:
    if "/" not in text:
        return ipaddress.ip_address(text)
    net = ipaddress.ip_network(text)
    return net.network_address if net.prefixlen == net.max_prefixlen else net


def _unmasked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def strict(text: str) -> Any:
        if "/" in text:
            raise ValueError(f"masked {text!r}")
        return parse(text)

    return strict


_CT_FLAGS = frozenset(f for f in CtState.__dataclass_fields__)
_CT_FLAG = re.compile(r"([+-])([a-z]+)")


@lru_cache(maxsize=256)  # a handful of distinct flag sets, on every metric flow of a dump
def _ct_state(text: str) -> CtState:
    flags = _CT_FLAG.findall(text)
    if "".join(sign + name for sign, name in flags) != text or not flags:
        raise ValueError(f"ct_state {text!r}")
    values = {}
    for sign, name in flags:
        if name not in _CT_FLAGS:
            raise ValueError(f"ct_state flag {name!r}")
        values[name] = sign == "+"
    return CtState(**values)


def _reg(reg: int, text: str) -> RegMatch:
    value, slash, mask_text = text.partition("/")
    v = int(value, 0)
    if not slash:
        return RegMatch(reg, v)
    mask = int(mask_text, 0)
    start = (mask & -mask).bit_length() - 1
    end = mask.bit_length() - 1
    if mask <= 0 or mask >> start != (1 << (end - start + 1)) - 1 or v & ~mask:
        raise ValueError(f"reg{reg} mask {text!r}")
    return RegMatch(reg, v >> start, start, end)


_FIELDS: dict[str, Callable[[str], Any]] = {
    "in_port": _unmasked(int),
    "dl_src": str,
    "dl_dst": str,
    "ct_mark": _masked(0xFFFFFFFF),
    "ct_label": _masked((1 << 128) - 1),
    "conj_id": _unmasked(int),
    "tun_id": _unmasked(_int),
    "tun_dst": _unmasked(_address),
    "nw_src": _prefix,
    "nw_dst": _prefix,
    "arp_op": _unmasked(int),
    "arp_spa": _unmasked(_address),
    "arp_tpa": _unmasked(_address),
    "arp_sha": _unmasked(str),
    "tp_src": _unmasked(_int),
    "tcp_flags": str,
    "icmp_type": _unmasked(int),
    "icmp_code": _unmasked(int),
    "ct_state": _ct_state,
}
_PROTOS = {p.value: p for p in Proto}
_REGS = {f"reg{i}": i for i in range(16)}


def _tp_dst(text: str) -> tuple[int, int | None]:
    port, slash, mask = text.partition("/")
    m = int(mask, 0) if slash else 0xFFFF
    return int(port, 0), None if m == 0xFFFF else m


def _pairs(text: str) -> list[tuple[str, str]]:
    """The (field, value) pairs of a dumped match in dump order (a bare ``ip``: ("ip", ""))."""
    out = []
    for token in text.split(","):
        if token:
            key, _, value = token.partition("=")
            out.append((key, value))
    return out


def _match_of(pairs: list[tuple[str, str]]) -> DumpedMatch:
    kwargs: dict[str, Any] = {}
    regs: list[RegMatch] = []
    other: list[str] = []
    for key, value in pairs:
        try:
            if not value and key in _PROTOS and "proto" not in kwargs:
                kwargs["proto"] = _PROTOS[key]
            elif key in _REGS:
                regs.append(_reg(_REGS[key], value))
            elif key == "tp_dst" and key not in kwargs:
                kwargs["tp_dst"], mask = _tp_dst(value)
                if mask is not None:
                    kwargs["tp_dst_mask"] = mask
            elif key in _FIELDS and key not in kwargs:
                kwargs[key] = _FIELDS[key](value)
            else:
                raise ValueError(key)
        except ValueError:
            other.append(f"{key}={value}" if value else key)
    if regs:
        kwargs["regs"] = tuple(sorted(regs, key=lambda r: (r.reg, r.start)))
    return DumpedMatch(Match(**kwargs), tuple(other))


def parse_match(text: str) -> DumpedMatch:
    """A dumped match (``ct_state=-new+est,ip,reg1=0x3,nw_src=10.0.0.0/8``, any field order) as
    values; the inverse of `antrea.ovs.openflow.render.render_match` on what OVS dumps back
    (``regs`` come in register order, a full mask as no mask)."""
    return _match_of(_pairs(text))


_CONJUNCTION = re.compile(r"(?:^|,)conjunction\((\d+),(\d+)/(\d+)\)")


def parse_conjunctions(actions: str) -> tuple[Conjunction, ...]:
    """The ``conjunction(id,k/n)`` actions of a dumped flow's actions."""
    if "conjunction(" not in actions:
        return ()
    return tuple(Conjunction(int(i), int(k), int(n)) for i, k, n in _CONJUNCTION.findall(actions))


@dataclass
class DumpedFlow:
    """One line of ``ovs-ofctl dump-flows`` output, parsed. ``match`` and ``actions`` are the
    dumped text (shown as is by antctl); the properties below are their values, parsed on first
    use: the whole match (`parsed`) or single fields (`conj_id`, `ct_label`, `ct_state`: cheaper
    for the stats of every policy flow), the ``conjunction`` actions and every conjunction ID."""

    table: int
    priority: int
    cookie: int
    match: str
    actions: str
    n_packets: int = 0
    n_bytes: int = 0
    text: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def _field(self, name: str) -> Any:
        """One field of the match as a value (None: not matched, or not a value `Match` can
        hold), found without tokenizing the whole match: the stats read two or three fields of
        every policy flow, tens of thousands per dump."""
        text, key = self.match, name + "="
        i = text.find(key)
        while i > 0 and text[i - 1] != ",":  # a field starts the match or follows a comma
            i = text.find(key, i + 1)
        if i < 0:
            return None
        end = text.find(",", i)
        try:
            return _FIELDS[name](text[i + len(key) : end if end >= 0 else len(text)])
        except ValueError:
            return None

    @cached_property
    def parsed(self) -> DumpedMatch:
        """The whole match as values (`parse_match`)."""
        return parse_match(self.match)

    @property
    def conj_id(self) -> int | None:
        """The ``conj_id`` the flow matches (a conjunction's action flow)."""
        value: int | None = self._field("conj_id")
        return value

    @property
    def ct_label(self) -> tuple[int, int] | None:
        """The ``ct_label`` (value, mask) the flow matches."""
        value: tuple[int, int] | None = self._field("ct_label")
        return value

    @property
    def ct_state(self) -> CtState | None:
        """The ``ct_state`` flags the flow matches."""
        value: CtState | None = self._field("ct_state")
        return value

    @cached_property
    def conjunctions(self) -> tuple[Conjunction, ...]:
        """The flow's ``conjunction(id,k/n)`` actions (a clause flow's)."""
        return parse_conjunctions(self.actions)

    @property
    def conj_ids(self) -> frozenset[int]:
        """Every conjunction ID the flow carries: its ``conj_id`` match (an action flow's) and
        its ``conjunction`` actions (a clause flow's)."""
        ids = {c.conj_id for c in self.conjunctions}
        conj_id = self.conj_id
        if conj_id is not None:
            ids.add(conj_id)
        return frozenset(ids)

    @property
    def drops(self) -> bool:
        """The flow drops what it matches (no actions)."""
        return self.actions == "drop"

    @cached_property
    def tokens(self) -> frozenset[str]:
        """The ``field=value`` (and bare) tokens of the match and the top-level actions, as
        dumped: what `antrea.ovs.openflow.render.render_port_tokens` is compared with."""
        return frozenset(f"{self.match},{self.actions}".replace(",", " ").split())


_STAT_KEYS = ("duration", "n_packets", "n_bytes", "idle_age", "hard_age", "idle_timeout")


def parse_flow_line(line: str) -> DumpedFlow | None:
    """Parse one dump-flows line (``cookie=0x.., duration=.., table=.., ..., actions=...``)."""
    line = line.strip()
    if "actions=" not in line or line.startswith(("NXST_FLOW", "OFPST_FLOW")):
        return None
    head, _, actions = line.partition("actions=")
    head = head.strip().rstrip(",")
    table = 0
    priority = 32768
    cookie = 0
    extra: dict[str, str] = {}
    match_parts: list[str] = []
    for part in (p.strip() for p in head.split(",")):
        if not part:
            continue
        # OpenFlow 1.5 dumps separate some fields by spaces ("n_bytes=0 priority=200")
        sub = part.split() if " " in part else [part]
        for item in sub:
            key, eq, value = item.partition("=")
            if key == "table" and eq:
                table = int(value)
            elif key == "priority" and eq:
                priority = int(value)
            elif key == "cookie" and eq:
                cookie = int(value, 16) if value.startswith("0x") else int(value)
            elif key in _STAT_KEYS and eq:
                extra[key] = value
            else:
                match_parts.append(item)
    return DumpedFlow(
        table=table,
        priority=priority,
        cookie=cookie,
        match=",".join(match_parts),
        actions=actions.strip(),
        n_packets=int(extra.get("n_packets", "0")),
        n_bytes=int(extra.get("n_bytes", "0")),
        text=line,
        extra=extra,
    )


_CT_ENTRY = re.compile(
    r"^(tcp|udp|sctp),orig=\(src=([\d.]+),dst=([\d.]+),sport=(\d+),dport=(\d+)\),"
    r"reply=\(src=([\d.]+),dst=([\d.]+),sport=(\d+),dport=(\d+)\)"
)


def parse_conntrack_line(line: str) -> ConntrackEntry | None:
    """Parse one ``dpctl/dump-conntrack`` line of a TCP, UDP or SCTP connection (IPv4)."""
    m = _CT_ENTRY.match(line.strip())
    if m is None:
        return None
    proto, src, dst, sport, dport, rsrc, rdst, rsport, rdport = m.groups()
    ip = ipaddress.IPv4Address
    return ConntrackEntry(
        orig=ConntrackTuple(Proto(proto), ip(src), ip(dst), int(sport), int(dport)),
        reply=ConntrackTuple(Proto(proto), ip(rsrc), ip(rdst), int(rsport), int(rdport)),
    )


class OfCtl:
    """`ovs-ofctl`/`ovs-appctl` against one bridge's management socket."""

    def __init__(self, target: str, *, bridge: str = "br-int", rundir: str | None = None) -> None:
        self.target = target
        self.bridge = bridge
        self.rundir = rundir
        self.errors = 0

    async def _run(self, argv: list[str]) -> str:
        # From a worker thread (vfork): the event loop's spawn forks the whole agent and blocks
        # the loop until the child has exec'd, stalling CNI requests in flight (the agent
        # runs the canary dump every few seconds).
        proc = await asyncio.to_thread(subprocess.run, argv, capture_output=True, check=False)
        if proc.returncode != 0:
            self.errors += 1
            raise OfctlError(argv, proc.returncode, proc.stderr.decode(errors="replace"))
        return str(proc.stdout.decode())

    async def dump_flows(
        self, flow_filter: FlowFilter | None = None, *, stats: bool = True
    ) -> list[DumpedFlow]:
        argv = ["ovs-ofctl", "-O", "OpenFlow15", "--no-names"]
        if not stats:
            argv.append("--no-stats")
        argv += ["dump-flows", self.target]
        text = render_filter(flow_filter) if flow_filter is not None else ""
        if text:
            argv.append(text)
        out = await self._run(argv)
        flows = [parse_flow_line(line) for line in out.splitlines()]
        return [f for f in flows if f is not None]

    async def delete_flows(self, flow_filter: FlowFilter) -> None:
        """Non-strict delete (e.g. a cookie/mask filter: every flow of one round)."""
        text = render_filter(flow_filter)
        if not text:
            raise ValueError("refusing to delete every flow (empty filter)")
        await self._run(
            ["ovs-ofctl", "-O", "OpenFlow15", "--no-names", "del-flows", self.target, text]
        )

    async def flow_counts(self) -> dict[int, int]:
        """Number of flows per table (one dump, no stats)."""
        counts: dict[int, int] = {}
        for f in await self.dump_flows(stats=False):
            counts[f.table] = counts.get(f.table, 0) + 1
        return counts

    def _ctl_path(self) -> str | None:
        """ovs-vswitchd's control socket under ``rundir`` (None: leave it to ovs-appctl)."""
        if not self.rundir:
            return None
        pidfile = f"{self.rundir}/ovs-vswitchd.pid"
        try:
            with open(pidfile) as fh:
                pid = fh.read().strip()
        except OSError:
            return None
        ctl = f"{self.rundir}/ovs-vswitchd.ctl"
        if not os.path.exists(ctl):
            ctl = f"{self.rundir}/ovs-vswitchd.{pid}.ctl"
        return ctl

    async def trace(self, flow: str) -> str:
        """``ovs-appctl ofproto/trace <bridge> <flow>`` output (antctl trace-packet)."""
        return await self.appctl("ofproto/trace", self.bridge, flow)

    async def appctl(self, *args: str) -> str:
        """``ovs-appctl`` to ovs-vswitchd: in process through its control socket when
        ``rundir`` names it (`antrea.ovs.unixctl`), else the ovs-appctl process."""
        ctl = self._ctl_path()
        if ctl is None:
            return await self._run(["ovs-appctl", *args])
        try:
            return await unixctl.call(ctl, *args)
        except unixctl.UnixctlError as exc:
            self.errors += 1
            argv = ["ovs-appctl", "-t", ctl, *args]
            raise OfctlError(argv, 2 if exc.connected else 1, exc.message) from exc

    async def dump_conntrack(self, zone: int) -> list[ConntrackEntry]:
        """The TCP/UDP/SCTP connections of conntrack zone ``zone`` (other lines skipped)."""
        out = await self.appctl("dpctl/dump-conntrack", render_ct_zone(zone))
        entries = [parse_conntrack_line(line) for line in out.splitlines()]
        return [e for e in entries if e is not None]

    async def flush_conntrack(self, zone: int, orig: ConntrackTuple) -> None:
        """Flush the one connection of ``zone`` whose original direction is ``orig``."""
        await self.appctl("dpctl/flush-conntrack", render_ct_zone(zone), render_ct_tuple(orig))
