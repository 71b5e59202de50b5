"""`start(agent)`: the stream drives flows, readiness, status, the local API and metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, generate_latest

from antrea.agent.interfacestore import InterfaceConfig, InterfaceStore
from antrea.agent.networkpolicy import start
from antrea.agent.openflow.pipeline import TARGET_OFPORT
from antrea.apis.controlplane.codec import WatchEvent
from antrea.apis.controlplane.types import NetworkPolicyNodeStatus
from antrea.ovs.openflow.client import CoalescingWriter, FlowClient
from antrea.ovs.openflow.flow import Match, Proto
from antrea.ovs.ovsctl import DumpedFlow, parse_flow_line
from antrea.testbed.controlplane import (
    BOOKMARK,
    AddressGroup,
    AppliedToGroup,
    added,
    ingress,
    member,
    policy,
    tcp,
)
from antrea.testbed.openflow import RecordingTransport

A = member("x", "a", "10.244.1.10")
YB = member("y", "b", "10.244.2.20")


class FakeClient:
    def __init__(self, events: list[WatchEvent]) -> None:
        self._events = events
        self.statuses: list[NetworkPolicyNodeStatus] = []

    async def events(self) -> AsyncIterator[WatchEvent]:
        for ev in self._events:
            yield ev
        await asyncio.Event().wait()

    async def report_status(self, st: NetworkPolicyNodeStatus) -> bool:
        self.statuses.append(st)
        return True


class FakeOfctl:
    def __init__(self, rt: RecordingTransport) -> None:
        self.rt = rt
        self.traced: list[str] = []
        self.appctl_calls: list[tuple[str, ...]] = []
        self.packets = 7  # every flow's n_packets in a dump

    async def dump_flows(self, flow_filter: str = "", *, stats: bool = True) -> list[DumpedFlow]:
        from antrea.ovs.openflow.render import render_flow

        out = []
        for f in self.rt.flows.values():
            line = render_flow(f).replace(
                "cookie=", f"n_packets={self.packets}, n_bytes={self.packets * 100}, cookie="
            )
            parsed = parse_flow_line(line)
            if parsed is not None:
                out.append(parsed)
        return out

    async def appctl(self, *args: str) -> str:
        self.appctl_calls.append(args)
        return ""

    async def delete_flows(self, flow_filter: Any) -> None:  # the datapath settle's no-op
        pass

    async def trace(self, flow: str) -> str:
        self.traced.append(flow)
        return "Final flow: ...\nDatapath actions: 4"


def fake_agent(rt: RecordingTransport) -> Any:
    tasks: list[asyncio.Task[Any]] = []
    client = FlowClient(rt)
    agent = SimpleNamespace(
        app=web.Application(),
        registry=CollectorRegistry(),
        flow_client=client,
        writer=CoalescingWriter(client),
        round_num=3,
        interface_store=InterfaceStore(),
        node_name="n1",
        node=SimpleNamespace(gateway_ip=ipaddress.IPv4Address("10.244.1.1")),
        gateway_mac="aa:aa:aa:aa:aa:01",
        policy_ready=asyncio.Event(),
        controller_connected=False,
        ofctl=FakeOfctl(rt),
        tasks=tasks,
    )
    agent.add_task = lambda coro, name="": tasks.append(asyncio.create_task(coro)) or tasks[-1]
    return agent


async def test_hook_end_to_end() -> None:
    rt = RecordingTransport()
    agent = fake_agent(rt)
    agent.interface_store.add(
        InterfaceConfig("c1", "a", "x", "a-1", "eth0", ipaddress.IPv4Address("10.244.1.10"),
                        "02:00:00:00:00:0a", 3)
    )  # fmt: skip
    client = FakeClient(
        [
            added(AddressGroup("ag", frozenset({YB}))),
            added(AppliedToGroup("atg", frozenset({A}))),
            added(policy("p1", [ingress(groups=["ag"], services=[tcp(80)])], ["atg"])),
            BOOKMARK,
        ]
    )
    pa = start(agent, client=client)
    try:
        await asyncio.wait_for(agent.policy_ready.wait(), 5)
        assert agent.controller_connected
        await asyncio.sleep(0.01)
        assert [(s.policy, s.generation, s.realized) for s in client.statuses] == [("p1", 1, True)]
        assert all((f.cookie >> 48) == 3 for f in rt.flows.values())  # the agent's round
        assert not any(f.priority == 0 for f in rt.flows.values())  # misses are the pipeline's
        assert ("revalidator/wait",) in agent.ofctl.appctl_calls  # realized = enforced

        async with TestClient(TestServer(agent.app)) as http:
            resp = await http.get("/networkpolicies")
            data = await resp.json()
            assert data[0]["realized"] and data[0]["realizedGeneration"] == 1
            assert data[0]["rules"][0]["stats"]["sessions"] == 7
            assert data[0]["localPods"] == ["x/a"]
            resp = await http.get("/networkpolicyflows", params={"name": "np-p1", "namespace": "x"})
            flows = await resp.json()
            dumped = [d for d in (parse_flow_line(f["flow"]) for f in flows) if d is not None]
            realized = {
                c.conj_id for r in pa.reconciler.realized.values() for c in r.conjs.values()
            }
            assert realized and any(d.conj_id in realized for d in dumped)  # action flows
            assert all(d.conj_ids <= realized for d in dumped)
            isolation = Match(proto=Proto.IP, regs=(TARGET_OFPORT.match(3),))
            assert [d.parsed.exact for d in dumped if d.drops] == [isolation]
            resp = await http.get(
                "/ovstracing",
                params={"source": "x/a", "destination": "10.244.2.20", "flow": "tcp,tp_dst=80"},
            )
            trace = await resp.json()
            assert trace["flow"].startswith("in_port=3,dl_src=02:00:00:00:00:0a,")
            assert "dl_dst=aa:aa:aa:aa:aa:01,tcp," in trace["flow"]
            assert trace["flow"].endswith("tp_dst=80")
            resp = await http.get("/ovstracing", params={"source": "x/zz", "destination": "x/a"})
            assert resp.status == 404
            resp = await http.get("/addressgroups")
            assert (await resp.json())[0]["groupMembers"][0]["ips"] == ["10.244.2.20"]

        text = generate_latest(agent.registry).decode()
        assert "antrea_agent_ingress_networkpolicy_rules 1.0" in text
        assert "antrea_agent_networkpolicy_bundle_flow_operations_count 1.0" in text

        # a pod attached later is picked up through the interface store
        before = len(rt.table(100))
        b = member("x", "b", "10.244.1.20")
        pa.controller.handle(added(AppliedToGroup("atg", frozenset({A, b}))))
        await pa.controller.wait_idle()
        assert len(rt.table(100)) == before  # no port yet
        agent.interface_store.add(
            InterfaceConfig("c2", "b", "x", "b-1", "eth0", ipaddress.IPv4Address("10.244.1.20"),
                            "02:00:00:00:00:0b", 4)
        )  # fmt: skip
        await asyncio.sleep(0.01)
        await pa.controller.wait_idle()
        assert len(rt.table(100)) == before + 1
    finally:
        for t in agent.tasks:
            t.cancel()
        await asyncio.gather(*agent.tasks, return_exceptions=True)


class QueueClient(FakeClient):
    def __init__(self) -> None:
        super().__init__([])
        self.q: asyncio.Queue[WatchEvent] = asyncio.Queue()

    async def events(self) -> AsyncIterator[WatchEvent]:
        while True:
            yield await self.q.get()


async def test_persisted_state_is_the_fallback_until_the_controller_answers(tmp_path: Any) -> None:
    """Restart without a controller: the last state is realized; the real stream then resyncs."""
    from antrea.agent.networkpolicy.persist import snapshot_bytes, write_atomic

    # what a previous run received: p1 (x/a from y/b) and p-old
    first = FakeClient([])
    rt0 = RecordingTransport()
    a0 = fake_agent(rt0)
    a0.cfg = SimpleNamespace(stateDir=str(tmp_path))
    pa0 = start(a0, client=first)
    for ev in [
        added(AddressGroup("ag", frozenset({YB}))),
        added(AppliedToGroup("atg", frozenset({A}))),
        added(policy("p1", [ingress(groups=["ag"])], ["atg"])),
        added(policy("p-old", [ingress(groups=["ag"], services=[tcp(81)])], ["atg"])),
        BOOKMARK,
    ]:
        pa0.controller.handle(ev)
    await pa0.controller.wait_idle()
    assert pa0.state_file is not None
    write_atomic(pa0.state_file, snapshot_bytes(pa0.controller.cache))
    for t in a0.tasks:
        t.cancel()
    await asyncio.gather(*a0.tasks, return_exceptions=True)

    rt = RecordingTransport()
    agent = fake_agent(rt)
    agent.cfg = SimpleNamespace(stateDir=str(tmp_path))
    agent.interface_store.add(
        InterfaceConfig("c1", "a", "x", "a-1", "eth0", ipaddress.IPv4Address("10.244.1.10"),
                        "02:00:00:00:00:0a", 3)
    )  # fmt: skip
    client = QueueClient()
    pa = start(agent, client=client)
    try:
        await pa.fallback(after=0.01)
        await asyncio.wait_for(agent.policy_ready.wait(), 5)
        assert set(pa.controller.cache.policies) == {"p1", "p-old"}
        assert len(rt.table(100)) == 1  # x/a isolated from the persisted state
        assert not agent.controller_connected
        # the controller answers: p-old is gone
        for ev in [
            added(AddressGroup("ag", frozenset({YB}))),
            added(AppliedToGroup("atg", frozenset({A}))),
            added(policy("p1", [ingress(groups=["ag"])], ["atg"])),
            BOOKMARK,
        ]:
            client.q.put_nowait(ev)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if agent.controller_connected and "p-old" not in pa.controller.cache.policies:
                break
        await pa.controller.wait_idle()
        assert set(pa.controller.cache.policies) == {"p1"}
        assert not any(f.match.tp_dst == 81 for f in rt.flows.values())
    finally:
        for t in agent.tasks:
            t.cancel()
        await asyncio.gather(*agent.tasks, return_exceptions=True)


async def test_controller_connected_follows_the_stream_through_an_outage() -> None:
    """True once a snapshot is complete, False as soon as the client loses the stream (not at
    the next reconnect), True again after the resync's BOOKMARK."""
    from antrea.agent.controlplane_client import STREAM_RESTART
    from antrea.apis.controlplane.codec import EventType

    class DroppingClient(QueueClient):
        on_disconnect: Any = None

    rt = RecordingTransport()
    agent = fake_agent(rt)
    client = DroppingClient()
    start(agent, client=client)
    try:
        client.q.put_nowait(BOOKMARK)
        await asyncio.wait_for(agent.policy_ready.wait(), 5)
        assert agent.controller_connected
        assert client.on_disconnect is not None
        client.on_disconnect()  # the connection broke; the client is backing off
        assert not agent.controller_connected
        client.q.put_nowait(WatchEvent(EventType.ERROR, message=STREAM_RESTART))
        client.q.put_nowait(BOOKMARK)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if agent.controller_connected:
                break
        assert agent.controller_connected
    finally:
        for t in agent.tasks:
            t.cancel()
        await asyncio.gather(*agent.tasks, return_exceptions=True)


