"""PodConfigurator with fake netlink and OVSDB: rollback on failure, idempotent DEL, GC."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

import pytest

from antrea.agent import netlink
from antrea.agent.cniserver import podconfig
from antrea.agent.cniserver.podconfig import PodConfigurator, Request
from antrea.agent.interfacestore import InterfaceStore
from antrea.agent.ipam import IPAM
from antrea.agent.openflow.builder import FlowBuilder, NodeConfig
from antrea.apis.cni.errors import CONFIG_INTERFACE_FAILURE, CniError
from antrea.ovs.openflow.client import CoalescingWriter, FlowClient
from antrea.testbed.openflow import RecordingTransport


class FakeOvsdb:
    """The per-pod operations of `OvsdbClient` (one transaction each)."""

    def __init__(self) -> None:
        self.ports: dict[str, dict[str, Any]] = {}
        self.next_ofport = 3
        self.fail_add = False
        self.ignore_requests = False
        self.transactions = 0

    async def attach_port(
        self,
        bridge: str,
        port: str,
        *,
        ofport_request: int | None = None,
        external_ids: dict[str, str] | None = None,
    ) -> int:
        if self.fail_add:
            raise RuntimeError("ovsdb down")
        self.transactions += 1
        if ofport_request is not None and not self.ignore_requests:
            ofport = ofport_request
        else:
            ofport, self.next_ofport = self.next_ofport, self.next_ofport + 1
        self.ports[port] = {"ofport": ofport, "external_ids": dict(external_ids or {})}
        return ofport

    async def remove_port(self, bridge: str, port: str) -> None:
        self.transactions += 1
        self.ports.pop(port, None)

    async def interface_ofport(self, name: str) -> int:
        return int(self.ports.get(name, {}).get("ofport", -1))


@pytest.fixture
def links(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    existing: set[str] = set()

    def create(**kw: Any) -> netlink.VethResult:
        existing.add(kw["host_name"])
        n = len(existing)
        if kw.get("netns") == "/var/run/netns/gone":
            existing.discard(kw["host_name"])
            raise netlink.NetnsGone(kw["netns"])
        pod_mac = kw.get("pod_mac") or f"0a:00:00:00:00:{n:02x}"
        return netlink.VethResult(f"02:00:00:00:00:{n:02x}", pod_mac, 2)

    monkeypatch.setattr(netlink, "create_pod_veth", create)
    monkeypatch.setattr(netlink, "delete_link", lambda n: existing.discard(n) or True)

    def delete_links(names: list[str]) -> int:
        gone = [n for n in names if n in existing]
        existing.difference_update(names)
        return len(gone)

    monkeypatch.setattr(netlink, "delete_links", delete_links)
    monkeypatch.setattr(netlink, "link_exists", lambda n: n in existing)
    monkeypatch.setattr(netlink, "send_gratuitous_arp", lambda *a: None)
    return existing


def make(tmp_path: Path) -> tuple[PodConfigurator, FakeOvsdb, RecordingTransport, IPAM]:
    t = RecordingTransport()
    ovsdb = FakeOvsdb()
    ipam = IPAM(ipaddress.IPv4Network("10.244.1.0/24"), tmp_path)
    b = FlowBuilder(
        NodeConfig(
            pod_cidr=ipam.cidr,
            gateway_ip=ipam.gateway,
            gateway_mac="02:00:00:00:00:01",
        ),
        round_num=1,
    )
    pods = PodConfigurator(
        bridge="br-int",
        ovsdb=ovsdb,  # type: ignore[arg-type]
        writer=CoalescingWriter(FlowClient(t)),
        builder=lambda: b,
        store=InterfaceStore(),
        ipam=ipam,
        mtu=1450,
    )
    return pods, ovsdb, t, ipam


def req(cid: str = "c1", command: str = "ADD", ifname: str = "eth0") -> Request:
    return Request(
        command=command,
        container_id=cid,
        netns="/var/run/netns/p",
        ifname=ifname,
        args=podconfig.parse_cni_args("K8S_POD_NAMESPACE=x;K8S_POD_NAME=a"),
        config={},
    )


async def test_add_then_del(tmp_path: Path, links: set[str]) -> None:
    pods, ovsdb, t, ipam = make(tmp_path)
    result = await pods.add(req())
    assert result["ips"][0] == {"address": "10.244.1.2/24", "gateway": "10.244.1.1", "interface": 1}
    assert result["interfaces"][1]["mtu"] == 1450
    assert len(ovsdb.ports) == 1 and len(links) == 1 and t.flows
    await pods.delete(req(command="DEL"))
    await pods.delete(req(command="DEL"))
    assert ovsdb.ports == {} and links == set() and t.flows == {} and ipam.allocations() == []


async def test_failed_flow_install_rolls_everything_back(tmp_path: Path, links: set[str]) -> None:
    """A rejected bundle leaves no address, port, link or store entry behind."""
    pods, ovsdb, t, ipam = make(tmp_path)
    t.reject = 1
    with pytest.raises(CniError) as err:
        await pods.add(req())
    assert err.value.code == CONFIG_INTERFACE_FAILURE
    assert ovsdb.ports == {} and links == set() and ipam.allocations() == []
    assert pods.store.get("c1") is None


async def test_failed_port_add_rolls_back(tmp_path: Path, links: set[str]) -> None:
    pods, ovsdb, _, ipam = make(tmp_path)
    ovsdb.fail_add = True
    with pytest.raises(CniError):
        await pods.add(req())
    assert links == set() and ipam.allocations() == []


async def test_second_interface_is_refused(tmp_path: Path, links: set[str]) -> None:
    pods, *_ = make(tmp_path)
    await pods.add(req())
    with pytest.raises(CniError):
        await pods.add(req(ifname="net1"))
    assert len(links) == 1


async def test_gc_keeps_valid_attachments_only(tmp_path: Path, links: set[str]) -> None:
    pods, ovsdb, _, ipam = make(tmp_path)
    await pods.add(req("keep"))
    await pods.add(req("drop"))
    await ipam.allocate("leaked", "eth0")
    gc = Request("GC", "", "", "eth0", {}, {"cni.dev/valid-attachments": [
        {"containerID": "keep", "ifname": "eth0"}]})  # fmt: skip
    await pods.gc(gc)
    assert [c.container_id for c in pods.store.list()] == ["keep"]
    assert [a.container_id for a in ipam.allocations()] == ["keep"]
    assert len(ovsdb.ports) == 1


async def test_ofport_is_requested_and_flows_follow_the_real_one(
    tmp_path: Path, links: set[str]
) -> None:
    """Flows go in with the requested ofport; if OVS picked another, they are re-stated."""
    pods, ovsdb, t, _ = make(tmp_path)
    await pods.add(req("c1"))
    assert pods.store.get("c1").ofport == 3  # type: ignore[union-attr]
    ovsdb.ignore_requests = True
    ovsdb.next_ofport = 40
    await pods.add(req("c2"))
    assert pods.store.get("c2").ofport == 40  # type: ignore[union-attr]
    classifier = [f.match.in_port for f in t.table(0)]
    assert sorted(p for p in classifier if p is not None) == [3, 40] and None not in classifier


async def test_flows_use_the_chosen_mac_and_a_failed_veth_rolls_them_back(
    tmp_path: Path, links: set[str]
) -> None:
    """The pod MAC is picked before the veth, so the flows go in alongside; if the veth
    cannot be made, the flows, address and ofport reservation are undone."""
    pods, ovsdb, t, ipam = make(tmp_path)
    result = await pods.add(req("c1"))
    mac = result["interfaces"][1]["mac"]
    assert int(mac.split(":")[0], 16) & 0x03 == 0x02  # locally administered unicast
    assert any(f.match.dl_src == mac for f in t.table(10))
    gone = Request("ADD", "c2", "/var/run/netns/gone", "eth0", {}, {})
    with pytest.raises(CniError) as err:
        await pods.add(gone)
    assert err.value.code == CONFIG_INTERFACE_FAILURE
    assert [a.container_id for a in ipam.allocations()] == ["c1"]
    assert len(t.table(0)) == 1 and list(ovsdb.ports) == [pods.store.get("c1").interface_name]  # type: ignore[union-attr]
    assert pods._reserved == set()


async def test_concurrent_dels_share_link_deletions(tmp_path: Path, links: set[str]) -> None:
    pods, ovsdb, t, ipam = make(tmp_path)
    for i in range(6):
        await pods.add(req(f"c{i}"))
    await asyncio.gather(*(pods.delete(req(f"c{i}", command="DEL")) for i in range(6)))
    assert links == set() and ovsdb.ports == {} and ipam.allocations() == [] and t.flows == {}
    assert pods._links.calls < 6
