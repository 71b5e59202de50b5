"""The node side of the pod network: the bridge and its ports, the uplink, gw0 and the MTU.

`HostNetwork` converges br-int / gw0 / tun0 in one OVSDB transaction (`bridge.init_bridge`,
retried while OVS is still starting), moves the uplink to its OVS bridge when configured
(`uplink.connect_uplink`, given back by `release_uplink` at stop), finds the transport interface
and derives the pod MTU, addresses gw0 and enables forwarding. It owns no flows; after an
ovs-vswitchd restart `replay` does it all again (a restarted ovs-vswitchd re-creates gw0).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress

import structlog

from antrea.agent import netlink, uplink
from antrea.agent.bridge import BridgeState, init_bridge
from antrea.agent.config import TUNNEL_OVERHEAD, AgentConfig
from antrea.agent.kube import NodeInfo
from antrea.ovs.errors import OvsError
from antrea.ovs.ovsconfig import OvsdbClient
from antrea.ovs.ovsctl import OfCtl

log = structlog.get_logger(__name__)


class HostNetwork:
    def __init__(self, cfg: AgentConfig, ovsdb: OvsdbClient, ofctl: OfCtl) -> None:
        self.cfg = cfg
        self.ovsdb = ovsdb
        self.ofctl = ofctl
        self.ovs_version = ""
        self.mtu = 0
        self.gateway_mac = ""
        self.transport_dev = ""
        # What connect_uplink moved to the uplink bridge (given back at stop), if anything.
        self.moved_uplink: uplink.UplinkConfig | None = None

    async def init_bridge(self) -> BridgeState:
        """The bridge transaction (retried while OVS is still starting); the OVS version."""
        state = await self._init_bridge()
        self.ovs_version = await self._ovs_version()
        return state

    async def _init_bridge(self) -> BridgeState:
        delay = 0.5
        while True:  # OVS may still be starting: wait for it rather than exit
            try:
                return await init_bridge(self.cfg, self.ovsdb)
            except OvsError as exc:
                log.warning("bridge_init_failed_retrying", error=str(exc)[:300])
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _ovs_version(self) -> str:
        version = await self.ovsdb.ovs_version()
        if version:
            return version
        try:  # ovs_version is filled by ovs-ctl; a bare ovs-vswitchd leaves it empty
            out = await self.ofctl.appctl("version")
        except OvsError:
            return ""
        return out.split()[-1] if out.split() else ""

    async def configure(self, node: NodeInfo) -> None:
        """Uplink, transport interface and MTU, gw0's address and MTU, ip_forward."""
        cfg = self.cfg
        assert node.pod_cidr is not None and node.gateway_ip is not None
        transport_mtu = 1500
        if cfg.uplink_bridge and not cfg.transportInterface and node.internal_ip is not None:
            moved = await uplink.connect_uplink(self.ovsdb, cfg.uplink_bridge, node.internal_ip)
            self.moved_uplink = moved or self.moved_uplink
        if cfg.transportInterface:
            self.transport_dev = cfg.transportInterface
            found_mtu = await asyncio.to_thread(netlink.interface_mtu, self.transport_dev)
            transport_mtu = found_mtu or 1500
        elif node.internal_ip is not None:
            found = await asyncio.to_thread(netlink.interface_for_address, node.internal_ip)
            if found is not None:
                self.transport_dev, transport_mtu = found
        if cfg.defaultMTU:
            self.mtu = cfg.defaultMTU
        else:
            self.mtu = transport_mtu - (TUNNEL_OVERHEAD[cfg.tunnelType] if cfg.encap else 0)
        gw_if = ipaddress.IPv4Interface(f"{node.gateway_ip}/{node.pod_cidr.prefixlen}")
        self.gateway_mac = await asyncio.to_thread(
            lambda: netlink.configure_gateway(
                cfg.hostGateway, gw_if, self.mtu, disable_tx_checksum=cfg.disableTXChecksumOffload
            )
        )
        with contextlib.suppress(OSError):
            await asyncio.to_thread(netlink.set_sysctl, "net/ipv4/ip_forward", "1")

    async def replay(self, node: NodeInfo) -> None:
        """After ovs-vswitchd lost its state: the bridge transaction and gw0 again."""
        await init_bridge(self.cfg, self.ovsdb)
        await self.configure(node)

    async def release_uplink(self) -> None:
        """Give the uplink's addresses and routes back to the NIC (at stop)."""
        if self.moved_uplink is None:
            return
        try:
            moved, bridge = self.moved_uplink, self.cfg.uplink_bridge
            await asyncio.to_thread(uplink.release_uplink, moved, bridge)
        except Exception as exc:
            log.warning("uplink_release_failed", error=repr(exc))
