"""Per-rule traffic counters, read from the policy flows with ONE dump.

Each conjunction has two counting flows (flows.conj_flows): its action flow
``conj_id=N`` sees the first packet of every new connection the rule allows (n_packets =
sessions), and its metric flow ``ct_state=-new+est,ct_label=N`` sees the rest of those
connections (the commit in table 105 copies the rule's conjunction ID from reg5/reg6 into
ct_label). A rule's counters are the sums over its conjunctions. One ``ovs-ofctl dump-flows``
of the NetworkPolicy cookie category per collection, never one process per rule.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from antrea.ovs.ovsctl import DumpedFlow

_CONJ_ID = re.compile(r"(?:^|,)conj_id=(\d+)(?:,|$)")
_CT_LABEL = re.compile(r"(?:^|,)ct_label=0x([0-9a-f]+)/0x([0-9a-f]+)(?:,|$)")


@dataclass
class RuleStats:
    sessions: int = 0
    packets: int = 0
    bytes: int = 0

    def to_json(self) -> dict[str, int]:
        return {"sessions": self.sessions, "packets": self.packets, "bytes": self.bytes}


def conj_counters(flows: Iterable[DumpedFlow]) -> dict[int, RuleStats]:
    """Counters per conjunction ID from dumped policy flows."""
    out: dict[int, RuleStats] = {}
    for f in flows:
        m = _CONJ_ID.search(f.match)
        if m is not None:
            s = out.setdefault(int(m.group(1)), RuleStats())
            s.sessions += f.n_packets
            s.packets += f.n_packets
            s.bytes += f.n_bytes
            continue
        m = _CT_LABEL.search(f.match)
        if m is not None and "est" in f.match:
            value, mask = int(m.group(1), 16), int(m.group(2), 16)
            shift = (mask & -mask).bit_length() - 1
            s = out.setdefault(value >> shift, RuleStats())
            s.packets += f.n_packets
            s.bytes += f.n_bytes
    return out


def rule_counters(
    flows: Iterable[DumpedFlow], rule_of_conj: Callable[[int], str | None]
) -> dict[str, RuleStats]:
    out: dict[str, RuleStats] = {}
    for cid, s in conj_counters(flows).items():
        rid = rule_of_conj(cid)
        if rid is None:
            continue
        acc = out.setdefault(rid, RuleStats())
        acc.sessions += s.sessions
        acc.packets += s.packets
        acc.bytes += s.bytes
    return out


class StatsCollector:
    """Caches one dump for `min_interval` seconds so concurrent readers share it."""

    def __init__(
        self,
        dump: Callable[[], Awaitable[list[DumpedFlow]]],
        rule_of_conj: Callable[[int], str | None],
        *,
        min_interval: float = 1.0,
    ) -> None:
        self.dump = dump
        self.rule_of_conj = rule_of_conj
        self.min_interval = min_interval
        self._at = 0.0
        self._stats: dict[str, RuleStats] = {}
        self.dumps = 0

    async def rules(self) -> dict[str, RuleStats]:
        now = time.monotonic()
        if now - self._at >= self.min_interval or not self.dumps:
            flows = await self.dump()
            self.dumps += 1
            self._stats = rule_counters(flows, self.rule_of_conj)
            self._at = time.monotonic()
        return self._stats
