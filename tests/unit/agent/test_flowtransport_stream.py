"""The agent's metered transport streams through its inner transport and meters a streamed
bundle like a plain one (duration, size, errors)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from antrea.agent.apiserver import AgentMetrics
from antrea.agent.flowtransport import MeteredTransport
from antrea.ovs.errors import BundleRejected
from antrea.ovs.openflow import Drop, Flow, Match, RegMatch
from antrea.ovs.openflow.bundle import BufferedStream, open_stream
from antrea.ovs.openflow.flow import Proto
from antrea.testbed.openflow import RecordingTransport, StreamingRecorder


def f(port: int, cookie: int = 0) -> Flow:
    return Flow(90, 200, Match(proto=Proto.IP, regs=(RegMatch(1, port),)), (Drop(),), cookie)


async def test_a_streamed_bundle_is_metered_like_a_bundle() -> None:
    registry = CollectorRegistry()
    inner = StreamingRecorder(refuse=lambda x: x.cookie == 9)
    t = MeteredTransport(inner, AgentMetrics(registry))
    stream = open_stream(t)
    await stream.add([f(1), f(2)])
    await stream.commit(add=[f(3)])
    assert inner.commits == 1 and len(inner.flows) == 3
    assert registry.get_sample_value("antrea_agent_ovs_bundle_flows_sum") == 3
    assert registry.get_sample_value("antrea_agent_ovs_bundle_duration_seconds_count") == 1
    stream = open_stream(t)
    await stream.add([f(4, cookie=9)])
    with pytest.raises(BundleRejected):
        await stream.commit()
    assert t.errors == 1 and len(inner.flows) == 3
    stream = open_stream(t)
    await stream.add([f(5)])
    await stream.discard()
    assert inner.discards == 1 and len(inner.flows) == 3
    # a transport without streams: buffered, then one plain bundle
    plain = RecordingTransport()
    buffered = MeteredTransport(plain, AgentMetrics(CollectorRegistry())).stream()
    await buffered.add([f(6)])
    await buffered.commit()
    assert len(plain.bundles) == 1 and isinstance(open_stream(plain), BufferedStream)
