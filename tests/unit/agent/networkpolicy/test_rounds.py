"""Rounds never mix: a restarted agent's conjunctions never share an ID with the previous
round's flows still in the switch (issue 9, item 3)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from antrea.agent.interfacestore import InterfaceConfig, InterfaceStore
from antrea.agent.networkpolicy import start
from antrea.agent.networkpolicy.ids import ConjIDAllocator, installed_conj_ids
from antrea.agent.networkpolicy.reconciler import PolicyReconciler
from antrea.apis.controlplane.codec import WatchEvent
from antrea.apis.controlplane.types import NetworkPolicyNodeStatus
from antrea.ovs.openflow.client import CoalescingWriter, FlowClient
from antrea.ovs.openflow.render import render_flow
from antrea.ovs.ovsctl import DumpedFlow, parse_flow_line
from antrea.testbed.controlplane import (
    BOOKMARK,
    AppliedToGroup,
    IPBlock,
    added,
    flows_allow,
    ingress,
    member,
    policy,
)
from antrea.testbed.openflow import RecordingTransport

A = member("x", "a", "10.244.1.10")
B = member("x", "b", "10.244.1.20")
OFPORTS = {A.pod: 3, B.pod: 4}
PB = policy("pb", [ingress(blocks=[IPBlock("10.9.9.0/24")])], ["atg-b"])
OLD = [  # x/a accepts 10.1/16, x/b 10.9.9/24
    added(AppliedToGroup("atg-a", frozenset({A}))),
    added(AppliedToGroup("atg-b", frozenset({B}))),
    added(policy("pa", [ingress(blocks=[IPBlock("10.1.0.0/16")])], ["atg-a"])),
    added(PB),
]
NEW = [  # changed while the agent was down: pa is gone, x/b also accepts 10.2/16
    added(AppliedToGroup("atg-b", frozenset({B}))),
    added(PB),
    added(policy("pb2", [ingress(blocks=[IPBlock("10.2.0.0/16")])], ["atg-b"])),
]


class FakeClient:
    def __init__(self, events: list[WatchEvent]) -> None:
        self._events = events

    async def events(self) -> AsyncIterator[WatchEvent]:
        for ev in self._events:
            yield ev
        await asyncio.Event().wait()

    async def report_status(self, st: NetworkPolicyNodeStatus) -> bool:
        return True


class FakeOfctl:
    """dump-flows of the recording switch (the previous round's flows are in it)."""

    def __init__(self, rt: RecordingTransport) -> None:
        self.rt = rt

    async def dump_flows(self, flow_filter: str = "", *, stats: bool = True) -> list[DumpedFlow]:
        flows = (parse_flow_line(render_flow(f)) for f in self.rt.flows.values())
        return [f for f in flows if f is not None]

    async def appctl(self, *args: str) -> str:
        return ""

    async def delete_flows(self, flow_filter: Any) -> None:  # the datapath settle's no-op
        pass


def restarted_agent(rt: RecordingTransport, round_num: int) -> Any:
    client = FlowClient(rt)
    store = InterfaceStore()
    for i, m in enumerate((A, B)):
        store.add(
            InterfaceConfig(f"c{i}", m.pod.name, m.pod.namespace, f"{m.pod.name}-1", "eth0",
                            ipaddress.IPv4Address(m.ips[0]), f"02:00:00:00:00:0{i}",
                            OFPORTS[m.pod])
        )  # fmt: skip
    tasks: list[asyncio.Task[Any]] = []
    agent = SimpleNamespace(
        app=web.Application(),
        registry=CollectorRegistry(),
        flow_client=client,
        writer=CoalescingWriter(client),
        round_num=round_num,
        interface_store=store,
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


async def round_flows(events: list[WatchEvent], round_num: int, rt: RecordingTransport) -> None:
    from antrea.agent.networkpolicy.controller import NetworkPolicyController

    rec = PolicyReconciler(
        FlowClient(rt), round_num=round_num, ofport_of=OFPORTS.get, install_miss_flows=True
    )
    ctl = NetworkPolicyController(node_name="n1", reconciler=rec)
    for ev in events:
        ctl.handle(ev)
    await ctl.realize_dirty()


def allows(rt: RecordingTransport, src: str, dst: Any) -> bool:
    return flows_allow(
        rt.flows.values(),
        src_ip=src,
        dst_ip=dst.ips[0],
        dst_ofport=OFPORTS[dst.pod],
        proto="tcp",
        port=80,
        src_local=False,
    )


async def test_restarted_agent_never_reuses_an_installed_conj_id() -> None:
    old_only, new_only, both = RecordingTransport(), RecordingTransport(), RecordingTransport()
    await round_flows(OLD, 2, old_only)
    await round_flows(NEW, 3, new_only)
    await round_flows(OLD, 2, both)  # what the switch holds when the agent comes back
    dumped = [parse_flow_line(render_flow(f)) for f in both.flows.values()]
    old_ids = installed_conj_ids(f for f in dumped if f is not None)
    assert old_ids == {1, 2}

    agent = restarted_agent(both, 3)
    pa = start(agent, client=FakeClient([*NEW, BOOKMARK]))
    try:
        await asyncio.wait_for(agent.policy_ready.wait(), 5)
        # the new round is installed, the old one not deleted yet: the moment of the leak
        new_ids = {c.conj_id for r in pa.reconciler.realized.values() for c in r.conjs.values()}
        assert new_ids and not new_ids & old_ids
        for src in ("10.1.0.5", "10.2.0.5", "10.3.0.5", "10.9.9.5"):
            for dst in (A, B):
                got = allows(both, src, dst)
                assert not got or allows(old_only, src, dst) or allows(new_only, src, dst), (
                    f"{src} -> {dst.pod} allowed by neither round"
                )
        assert allows(both, "10.2.0.5", B)  # the new policy is enforced
    finally:
        for t in agent.tasks:
            t.cancel()
        await asyncio.gather(*agent.tasks, return_exceptions=True)


def test_reserved_ids_are_never_handed_out() -> None:
    ids = ConjIDAllocator(delay=0)
    ids.reserve({1, 2, 4})
    got = [ids.allocate() for _ in range(3)]
    assert got == [3, 5, 6]
    ids.release(3)
    ids.confirm()
    assert ids.allocate() == 3


def test_installed_ids_are_read_from_clause_and_action_flows() -> None:
    lines = [
        " table=90, priority=200,ip,nw_src=10.0.0.0/8"
        " actions=conjunction(7,1/2),conjunction(9,1/3)",
        " table=90, priority=190,conj_id=12,ip actions=set_field:0xc->reg6,goto_table:105",
        " table=100, priority=200,ip,reg1=0x3 actions=drop",
    ]
    flows = [f for f in map(parse_flow_line, lines) if f is not None]
    assert installed_conj_ids(flows) == {7, 9, 12}
