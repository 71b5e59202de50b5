"""What an agent reports about the traffic its policy rules matched.

An agent reports, per (policy, rule name), the counters it has accumulated since ``since``: a
token naming one run of that counter on that node (the agent process and the rule's appearance on
the node). Counters under one token only grow; a new token means "a new counter starting at 0".
Reports are totals, not deltas, so sending one twice, late, or to a new leader never counts
anything twice (docs/design/networkpolicy-agent.md, "Stats").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TrafficStats:
    packets: int = 0
    bytes: int = 0
    sessions: int = 0

    def __add__(self, other: TrafficStats) -> TrafficStats:
        return TrafficStats(
            self.packets + other.packets, self.bytes + other.bytes, self.sessions + other.sessions
        )

    def __sub__(self, other: TrafficStats) -> TrafficStats:
        return TrafficStats(
            self.packets - other.packets, self.bytes - other.bytes, self.sessions - other.sessions
        )

    def covers(self, other: TrafficStats) -> bool:
        """Every counter at least ``other``'s."""
        return (
            self.packets >= other.packets
            and self.bytes >= other.bytes
            and self.sessions >= other.sessions
        )

    def max(self, other: TrafficStats) -> TrafficStats:
        return TrafficStats(
            max(self.packets, other.packets),
            max(self.bytes, other.bytes),
            max(self.sessions, other.sessions),
        )

    def to_json(self) -> dict[str, int]:
        return {"packets": self.packets, "bytes": self.bytes, "sessions": self.sessions}


@dataclass(frozen=True, slots=True)
class RuleTraffic:
    policy: str  # internal NetworkPolicy name (the source policy's UID)
    rule: str  # the rule's name ("" for an unnamed rule: counted in the policy's total only)
    since: str  # the counter's run on this node (see the module docstring)
    stats: TrafficStats


@dataclass(frozen=True, slots=True)
class NodeStatsSummary:
    node: str
    rules: tuple[RuleTraffic, ...]
