"""The agent's one bundle transport: the held OpenFlow connection (or ``ovs-ofctl --bundle``),
metered.

`make_transport` picks the transport of ``flowTransport`` (``native``: a held OpenFlow 1.5
connection to the bridge's management socket, whose reconnection runs ``on_reconnect``, the
canary check; ``ofctl``: one ``ovs-ofctl --bundle`` process per bundle) and wraps it in
`MeteredTransport` (``antrea_agent_ovs_bundle_duration_seconds``,
``antrea_agent_ovs_bundle_flows`` and the bundle error count).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from antrea.agent.apiserver import AgentMetrics
from antrea.agent.config import AgentConfig
from antrea.ovs.errors import OvsError
from antrea.ovs.openflow.bundle import (
    BundleStream,
    FlowTransport,
    OfctlBundleTransport,
    open_stream,
)
from antrea.ovs.openflow.flow import Flow
from antrea.ovs.openflow.groups import Group
from antrea.ovs.openflow.native import OpenFlowTransport


class MeteredTransport:
    """The bundle transport with duration/size histograms and an error count."""

    def __init__(self, inner: FlowTransport, metrics: AgentMetrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.errors = 0

    def stream(self) -> BundleStream:
        return _MeteredStream(open_stream(self.inner), self)

    async def bundle(
        self,
        *,
        add: Sequence[Flow] = (),
        modify: Sequence[Flow] = (),
        delete: Sequence[Flow] = (),
        set_groups: Sequence[Group] = (),
        delete_groups: Sequence[Group] = (),
    ) -> None:
        n = len(add) + len(modify) + len(delete) + len(set_groups) + len(delete_groups)
        if not n:
            return
        start = time.perf_counter()
        try:
            await self.inner.bundle(
                add=add,
                modify=modify,
                delete=delete,
                set_groups=set_groups,
                delete_groups=delete_groups,
            )
        except OvsError:
            self.errors += 1
            raise
        finally:
            self.metrics.bundle_duration.observe(time.perf_counter() - start)
            self.metrics.bundle_size.observe(n)


class _MeteredStream:
    """A streamed bundle of the inner transport, metered like a bundle from its first add
    to its commit."""

    def __init__(self, inner: BundleStream, meter: MeteredTransport) -> None:
        self.inner = inner
        self.meter = meter
        self.start: float | None = None
        self.staged = 0

    async def add(self, flows: Sequence[Flow]) -> None:
        if self.start is None:
            self.start = time.perf_counter()
        self.staged += len(flows)
        await self.inner.add(flows)

    async def commit(
        self, *, add: Sequence[Flow] = (), modify: Sequence[Flow] = (), delete: Sequence[Flow] = ()
    ) -> None:
        n = self.staged + len(add) + len(modify) + len(delete)
        start = self.start if self.start is not None else time.perf_counter()
        try:
            await self.inner.commit(add=add, modify=modify, delete=delete)
        except OvsError:
            self.meter.errors += 1
            raise
        finally:
            if n:
                self.meter.metrics.bundle_duration.observe(time.perf_counter() - start)
                self.meter.metrics.bundle_size.observe(n)

    async def discard(self) -> None:
        await self.inner.discard()


def make_transport(
    cfg: AgentConfig,
    target: str,
    metrics: AgentMetrics,
    *,
    on_reconnect: Callable[[], Awaitable[None]],
) -> MeteredTransport:
    inner: FlowTransport
    if cfg.flowTransport == "ofctl":
        inner = OfctlBundleTransport(target)
    else:
        # a held OpenFlow connection; when ovs-vswitchd restarts, check the canary at once
        inner = OpenFlowTransport(target, on_reconnect=on_reconnect)
    return MeteredTransport(inner, metrics)
