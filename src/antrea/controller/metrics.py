"""Controller Prometheus metrics: own registry, Prometheus naming, Antrea's names noted.

- ``antrea_controller_network_policy_processing_duration_seconds`` (histogram, label
  ``resource``; upstream ``..._network_policy_sync_duration_milliseconds``)
- ``antrea_controller_network_policy_batch_duration_seconds`` (histogram: events that queued up
  while the compiler was busy are applied as one batch, computation at the end)
- ``antrea_controller_{network_policy,address_group,applied_to_group}_processed_total``
  (counters; upstream ``..._processed``)
- ``antrea_controller_input_queue_length`` (gauge; upstream ``antrea_controller_length_*_queue``)
- ``antrea_controller_watch_queue_length`` (gauge: frames pending for all agents)
- ``antrea_controller_{network_policies,address_groups,applied_to_groups}`` (gauges: counts)
- ``antrea_controller_connected_agents`` (gauge: nodes with an open stream)
- ``antrea_controller_watchers_dropped_total`` (counter: slow streams closed)
- ``antrea_controller_is_leader`` (gauge 0/1)
- ``antrea_controller_token_reviews_total`` (counter: TokenReview cache misses)

Values that are cheap to read at scrape time (object counts, connected agents, queue lengths)
come from a custom collector over the live state instead of being updated on every change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from antrea.apis.controlplane.types import Kind
from antrea.util.metrics import add_runtime_collectors

_PROCESSED = {
    Kind.NETWORK_POLICY: "network_policy",
    Kind.ADDRESS_GROUP: "address_group",
    Kind.APPLIED_TO_GROUP: "applied_to_group",
}
_COUNT_NAMES = {
    Kind.NETWORK_POLICY: "antrea_controller_network_policies",
    Kind.ADDRESS_GROUP: "antrea_controller_address_groups",
    Kind.APPLIED_TO_GROUP: "antrea_controller_applied_to_groups",
}


@dataclass
class LiveState:
    """What the collector reads at scrape time."""

    object_counts: Callable[[], dict[Kind, int]]
    connected_agents: Callable[[], int]
    input_queue_length: Callable[[], int]
    watch_queue_length: Callable[[], int]
    is_leader: Callable[[], bool]


class _LiveCollector(Collector):
    def __init__(self, state: LiveState) -> None:
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self.state
        counts = s.object_counts()
        for kind, name in _COUNT_NAMES.items():
            yield GaugeMetricFamily(name, f"{kind} objects computed", value=counts.get(kind, 0))
        yield GaugeMetricFamily(
            "antrea_controller_connected_agents",
            "Agents with an open watch stream",
            value=s.connected_agents(),
        )
        yield GaugeMetricFamily(
            "antrea_controller_input_queue_length",
            "Kubernetes events received and not yet processed",
            value=s.input_queue_length(),
        )
        yield GaugeMetricFamily(
            "antrea_controller_watch_queue_length",
            "Frames queued for all agents and not yet written",
            value=s.watch_queue_length(),
        )
        yield GaugeMetricFamily(
            "antrea_controller_is_leader",
            "1 when this controller holds the leader lease",
            value=1 if s.is_leader() else 0,
        )


class ControllerMetrics:
    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # process-wide: no *_created
        self.registry = CollectorRegistry(auto_describe=True)
        add_runtime_collectors(self.registry)
        self.processing = Histogram(
            "antrea_controller_network_policy_processing_duration_seconds",
            "Time to apply one Kubernetes event to the computed policy state",
            ["resource"],
            buckets=(
                0.0001,
                0.00025,
                0.0005,
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1.0,
                2.5,
                5.0,
                10.0,
            ),
            registry=self.registry,
        )
        self.batch = Histogram(
            "antrea_controller_network_policy_batch_duration_seconds",
            "Time to apply a batch of queued Kubernetes events, computation included",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=self.registry,
        )
        self.processed = {
            kind: Counter(
                f"antrea_controller_{stem}_processed",
                f"{kind} changes distributed",
                registry=self.registry,
            )
            for kind, stem in _PROCESSED.items()
        }
        self.watchers_dropped = Counter(
            "antrea_controller_watchers_dropped",
            "Agent watch streams closed because they could not keep up",
            registry=self.registry,
        )
        self.token_reviews = Counter(
            "antrea_controller_token_reviews",
            "TokenReviews sent to the Kubernetes API (cache misses)",
            registry=self.registry,
        )

    def bind(self, state: LiveState) -> None:
        self.registry.register(_LiveCollector(state))
