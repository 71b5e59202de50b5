"""Node routes: flows and host routes follow the Node list (sync, add, change, delete)."""

from __future__ import annotations

import ipaddress

import pytest

from antrea.agent import noderoute
from antrea.agent.kube import NodeEvent, NodeEventKind, node_info
from antrea.agent.openflow.builder import FlowBuilder, NodeConfig
from antrea.ovs.openflow.client import CoalescingWriter, FlowClient
from antrea.ovs.openflow.render import render_match
from antrea.testbed.fakekube import node_object
from antrea.testbed.openflow import RecordingTransport


def make(
    monkeypatch: pytest.MonkeyPatch, *, encap: bool = True
) -> tuple[noderoute.NodeRouteController, RecordingTransport, dict[str, noderoute.RouteSpec]]:
    routes: dict[str, noderoute.RouteSpec] = {}
    monkeypatch.setattr(noderoute, "_install_route", lambda s: routes.__setitem__(str(s.dst), s))
    monkeypatch.setattr(noderoute, "_delete_route", lambda d: routes.pop(str(d), None))
    monkeypatch.setattr(
        noderoute, "_our_routes", lambda: [ipaddress.IPv4Network(k) for k in routes]
    )
    t = RecordingTransport()
    b = FlowBuilder(
        NodeConfig(
            pod_cidr=ipaddress.IPv4Network("10.244.1.0/24"),
            gateway_ip=ipaddress.IPv4Address("10.244.1.1"),
            gateway_mac="02:00:00:00:00:01",
            encap=encap,
        ),
        round_num=1,
    )
    ctrl = noderoute.NodeRouteController(
        node_name="node1",
        writer=CoalescingWriter(FlowClient(t)),
        builder=lambda: b,
        encap=encap,
        gateway_dev="gw0",
        transport_dev="br-phy",
    )
    return ctrl, t, routes


def nodes(*specs: tuple[str, str, str]) -> tuple:  # type: ignore[type-arg]
    return tuple(node_info(node_object(*s)) for s in specs)


async def test_sync_add_and_delete(monkeypatch: pytest.MonkeyPatch) -> None:
    ctrl, t, routes = make(monkeypatch)
    await ctrl.handle(
        NodeEvent(
            NodeEventKind.SYNC,
            nodes(
                ("node1", "10.244.1.0/24", "172.30.0.1"), ("node2", "10.244.2.0/24", "172.30.0.2")
            ),
        )
    )
    assert ctrl.synced.is_set() and list(ctrl.nodes) == ["node2"]
    spec = routes["10.244.2.0/24"]
    assert (str(spec.gateway), spec.dev, spec.onlink) == ("10.244.2.1", "gw0", True)
    assert any("10.244.2.0/24" in render_match(f.match) for f in t.table(70))
    await ctrl.handle(
        NodeEvent(NodeEventKind.DELETED, nodes(("node2", "10.244.2.0/24", "1.1.1.1")))
    )
    assert routes == {} and not t.table(70)


async def test_noencap_routes_via_node_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    ctrl, t, routes = make(monkeypatch, encap=False)
    await ctrl.handle(
        NodeEvent(NodeEventKind.ADDED, nodes(("node3", "10.244.3.0/24", "172.30.0.3")))
    )
    spec = routes["10.244.3.0/24"]
    assert (str(spec.gateway), spec.dev, spec.onlink) == ("172.30.0.3", "br-phy", False)
    assert t.flows == {}


async def test_resync_removes_vanished_nodes_and_stale_routes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctrl, _, routes = make(monkeypatch)
    routes["10.244.9.0/24"] = noderoute.RouteSpec(
        ipaddress.IPv4Network("10.244.9.0/24"), ipaddress.IPv4Address("10.244.9.1"), "gw0", True
    )
    await ctrl.handle(
        NodeEvent(NodeEventKind.SYNC, nodes(("node2", "10.244.2.0/24", "172.30.0.2")))
    )
    assert set(routes) == {"10.244.2.0/24"}
