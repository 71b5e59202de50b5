"""Prometheus metrics of the policy realization, registered in the agent's registry.

Upstream names where they exist (antrea.md §5): ``antrea_agent_ingress_networkpolicy_rules``,
``antrea_agent_egress_networkpolicy_rules``, ``antrea_agent_networkpolicies`` (gauges,
read from the live state at scrape time). Ours, in Prometheus conventions:

- ``antrea_agent_networkpolicy_bundle_flow_operations`` (histogram): flow adds+modifies+deletes
  per bundle sent by the policy realization;
- ``antrea_agent_networkpolicy_bundle_duration_seconds`` (histogram): time for the switch to
  take one such bundle (plan + ``ovs-ofctl --bundle``);
- ``antrea_agent_networkpolicy_bundle_errors_total`` (counter): bundles the switch rejected
  (upstream ``antrea_agent_ovs_flow_ops_error_count``);
- ``antrea_agent_networkpolicy_rule_errors`` (gauge): rules that currently cannot be realized
  (kept isolated);
- ``antrea_agent_networkpolicy_rule_failures_total{stage}`` (counter): rule realizations that
  failed (one per failed attempt, retries included), by stage: ``plan`` (the planner raised),
  ``apply`` (the switch refused or the renderer could not render its flows), ``crash``
  (anything else); each failed rule kept its isolation;
- ``antrea_agent_networkpolicy_flows`` (gauge): flows owned by the policy realization;
- ``antrea_agent_networkpolicy_initial_sync_duration_seconds`` (gauge): first stream event to
  the initial policy set realized.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from antrea.apis.controlplane.types import Direction

_OPS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)
_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Live(Collector):
    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self.read()
        yield GaugeMetricFamily(
            "antrea_agent_ingress_networkpolicy_rules",
            "Ingress NetworkPolicy rules realized on this node.",
            value=s["rules"].get(Direction.IN, 0),
        )
        yield GaugeMetricFamily(
            "antrea_agent_egress_networkpolicy_rules",
            "Egress NetworkPolicy rules realized on this node.",
            value=s["rules"].get(Direction.OUT, 0),
        )
        yield GaugeMetricFamily(
            "antrea_agent_networkpolicies",
            "NetworkPolicies received for this node.",
            value=s["policies"],
        )
        yield GaugeMetricFamily(
            "antrea_agent_networkpolicy_rule_errors",
            "Rules that currently cannot be realized (their pods are kept isolated).",
            value=s["rule_errors"],
        )
        yield GaugeMetricFamily(
            "antrea_agent_networkpolicy_flows",
            "OpenFlow flows owned by the NetworkPolicy realization.",
            value=s["flows"],
        )
        if s.get("initial_sync_seconds") is not None:
            yield GaugeMetricFamily(
                "antrea_agent_networkpolicy_initial_sync_duration_seconds",
                "From the first stream event to the initial policy set realized.",
                value=s["initial_sync_seconds"],
            )


class PolicyMetrics:
    def __init__(self, registry: Any, read: Callable[[], dict[str, Any]]) -> None:
        self.bundle_ops = Histogram(
            "antrea_agent_networkpolicy_bundle_flow_operations",
            "Flow operations (add, modify, delete) per bundle of the policy realization.",
            buckets=_OPS_BUCKETS,
            registry=registry,
        )
        self.bundle_seconds = Histogram(
            "antrea_agent_networkpolicy_bundle_duration_seconds",
            "Time for one policy bundle to be planned and accepted by the switch.",
            buckets=_SECONDS_BUCKETS,
            registry=registry,
        )
        self.bundle_errors = Counter(
            "antrea_agent_networkpolicy_bundle_errors",
            "Policy bundles rejected by the switch.",
            registry=registry,
        )
        self.rule_failures = Counter(
            "antrea_agent_networkpolicy_rule_failures",
            "Rule realizations that failed (the rule's pods were kept isolated), by stage.",
            ["stage"],
            registry=registry,
        )
        registry.register(_Live(read))

    def observe_batch(self, result: Any) -> None:
        """Count the failed rules of one realization batch (`BatchResult`)."""
        for rid in result.failed:
            self.rule_failures.labels(result.failed_stage.get(rid, "apply")).inc()

    def observe_bundle(self, ops: int, seconds: float, ok: bool) -> None:
        if ok:
            self.bundle_ops.observe(ops)
            self.bundle_seconds.observe(seconds)
        else:
            self.bundle_errors.inc()
