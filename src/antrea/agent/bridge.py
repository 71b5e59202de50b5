"""br-int, gw0 and tun0: the node's OVS bridge, created in ONE OVSDB transaction.

Port numbers are fixed through ofport_request (tun0 = 1, gw0 = 2) so that flows can name them
without a lookup. gw0's MAC is pinned in OVSDB (Interface ``mac``), derived from the node name:
ovs-vswitchd re-creates internal ports when it restarts, and a changing gateway MAC would
invalidate every pod's neighbour cache and the flows that carry it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import structlog

from antrea.agent.config import AgentConfig
from antrea.agent.openflow.pipeline import GATEWAY_OFPORT, TUNNEL_OFPORT
from antrea.ovs import ovsconfig
from antrea.ovs.ovsconfig import OvsdbClient

log = structlog.get_logger(__name__)

TUNNEL_PORT = "tun0"
ROUND_KEY = "roundNum"  # bridge external_ids key, as in Antrea


def stable_mac(seed: str) -> str:
    """A locally administered unicast MAC derived from `seed`."""
    b = bytearray(hashlib.sha1(seed.encode()).digest()[:6])
    b[0] = (b[0] & 0xFE) | 0x02
    return ":".join(f"{x:02x}" for x in b)


def bridge_commands(cfg: AgentConfig, *, gateway_mac: str) -> list[ovsconfig.Command]:
    cmds = ovsconfig.add_bridge(cfg.ovsBridge, datapath_type=cfg.ovsDatapathType)
    cmds += ovsconfig.add_port(
        cfg.ovsBridge,
        cfg.hostGateway,
        iface_type="internal",
        ofport_request=GATEWAY_OFPORT,
        mac=gateway_mac,
        external_ids={"antrea-type": "gateway"},
    )
    if cfg.encap:
        cmds += ovsconfig.add_port(
            cfg.ovsBridge,
            TUNNEL_PORT,
            iface_type=cfg.tunnelType,
            ofport_request=TUNNEL_OFPORT,
            options={"key": "flow", "remote_ip": "flow"},
            external_ids={"antrea-type": "tunnel"},
        )
    else:
        cmds.append(ovsconfig.del_port(cfg.ovsBridge, TUNNEL_PORT))
    return cmds


@dataclass(frozen=True, slots=True)
class BridgeState:
    gateway_mac: str
    previous_round: int


async def init_bridge(cfg: AgentConfig, ovsdb: OvsdbClient) -> BridgeState:
    """Create or converge br-int, gw0 and tun0 in one transaction; read the persisted round."""
    mac = stable_mac(f"{cfg.nodeName}/{cfg.ovsBridge}/{cfg.hostGateway}")
    await ovsdb.transact(bridge_commands(cfg, gateway_mac=mac))
    rows = {r.name: r for r in await ovsdb.interfaces()}
    gw = rows.get(cfg.hostGateway)
    if gw is None or gw.ofport != GATEWAY_OFPORT:
        log.warning("gateway_ofport_unexpected", ofport=gw.ofport if gw else None)
    if cfg.encap:
        tun = rows.get(TUNNEL_PORT)
        if tun is None or tun.ofport != TUNNEL_OFPORT:
            log.warning("tunnel_ofport_unexpected", ofport=tun.ofport if tun else None)
    ids = await ovsdb.bridge_external_ids(cfg.ovsBridge)
    try:
        previous = int(ids.get(ROUND_KEY, "0"))
    except ValueError:
        previous = 0
    log.info(
        "bridge_initialized",
        bridge=cfg.ovsBridge,
        datapath=cfg.ovsDatapathType,
        encap=cfg.trafficEncapMode,
        tunnel=cfg.tunnelType if cfg.encap else None,
        previous_round=previous,
    )
    return BridgeState(gateway_mac=mac, previous_round=previous)


def next_round(previous: int) -> int:
    """Rounds are 16 bits in the cookie and never 0."""
    return previous % 0xFFFF + 1


async def flow_restore_complete(ovsdb: OvsdbClient) -> None:
    """Clear ``other_config:flow-restore-wait`` (set by start scripts before ovs-vswitchd starts).

    With the flag, a (re)started ovs-vswitchd keeps its datapath flows and forwards nothing new
    until the agent has put its OpenFlow flows back; the agent clears it once they are in.
    Removing an absent key is a no-op.
    """
    await ovsdb.transact(
        [ovsconfig.remove_other_config("Open_vSwitch", ".", "flow-restore-wait")], wait=False
    )


async def persist_round(cfg: AgentConfig, ovsdb: OvsdbClient, round_num: int) -> None:
    await ovsdb.transact(
        [ovsconfig.set_bridge_external_ids(cfg.ovsBridge, {ROUND_KEY: str(round_num)})]
    )
