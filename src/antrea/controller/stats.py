"""Per-policy, per-rule traffic counters aggregated across nodes (``stats.antrea.io``).

Agents report totals per (policy, rule name) under a ``since`` token (`antrea.apis.stats.types`).
For each (policy, rule, node) the aggregator keeps the current run's counters and a base: the sum
of the runs that ended (a new token from that node: the agent restarted, or the rule left the
node and came back). So:

- a repeated, late or reordered report of a run never counts twice (a run's counters are the
  component-wise maximum of what was reported under its token; an ended token is ignored);
- a restart never makes a policy's counters go backwards (the ended run is folded into the base);
- a node that leaves the policy's span keeps what it counted; only deleting the policy forgets.

Reports for policies the controller does not have are dropped. Counters live in the leader's
memory: a new leader starts from what the agents report to it (each run's totals since it began).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from antrea.apis.stats.types import NodeStatsSummary, TrafficStats

RETIRED_KEPT = 8  # ended tokens remembered per (rule, node), so a late report is ignored


@dataclass
class _Run:
    since: str
    stats: TrafficStats
    retired: deque[str] = field(default_factory=lambda: deque(maxlen=RETIRED_KEPT))


@dataclass
class _PolicyCounters:
    base: dict[str, TrafficStats] = field(default_factory=dict)  # rule -> ended runs' sum
    runs: dict[tuple[str, str], _Run] = field(default_factory=dict)  # (rule, node) -> run


class StatsAggregator:
    def __init__(self, known: Callable[[str], bool] = lambda _p: True) -> None:
        self.known = known
        self._by_policy: dict[str, _PolicyCounters] = {}
        self.dropped = 0  # reports of rules of unknown policies

    def report(self, summary: NodeStatsSummary) -> None:
        for r in summary.rules:
            if r.policy not in self._by_policy and not self.known(r.policy):
                self.dropped += 1
                continue
            pc = self._by_policy.setdefault(r.policy, _PolicyCounters())
            key = (r.rule, summary.node)
            run = pc.runs.get(key)
            if run is None:
                pc.runs[key] = _Run(r.since, r.stats)
            elif run.since == r.since:
                run.stats = run.stats.max(r.stats)
            elif r.since in run.retired:
                continue  # a late report of a run already folded into the base
            else:
                pc.base[r.rule] = pc.base.get(r.rule, TrafficStats()) + run.stats
                run.retired.append(run.since)
                run.since, run.stats = r.since, r.stats

    def forget(self, policy: str) -> None:
        self._by_policy.pop(policy, None)

    def rules(self, policy: str) -> dict[str, TrafficStats]:
        """Counters per rule name ("" collects the unnamed rules), summed over nodes."""
        pc = self._by_policy.get(policy)
        if pc is None:
            return {}
        out = dict(pc.base)
        for (rule, _node), run in pc.runs.items():
            out[rule] = out.get(rule, TrafficStats()) + run.stats
        return out

    def total(self, policy: str) -> TrafficStats:
        return sum(self.rules(policy).values(), TrafficStats())

    def policies(self) -> list[str]:
        return list(self._by_policy)
