"""Per-policy realization status reported by agents, aggregated per policy ("2/2 nodes realized").

An agent POSTs a `NetworkPolicyNodeStatus` after realizing (or failing to realize) a policy
generation. A node counts as realized for a policy when its latest report is ``realized`` for
the policy's current generation (or a newer one); the desired count is the policy's span size.
Reports from nodes outside the span are kept (the span may grow back) but not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from antrea.apis.controlplane.types import NetworkPolicyNodeStatus

# What an agent reports (realized=False) while a policy is still on its way rather than failed
# (agent/networkpolicy/controller.py `policy_state`).
IN_PROGRESS = frozenset({"realizing", "waiting for groups"})


@dataclass(frozen=True)
class PolicyStatus:
    current: int
    desired: int
    failed: tuple[str, ...] = ()  # nodes reporting realized=False for this generation
    messages: tuple[tuple[str, str], ...] = ()  # (node, message) of those reports

    @property
    def phase(self) -> str:
        if self.failed:
            return "Failed"
        if self.desired == 0 or self.current >= self.desired:
            return "Realized"
        return "Realizing"

    def __str__(self) -> str:
        return f"{self.current}/{self.desired}"


class StatusAggregator:
    def __init__(self) -> None:
        self._by_policy: dict[str, dict[str, NetworkPolicyNodeStatus]] = {}
        # Called with the policy's name after each report (the leader's status writer).
        self.on_report: Callable[[str], None] | None = None

    def report(self, st: NetworkPolicyNodeStatus) -> None:
        self._by_policy.setdefault(st.policy, {})[st.node] = st
        if self.on_report is not None:
            self.on_report(st.policy)

    def forget(self, policy: str) -> None:
        self._by_policy.pop(policy, None)

    def forget_node(self, node: str) -> None:
        for per_node in self._by_policy.values():
            per_node.pop(node, None)

    def status(self, policy: str, generation: int, span: frozenset[str]) -> PolicyStatus:
        per_node = self._by_policy.get(policy, {})
        current = 0
        failed = []
        messages = []
        for node in span:
            st = per_node.get(node)
            if st is None or st.generation < generation:
                continue
            if st.realized:
                current += 1
            elif st.message in IN_PROGRESS:
                continue  # still on its way: realizing, not failed
            else:
                failed.append(node)
                messages.append((node, st.message))
        return PolicyStatus(current, len(span), tuple(sorted(failed)), tuple(sorted(messages)))

    def node_reports(self, policy: str) -> dict[str, NetworkPolicyNodeStatus]:
        return dict(self._by_policy.get(policy, {}))
