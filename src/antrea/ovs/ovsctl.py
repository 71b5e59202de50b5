"""Read-side and maintenance helpers around `ovs-ofctl` / `ovs-appctl` (Antrea's ovsctl).

Flow *changes* go through `antrea.ovs.openflow.bundle` only. What lives here: dumping and parsing
flows (antctl get ovsflows, flow-count metrics, the restart canary), the one cookie-masked
delete of a stale round, ``ofproto/trace`` for antctl trace-packet, and the conntrack dump and
flush with which AntreaProxy ends the connections to an endpoint a Service lost.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import subprocess
from dataclasses import dataclass, field

from antrea.ovs.errors import OfctlError
from antrea.ovs.openflow.flow import ConntrackEntry, ConntrackTuple, FlowFilter, Proto
from antrea.ovs.openflow.render import render_ct_tuple, render_ct_zone, render_filter

_FIELD_RE = re.compile(r"(\w+)=([^,\s]+)")


@dataclass
class DumpedFlow:
    """One line of ``ovs-ofctl dump-flows`` output, parsed."""

    table: int
    priority: int
    cookie: int
    match: str
    actions: str
    n_packets: int = 0
    n_bytes: int = 0
    text: str = ""
    extra: dict[str, str] = field(default_factory=dict)


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

    def _appctl_target(self) -> list[str]:
        if not self.rundir:
            return ["ovs-appctl"]
        pidfile = f"{self.rundir}/ovs-vswitchd.pid"
        try:
            with open(pidfile) as fh:
                pid = fh.read().strip()
        except OSError:
            return ["ovs-appctl"]
        ctl = f"{self.rundir}/ovs-vswitchd.ctl"
        if not os.path.exists(ctl):
            ctl = f"{self.rundir}/ovs-vswitchd.{pid}.ctl"
        return ["ovs-appctl", "-t", ctl]

    async def trace(self, flow: str) -> str:
        """``ovs-appctl ofproto/trace <bridge> <flow>`` output (antctl trace-packet)."""
        return await self._run([*self._appctl_target(), "ofproto/trace", self.bridge, flow])

    async def appctl(self, *args: str) -> str:
        return await self._run([*self._appctl_target(), *args])

    async def dump_conntrack(self, zone: int) -> list[ConntrackEntry]:
        """The TCP/UDP/SCTP connections of conntrack zone ``zone`` (other lines skipped)."""
        out = await self.appctl("dpctl/dump-conntrack", render_ct_zone(zone))
        entries = [parse_conntrack_line(line) for line in out.splitlines()]
        return [e for e in entries if e is not None]

    async def flush_conntrack(self, zone: int, orig: ConntrackTuple) -> None:
        """Flush the one connection of ``zone`` whose original direction is ``orig``."""
        await self.appctl("dpctl/flush-conntrack", render_ct_zone(zone), render_ct_tuple(orig))
