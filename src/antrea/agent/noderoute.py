"""Routes to other nodes' pod subnets: flows (encap) and host routes (both modes).

encap: OVS sends a remote pod subnet through tun0 with tun_dst = that node's InternalIP; the
host reaches remote pods through gw0 with an on-link route via the remote gateway IP, which the
ARP responder answers with the global virtual MAC. noEncap: no tunnel flows; the host routes the
remote subnet via the remote node's IP on the transport interface, and pods reach it through gw0.

Host routes carry their own protocol number (`RT_PROTO`), so a restarted agent finds and removes
the ones of nodes that disappeared while it was down.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from pyroute2 import IPRoute

from antrea.agent import iptables
from antrea.agent.kube import NodeEvent, NodeEventKind, NodeInfo
from antrea.agent.openflow.builder import FlowBuilder
from antrea.agent.owners import NodeOwner
from antrea.ovs.openflow.client import CoalescingWriter

log = structlog.get_logger(__name__)

RT_PROTO = 0x5A  # routes installed by this agent (rtnetlink protocol field)


def node_owner(name: str) -> NodeOwner:
    return NodeOwner(name)


@dataclass(frozen=True, slots=True)
class RouteSpec:
    dst: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    dev: str
    onlink: bool


def _install_route(spec: RouteSpec) -> None:
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=spec.dev)
        if not idx:
            raise FileNotFoundError(f"no interface {spec.dev}")
        kwargs: dict[str, object] = {
            "dst": str(spec.dst),
            "gateway": str(spec.gateway),
            "oif": idx[0],
            "proto": RT_PROTO,
        }
        if spec.onlink:
            kwargs["flags"] = 4  # RTNH_F_ONLINK
        ipr.route("replace", **kwargs)


def _delete_route(dst: ipaddress.IPv4Network) -> None:
    with IPRoute() as ipr:
        for r in ipr.get_routes(family=2, proto=RT_PROTO):
            if r.get("RTA_DST") == str(dst.network_address) and r["dst_len"] == dst.prefixlen:
                ipr.route("del", dst=str(dst), proto=RT_PROTO)


def _our_routes() -> list[ipaddress.IPv4Network]:
    with IPRoute() as ipr:
        return [
            ipaddress.IPv4Network(f"{r.get('RTA_DST')}/{r['dst_len']}")
            for r in ipr.get_routes(family=2, proto=RT_PROTO)
            if r.get("RTA_DST")
        ]


class NodeRouteController:
    def __init__(
        self,
        *,
        node_name: str,
        writer: CoalescingWriter,
        builder: Callable[[], FlowBuilder],
        encap: bool,
        gateway_dev: str,
        transport_dev: str,
        local_pod_cidr: ipaddress.IPv4Network | None = None,
    ) -> None:
        self.node_name = node_name
        self.writer = writer
        self.builder = builder
        self.encap = encap
        self.gateway_dev = gateway_dev
        self.transport_dev = transport_dev
        self.nodes: dict[str, NodeInfo] = {}
        self.local_pod_cidr = local_pod_cidr
        self._snat_cidrs: frozenset[ipaddress.IPv4Network] | None = None
        self.synced = asyncio.Event()
        self._lock = asyncio.Lock()

    def route_for(self, node: NodeInfo) -> RouteSpec | None:
        if node.pod_cidr is None or node.internal_ip is None or node.gateway_ip is None:
            return None
        if self.encap:
            return RouteSpec(node.pod_cidr, node.gateway_ip, self.gateway_dev, onlink=True)
        return RouteSpec(node.pod_cidr, node.internal_ip, self.transport_dev, onlink=False)

    async def handle(self, event: NodeEvent) -> None:
        async with self._lock:
            if event.kind is NodeEventKind.SYNC:
                remote = {n.name: n for n in event.nodes if n.name != self.node_name}
                for name in list(self.nodes):
                    if name not in remote:
                        await self._remove(name)
                for node in remote.values():
                    await self._ensure(node)
                await self._remove_stale_routes()
                await self._sync_snat()
                self.synced.set()
                return
            for node in event.nodes:
                if node.name == self.node_name:
                    continue
                if event.kind is NodeEventKind.DELETED:
                    await self._remove(node.name)
                else:
                    await self._ensure(node)
            await self._sync_snat()

    async def _sync_snat(self, *, force: bool = False) -> None:
        """Keep ANTREA-POSTROUTING in step with the set of pod CIDRs."""
        if self.local_pod_cidr is None:
            return
        cidrs = frozenset(n.pod_cidr for n in self.nodes.values() if n.pod_cidr is not None)
        if cidrs == self._snat_cidrs and not force:
            return
        ok = await asyncio.to_thread(
            iptables.sync_masquerade,
            pod_cidr=self.local_pod_cidr,
            gateway=self.gateway_dev,
            pod_cidrs=cidrs,
        )
        if ok:
            self._snat_cidrs = cidrs

    async def _ensure(self, node: NodeInfo) -> None:
        old = self.nodes.get(node.name)
        if old == node:
            return
        if old is not None and old.pod_cidr != node.pod_cidr:
            await self._remove(node.name)
        spec = self.route_for(node)
        if spec is None or node.pod_cidr is None or node.internal_ip is None:
            log.info("node_route_skipped", node=node.name, reason="no podCIDR or InternalIP")
            return
        assert node.gateway_ip is not None
        flows = self.builder().node_flows(
            pod_cidr=node.pod_cidr, gateway_ip=node.gateway_ip, node_ip=node.internal_ip
        )
        await self.writer.submit(node_owner(node.name), flows)
        try:
            await asyncio.to_thread(_install_route, spec)
        except Exception as exc:
            log.warning("node_route_failed", node=node.name, error=repr(exc))
        self.nodes[node.name] = node
        log.info(
            "node_route_installed",
            node=node.name,
            pod_cidr=str(node.pod_cidr),
            node_ip=str(node.internal_ip),
            via=str(spec.gateway),
            dev=spec.dev,
        )

    async def _remove(self, name: str) -> None:
        node = self.nodes.pop(name, None)
        await self.writer.submit(node_owner(name), None)
        if node is not None and node.pod_cidr is not None:
            try:
                await asyncio.to_thread(_delete_route, node.pod_cidr)
            except Exception as exc:
                log.warning("node_route_delete_failed", node=name, error=repr(exc))
        log.info("node_route_removed", node=name)

    async def _remove_stale_routes(self) -> None:
        wanted = {n.pod_cidr for n in self.nodes.values()}
        for dst in await asyncio.to_thread(_our_routes):
            if dst not in wanted:
                await asyncio.to_thread(_delete_route, dst)
                log.info("stale_node_route_removed", dst=str(dst))

    async def reinstall_routes(self) -> None:
        """Re-add host routes (after gw0 was re-created by a restarted ovs-vswitchd)."""
        await self._sync_snat(force=True)
        for node in list(self.nodes.values()):
            spec = self.route_for(node)
            if spec is not None:
                try:
                    await asyncio.to_thread(_install_route, spec)
                except Exception as exc:
                    log.warning("node_route_failed", node=node.name, error=repr(exc))

    async def reinstall_flows(self) -> None:
        """Re-state every node's flows (after the builder's round changed)."""
        async with self._lock:
            for node in self.nodes.values():
                if node.pod_cidr and node.internal_ip and node.gateway_ip:
                    flows = self.builder().node_flows(
                        pod_cidr=node.pod_cidr,
                        gateway_ip=node.gateway_ip,
                        node_ip=node.internal_ip,
                    )
                    await self.writer.submit(node_owner(node.name), flows)
