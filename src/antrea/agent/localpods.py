"""This node's pods across agent restarts: their attachments, addresses and flows (`PodOwner`).

At start `LocalPods.restore` rebuilds the interface store from OVSDB external_ids (ports whose
veth vanished are removed), opens the node-local IPAM and releases leaked addresses (kept: an
address whose container still has an OVS port or that a pod's status lists; if pods cannot be
listed, everything). `flows` gives every restored pod's flows for the start-up bundle,
`serve` the `PodConfigurator` that the CNI server's ADD/DEL/CHECK/GC go through (it states
and removes pods' flows through the coalescing writer), `install_cni` the CNI executable and
conflist on the node. After ovs-vswitchd lost its tables, `replay` re-states the flows of pods
whose port came back with another ofport.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Callable
from pathlib import Path

import structlog

from antrea.agent import netlink
from antrea.agent.cniserver.podconfig import PodConfigurator, pod_owner
from antrea.agent.config import AgentConfig
from antrea.agent.interfacestore import InterfaceStore, from_external_ids
from antrea.agent.ipam import IPAM
from antrea.agent.kube import NodeAPI
from antrea.agent.openflow.builder import FlowBuilder, PodPort
from antrea.ovs import ovsconfig
from antrea.ovs.openflow.client import CoalescingWriter, Owner
from antrea.ovs.openflow.flow import Flow
from antrea.ovs.ovsconfig import OvsdbClient

log = structlog.get_logger(__name__)


class LocalPods:
    def __init__(self, cfg: AgentConfig, ovsdb: OvsdbClient, store: InterfaceStore) -> None:
        self.cfg = cfg
        self.ovsdb = ovsdb
        self.store = store
        self.ipam: IPAM | None = None
        self.configurator: PodConfigurator | None = None

    async def restore(
        self, pod_cidr: ipaddress.IPv4Network, node_api: NodeAPI, node_name: str
    ) -> None:
        await self._restore_interfaces()
        self.ipam = IPAM(pod_cidr, self.cfg.state_path)
        await self._release_leaked_ips(self.ipam, node_api, node_name)

    async def _restore_interfaces(self) -> None:
        """Rebuild the interface store from OVSDB; drop ports whose veth is gone."""
        for row in await self.ovsdb.interfaces():
            cfg = from_external_ids(row.name, row.ofport, row.external_ids)
            if cfg is None:
                continue
            if row.ofport > 0 and await asyncio.to_thread(netlink.link_exists, row.name):
                self.store.add(cfg)
                continue
            log.info("stale_pod_port_removed", interface=row.name, pod=cfg.pod_key)
            await self.ovsdb.transact([ovsconfig.del_port(self.cfg.ovsBridge, row.name)])
        log.info("interface_store_restored", pods=len(self.store))

    async def _release_leaked_ips(self, ipam: IPAM, node_api: NodeAPI, node_name: str) -> None:
        keep_ips: list[ipaddress.IPv4Address] = []
        try:
            for pod in await node_api.list_pods_on_node(node_name):
                for entry in (pod.get("status") or {}).get("podIPs") or []:
                    with contextlib.suppress(ValueError):
                        keep_ips.append(ipaddress.IPv4Address(str(entry.get("ip"))))
        except Exception as exc:
            # Without pod status we only know OVS: keep everything rather than risk a reuse.
            log.warning("pod_list_failed_keeping_all_ips", error=repr(exc))
            return
        await ipam.reconcile(
            keep_containers=[c.container_id for c in self.store.list()],
            keep_ips=keep_ips,
        )

    def flows(self, builder: FlowBuilder) -> dict[Owner, list[Flow]]:
        """Every restored pod's flows, for the start-up bundle."""
        return {
            pod_owner(c.container_id): builder.pod_flows(PodPort(c.ofport, c.ip, c.mac))
            for c in self.store.list()
        }

    def serve(
        self, writer: CoalescingWriter, builder: Callable[[], FlowBuilder], mtu: int
    ) -> PodConfigurator:
        """The pod network the CNI server's commands go through."""
        assert self.ipam is not None, "restore() first"
        self.configurator = PodConfigurator(
            bridge=self.cfg.ovsBridge,
            ovsdb=self.ovsdb,
            writer=writer,
            builder=builder,
            store=self.store,
            ipam=self.ipam,
            mtu=mtu,
            disable_tx_checksum=self.cfg.disableTXChecksumOffload,
        )
        return self.configurator

    async def install_cni(self, mtu: int) -> None:
        """The CNI executable into ``cniBinDir``, the conflist into ``cniConfDir``."""
        cfg = self.cfg
        try:
            from antrea.agent.cniserver.install import install_plugin, write_conflist

            await asyncio.to_thread(
                lambda: install_plugin(Path(cfg.cniBinDir), socket=cfg.cniSocket)
            )
            await asyncio.to_thread(
                lambda: write_conflist(Path(cfg.cniConfDir), mtu=mtu, socket=cfg.cniSocket)
            )
            log.info("cni_installed", conf_dir=cfg.cniConfDir, bin_dir=cfg.cniBinDir)
        except Exception as exc:
            log.warning("cni_install_failed", error=repr(exc))

    async def replay(self, writer: CoalescingWriter, builder: FlowBuilder) -> None:
        """A re-created port may get another ofport: re-state that pod's flows."""
        rows = {r.name: r for r in await self.ovsdb.interfaces()}
        for c in self.store.list():
            row = rows.get(c.interface_name)
            if row is not None and row.ofport > 0 and row.ofport != c.ofport:
                self.store.delete(c.container_id)
                moved = from_external_ids(row.name, row.ofport, row.external_ids)
                if moved is not None:
                    self.store.add(moved)
                    await writer.submit(
                        pod_owner(moved.container_id),
                        builder.pod_flows(PodPort(moved.ofport, moved.ip, moved.mac)),
                    )
