"""Per-rule traffic counters, read from the policy flows with ONE dump.

Each conjunction has two counting flows (flows.conj_flows): its action flow
``conj_id=N`` sees the first packet of every new connection the rule allows (n_packets =
sessions), and its metric flow ``ct_state=-new+est,ct_label=N`` sees the rest of those
connections (the commit in table 105 copies the rule's conjunction ID from reg5/reg6 into
ct_label). A rule's counters are the sums over its conjunctions. One ``ovs-ofctl dump-flows``
of the NetworkPolicy cookie category per collection, never one process per rule.

`RuleTotals` turns successive readings into counters per (policy, rule name) that never go
backwards and never count twice, which the agent reports to the controller (stats.antrea.io):

- the first reading after the agent starts is only a baseline (flows may have survived the
  restart with their counters: what they counted before is not known to be unreported);
- a conjunction's counters that went down mean its flows were reinstalled: the new values are all
  new traffic; a conjunction ID new since the last reading (or now another rule's) counts fully;
- totals are kept per (policy, rule name) under a ``since`` token (this agent run + a counter),
  a new token whenever a total restarts at 0 (first seen, or seen again after its policy left
  the node), so the controller can fold ended runs without double counting;
- the totals and their tokens are saved in the agent's state directory and restored by the next
  agent run, so neither an agent restart nor a controller failover (the new leader learns every
  run's totals from the agents) loses what was reported.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Container, Iterable
from dataclasses import dataclass
from typing import Any

from antrea.apis.stats.types import NodeStatsSummary, RuleTraffic, TrafficStats
from antrea.ovs.ovsctl import DumpedFlow


@dataclass
class RuleStats:
    sessions: int = 0
    packets: int = 0
    bytes: int = 0

    def to_json(self) -> dict[str, int]:
        return {"sessions": self.sessions, "packets": self.packets, "bytes": self.bytes}

    def traffic(self) -> TrafficStats:
        return TrafficStats(packets=self.packets, bytes=self.bytes, sessions=self.sessions)


def conj_counters(flows: Iterable[DumpedFlow]) -> dict[int, RuleStats]:
    """Counters per conjunction ID from dumped policy flows."""
    out: dict[int, RuleStats] = {}
    for f in flows:
        conj_id = f.conj_id
        if conj_id is not None:
            s = out.setdefault(conj_id, RuleStats())
            s.sessions += f.n_packets
            s.packets += f.n_packets
            s.bytes += f.n_bytes
            continue
        label, state = f.ct_label, f.ct_state
        if label is not None and state is not None and state.est:
            s = out.setdefault(label_conj_id(label), RuleStats())
            s.packets += f.n_packets
            s.bytes += f.n_bytes
    return out


def label_conj_id(label: tuple[int, int]) -> int:
    """The conjunction ID a metric flow's ``ct_label`` (value, mask) matches: the value of the
    masked bits (flows.conj_flows puts it at the direction's label shift)."""
    value, mask = label
    return value >> ((mask & -mask).bit_length() - 1)


def rule_counters(
    flows: Iterable[DumpedFlow], rule_of_conj: Callable[[int], str | None]
) -> dict[str, RuleStats]:
    return rules_of_conjs(conj_counters(flows), rule_of_conj)


def rules_of_conjs(
    conjs: dict[int, RuleStats], rule_of_conj: Callable[[int], str | None]
) -> dict[str, RuleStats]:
    out: dict[str, RuleStats] = {}
    for cid, s in conjs.items():
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
        self._conjs: dict[int, RuleStats] = {}
        self.dumps = 0

    async def conjs(self) -> dict[int, RuleStats]:
        now = time.monotonic()
        if now - self._at >= self.min_interval or not self.dumps:
            flows = await self.dump()
            self.dumps += 1
            self._conjs = conj_counters(flows)
            self._at = time.monotonic()
        return self._conjs

    async def rules(self) -> dict[str, RuleStats]:
        return rules_of_conjs(await self.conjs(), self.rule_of_conj)


# (rule ID, policy, rule name) of a conjunction, None when it is no known rule's
Owner = Callable[[int], tuple[str, str, str] | None]


class RuleTotals:
    """Counters per (policy, rule name) accumulated from successive conjunction readings."""

    def __init__(self, run: str | None = None) -> None:
        self.run = run or secrets.token_hex(6)  # this agent process
        self._last: dict[int, tuple[str | None, TrafficStats]] = {}
        self._totals: dict[tuple[str, str], tuple[str, TrafficStats]] = {}
        self._started = 0
        self.primed = False
        self.resets = 0  # conjunctions whose counters went down (flows reinstalled)

    def observe(self, conjs: dict[int, RuleStats], owner: Owner) -> None:
        last, self._last = self._last, {}
        for cid, raw in conjs.items():
            cur = raw.traffic()
            o = owner(cid)
            self._last[cid] = (o[0] if o else None, cur)
            if not self.primed or o is None:
                continue
            prev = last.get(cid)
            if prev is None or (prev[0] is not None and prev[0] != o[0]):
                delta = cur  # flows new since the last reading
            elif cur.covers(prev[1]):
                delta = cur - prev[1]
            else:
                self.resets += 1
                delta = cur  # reinstalled: counting again from 0
            if delta != TrafficStats():
                self._add((o[1], o[2]), delta)
        self.primed = True

    def _add(self, key: tuple[str, str], delta: TrafficStats) -> None:
        got = self._totals.get(key)
        if got is None:
            self._started += 1
            self._totals[key] = (f"{self.run}.{self._started}", delta)
        else:
            self._totals[key] = (got[0], got[1] + delta)

    def retain(self, policies: Container[str]) -> None:
        """Forget the totals of policies this node no longer has (seen again: a new run)."""
        for key in [k for k in self._totals if k[0] not in policies]:
            del self._totals[key]

    def saved(self) -> dict[str, Any]:
        """What `restore` takes back: the totals with their tokens (the agent's state file)."""
        return {
            "totals": [
                [policy, rule, since, s.packets, s.bytes, s.sessions]
                for (policy, rule), (since, s) in sorted(self._totals.items())
            ]
        }

    def restore(self, saved: Any) -> int:
        """Continue the totals a previous agent run saved, under their tokens (the controller
        keeps taking them as the same runs: nothing restarts, nothing is counted twice). The
        readings still start with a baseline. Malformed entries are skipped; returns how many
        were taken."""
        taken = 0
        entries = saved.get("totals") if isinstance(saved, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            try:
                policy, rule, since, packets, nbytes, sessions = entry
            except (TypeError, ValueError):
                continue
            counts = (packets, nbytes, sessions)
            if not all(isinstance(x, str) for x in (policy, rule, since)) or not all(
                type(x) is int and x >= 0 for x in counts
            ):
                continue
            self._totals[(policy, rule)] = (since, TrafficStats(packets, nbytes, sessions))
            taken += 1
        return taken

    def totals(self) -> dict[tuple[str, str], TrafficStats]:
        return {k: v[1] for k, v in self._totals.items()}

    def summary(self, node: str) -> NodeStatsSummary:
        return NodeStatsSummary(
            node,
            tuple(
                RuleTraffic(policy, rule, since, stats)
                for (policy, rule), (since, stats) in sorted(self._totals.items())
            ),
        )