class StatsClient(FakeClient):
    def __init__(self, events: list[WatchEvent]) -> None:
        super().__init__(events)
        self.summaries: list[Any] = []

    async def report_stats(self, summary: Any) -> bool:
        self.summaries.append(summary)
        return True


async def test_rule_counters_reported_to_the_controller_as_totals_per_rule_name() -> None:
    from antrea.agent.networkpolicy.stats import RuleTotals
    from antrea.apis.stats.types import TrafficStats

    rt = RecordingTransport()
    agent = fake_agent(rt)
    agent.interface_store.add(
        InterfaceConfig("c1", "a", "x", "a-1", "eth0", ipaddress.IPv4Address("10.244.1.10"),
                        "02:00:00:00:00:0a", 3)
    )  # fmt: skip
    named = dataclasses.replace(ingress(groups=["ag"], services=[tcp(80)]), name="allow-web")
    client = StatsClient(
        [
            added(AddressGroup("ag", frozenset({YB}))),
            added(AppliedToGroup("atg", frozenset({A}))),
            added(policy("p1", [named], ["atg"])),
            BOOKMARK,
        ]
    )
    pa = start(agent, client=client)
    try:
        await asyncio.wait_for(agent.policy_ready.wait(), 5)
        await pa.controller.wait_idle()
        pa.totals = RuleTotals(run="t")  # a fresh agent run: its first reading is a baseline
        assert await pa.collect_stats()
        assert client.summaries[-1].rules == ()
        agent.ofctl.packets = 10
        assert await pa.collect_stats()
        (r,) = client.summaries[-1].rules
        assert (r.policy, r.rule, r.since) == ("p1", "allow-web", "t.1")
        # one conjunction: its action flow (3 new sessions) and metric flow (3 more packets)
        assert r.stats == TrafficStats(packets=6, bytes=600, sessions=3)
    finally:
        for t in agent.tasks:
            t.cancel()
        await asyncio.gather(*agent.tasks, return_exceptions=True)
