"""A small OpenFlow table interpreter over `Flow` values, for tests.

It answers "where does this packet go" for the flows a `RecordingTransport` holds, with OVS's
lookup rules, so tests can check what flows *do* rather than what they look like:

* in a table, the highest-priority matching flow wins; a table miss drops (OpenFlow 1.3+);
* conjunctive matches (ovs-fields(7)): flows whose actions are ``conjunction(id, k/n)`` are
  clause members; conjunction ``id`` matches when, at one priority, the packet matches a
  member of every clause 1..n. It then competes at that priority with the ordinary flows,
  and wins a re-lookup of the flows matching ``conj_id=id``. Unsatisfied clause flows are
  invisible (lookup continues below them), whatever their priority;
* actions: ``goto_table``/``resubmit`` continue, ``drop`` ends, ``load`` sets a register,
  ``ct_clear`` makes the packet untracked; the walk stops at the first table outside the
  simulated ones (`Verdict.table`).

Only the match fields the policy tables use are interpreted; a flow matching on anything else
raises `NotImplementedError` rather than being silently misread.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from antrea.ovs.openflow.flow import (
    Conjunction,
    CtClear,
    CtState,
    Drop,
    Flow,
    GotoTable,
    LoadReg,
    Match,
    Resubmit,
)

_IP_PROTOS = ("tcp", "udp", "sctp", "icmp")
_UNSUPPORTED = ("in_port", "dl_src", "dl_dst", "ct_mark", "tun_id", "tun_dst", "arp_op",
                "arp_spa", "arp_tpa", "arp_sha", "tp_src")  # fmt: skip


NEW_CONNECTION = CtState(new=True, est=False, rel=False, rpl=False, inv=False, trk=True)


@dataclass(frozen=True)
class Packet:
    """An IPv4 packet as the policy tables see it (a new connection by default)."""

    proto: str  # tcp | udp | sctp | icmp
    nw_src: str
    nw_dst: str
    tp_dst: int = 0
    regs: dict[int, int] = field(default_factory=dict)
    ct: CtState | None = NEW_CONNECTION
    ct_label: int = 0
    tcp_syn: bool = True
    tcp_ack: bool = False
    conj_id: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None


@dataclass(frozen=True)
class Verdict:
    dropped: bool
    table: int | None  # first table outside the simulated ones that the packet reached
    path: tuple[tuple[int, int], ...]  # (table, priority) of every flow taken


def _ip_in(addr: str, net: object) -> bool:
    return ipaddress.ip_address(addr) in ipaddress.ip_network(str(net), strict=False)


def _ct_ok(want: CtState, have: CtState | None) -> bool:
    have = have or CtState(trk=False)
    for name in ("new", "est", "rel", "rpl", "inv", "trk"):
        w = getattr(want, name)
        if w is None:
            continue
        h = bool(getattr(have, name))
        if name != "trk" and not have.trk:
            h = False  # untracked: every other flag is clear
        if w != h:
            return False
    return True


def matches(m: Match, p: Packet) -> bool:
    for name in _UNSUPPORTED:
        if getattr(m, name) is not None:
            raise NotImplementedError(f"sim does not interpret {name}")
    if m.proto is not None and m.proto != "ip":
        if m.proto not in _IP_PROTOS:
            return False  # arp, ipv6: not an IPv4 packet's
        if m.proto != p.proto:
            return False
    if m.conj_id is not None and m.conj_id != p.conj_id:
        return False
    for r in m.regs:
        width = r.end - r.start + 1
        if ((p.regs.get(r.reg, 0) >> r.start) & ((1 << width) - 1)) != r.value:
            return False
    if m.ct_state is not None and not _ct_ok(m.ct_state, p.ct):
        return False
    if m.ct_label is not None:
        value, mask = m.ct_label
        if (p.ct_label & mask) != value:
            return False
    if m.nw_src is not None and not _ip_in(p.nw_src, m.nw_src):
        return False
    if m.nw_dst is not None and not _ip_in(p.nw_dst, m.nw_dst):
        return False
    if m.tp_dst is not None:
        mask = 0xFFFF if m.tp_dst_mask is None else m.tp_dst_mask
        if (p.tp_dst & mask) != (m.tp_dst & mask):
            return False
    if m.icmp_type is not None and m.icmp_type != p.icmp_type:
        return False
    if m.icmp_code is not None and m.icmp_code != p.icmp_code:
        return False
    if m.tcp_flags is not None:
        have = {"syn": p.tcp_syn, "ack": p.tcp_ack}
        for sign, flag in _flags(m.tcp_flags):
            if have.get(flag, False) != (sign == "+"):
                return False
    return True


def _flags(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        sign = text[i]
        j = i + 1
        while j < len(text) and text[j] not in "+-":
            j += 1
        out.append((sign, text[i + 1 : j]))
        i = j
    return out


class FlowTables:
    """The flows of some tables, looked up as OVS does."""

    def __init__(self, flows: Iterable[Flow], tables: Iterable[int]) -> None:
        self.tables = frozenset(tables)
        self.by_table: dict[int, list[Flow]] = {}
        for f in flows:
            if f.table in self.tables:
                self.by_table.setdefault(f.table, []).append(f)
        for fl in self.by_table.values():
            fl.sort(key=lambda f: -f.priority)

    def lookup(self, table: int, p: Packet) -> Flow | None:
        flows = self.by_table.get(table, [])
        best: Flow | None = None
        clauses: dict[tuple[int, int], dict[int, set[int]]] = {}  # (prio, id) -> n -> {k}
        for f in flows:
            if f.match.conj_id is not None and p.conj_id is None:
                continue  # only reachable through a satisfied conjunction
            if not matches(f.match, p):
                continue
            conj = [a for a in f.actions if isinstance(a, Conjunction)]
            if conj:
                for c in conj:
                    clauses.setdefault((f.priority, c.conj_id), {}).setdefault(
                        c.n_clauses, set()
                    ).add(c.clause)
            elif best is None:
                best = f
        satisfied = sorted(
            (prio, cid)
            for (prio, cid), by_n in clauses.items()
            for n, ks in by_n.items()
            if ks >= set(range(1, n + 1))
        )
        for prio, cid in sorted(satisfied, key=lambda s: (-s[0], s[1])):
            if best is not None and best.priority >= prio:
                break
            with_id = replace(p, conj_id=cid)
            for f in flows:  # the re-lookup: the flow matching conj_id=cid
                if f.match.conj_id == cid and matches(f.match, with_id):
                    return f
        return best

    def run(self, table: int, p: Packet, *, max_steps: int = 64) -> Verdict:
        path: list[tuple[int, int]] = []
        for _ in range(max_steps):
            if table not in self.tables:
                return Verdict(False, table, tuple(path))
            f = self.lookup(table, p)
            if f is None:
                return Verdict(True, None, tuple(path))  # table miss: drop
            path.append((table, f.priority))
            nxt: int | None = None
            for a in f.actions:
                if isinstance(a, Drop):
                    return Verdict(True, None, tuple(path))
                if isinstance(a, LoadReg):
                    width = a.end - a.start + 1
                    mask = ((1 << width) - 1) << a.start
                    regs = dict(p.regs)
                    regs[a.reg] = (regs.get(a.reg, 0) & ~mask) | ((a.value << a.start) & mask)
                    p = replace(p, regs=regs)
                elif isinstance(a, CtClear):
                    p = replace(p, ct=None, ct_label=0)
                elif isinstance(a, GotoTable | Resubmit):
                    nxt = a.table
                    break
                else:
                    raise NotImplementedError(f"sim does not execute {a!r}")
            if nxt is None:
                return Verdict(True, None, tuple(path))  # no output: dropped
            table = nxt
        raise RuntimeError("flow walk did not end")
