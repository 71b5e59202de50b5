"""Connect the node's uplink to an OVS bridge (userspace datapath + encap).

With the userspace (``netdev``) datapath, ovs-vswitchd sends a tunnel's outer packet only
through an OVS bridge that owns the underlay address (it looks the tunnel's remote up in its own
route table, built from the addresses of its bridges' internal ports). A node whose address sits
on a plain NIC therefore cannot send any tunnel packet: encap across nodes needs the NIC (the
"uplink") to be a port of a netdev bridge (``br-phy``) and the node address, with its routes, on
that bridge's internal port. This is the idea of upstream Antrea's ``connectUplinkToOVSBridge``.

`connect_uplink` does that, idempotently:

- the device holding the node address is already an OVS interface (a lab that wired its own
  ``br-phy``, or this agent's earlier run): nothing to do;
- the bridge exists with a recorded uplink (``external_ids:antrea-uplink``) but its internal port
  lost the address (ovs-vswitchd restarted and re-created the tap): the recorded addresses and
  routes are put back on it;
- otherwise the uplink joins a new netdev bridge whose MAC is the uplink's (no change seen by
  the underlay's ARP caches), the addresses move from the uplink to the bridge (added there
  first, then removed from the uplink: TCP connections to the API server keep their source
  address and survive the few ms in between), and the uplink's non-connected routes follow.
  The kernel stops answering ARP on the uplink (``arp_ignore=8``): it still receives the
  uplink's frames beside OVS and would otherwise answer for the bridge's address too.

`restore_uplink` undoes it (addresses and routes back to the uplink, bridge deleted).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import time
from dataclasses import dataclass

import structlog
from pyroute2 import IPRoute

from antrea.ovs.ovsconfig import Command, OvsdbClient

log = structlog.get_logger(__name__)

UPLINK_KEY = "antrea-uplink"
SAVED_KEY = "antrea-uplink-config"


@dataclass(frozen=True, slots=True)
class UplinkConfig:
    """What moves from the uplink to the bridge: addresses (``a.b.c.d/n``) and routes."""

    uplink: str
    mac: str
    mtu: int
    addresses: tuple[str, ...]
    routes: tuple[tuple[str, str], ...]  # (destination "0.0.0.0/0" etc., gateway)

    def encode(self) -> str:
        return json.dumps({"uplink": self.uplink, "mac": self.mac, "mtu": self.mtu,
                           "addresses": list(self.addresses),
                           "routes": [list(r) for r in self.routes]})  # fmt: skip

    @staticmethod
    def decode(text: str) -> UplinkConfig:
        d = json.loads(text)
        return UplinkConfig(
            uplink=str(d["uplink"]), mac=str(d["mac"]), mtu=int(d["mtu"]),
            addresses=tuple(str(a) for a in d["addresses"]),
            routes=tuple((str(r[0]), str(r[1])) for r in d["routes"]),
        )  # fmt: skip


def _device_with(addr: ipaddress.IPv4Address) -> str | None:
    with IPRoute() as ipr:
        for a in ipr.get_addr(family=socket.AF_INET):
            if a.get("IFA_ADDRESS") == str(addr):
                return str(ipr.get_links(a["index"])[0].get("IFLA_IFNAME"))
    return None


def read_config(uplink: str) -> UplinkConfig:
    """The uplink's IPv4 addresses and main-table routes through it (gateway routes only)."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=uplink)
        if not idx:
            raise FileNotFoundError(f"no interface {uplink}")
        link = ipr.get_links(idx[0])[0]
        addrs = tuple(
            f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in ipr.get_addr(index=idx[0], family=socket.AF_INET)
        )
        routes: list[tuple[str, str]] = []
        for r in ipr.get_routes(family=socket.AF_INET, table=254, oif=idx[0]):
            gw = r.get("RTA_GATEWAY")
            if not gw:
                continue  # connected routes come back with the addresses
            dst = r.get("RTA_DST") or "0.0.0.0"
            routes.append((f"{dst}/{r['dst_len']}", str(gw)))
        return UplinkConfig(uplink=uplink, mac=str(link.get("IFLA_ADDRESS")),
                            mtu=int(link.get("IFLA_MTU") or 1500), addresses=addrs,
                            routes=tuple(routes))  # fmt: skip


def move_config(cfg: UplinkConfig, src: str | None, dst: str) -> None:
    """Addresses and routes of `cfg` onto device `dst`, then off device `src` (if any)."""
    with IPRoute() as ipr:
        d = ipr.link_lookup(ifname=dst)[0]
        found = ipr.link_lookup(ifname=src) if src else []
        s = found[0] if found else None
        ipr.link("set", index=d, mtu=cfg.mtu, state="up")
        for a in cfg.addresses:
            ip, plen = a.split("/")
            with contextlib.suppress(Exception):  # already there (EEXIST)
                ipr.addr("add", index=d, address=ip, prefixlen=int(plen))
        for a in cfg.addresses if s is not None else ():
            ip, plen = a.split("/")
            with contextlib.suppress(Exception):  # not there (a re-created tap, a restore)
                ipr.addr("del", index=s, address=ip, prefixlen=int(plen))
        for dest, gw in cfg.routes:
            try:
                ipr.route("replace", dst=dest, gateway=gw, oif=d)
            except Exception as exc:
                log.warning("uplink_route_not_moved", dst=dest, gateway=gw, error=str(exc))


def _wait_link(name: str, timeout: float = 10.0) -> None:
    """ovs-vswitchd creates a netdev bridge's tap a moment after the OVSDB transaction."""
    deadline = time.monotonic() + timeout
    with IPRoute() as ipr:
        while not ipr.link_lookup(ifname=name):
            if time.monotonic() > deadline:
                raise FileNotFoundError(f"no interface {name} after {timeout:.0f}s")
            time.sleep(0.05)


def _set_arp_ignore(dev: str, value: str) -> None:
    with open(f"/proc/sys/net/ipv4/conf/{dev}/arp_ignore", "w") as fh:
        fh.write(value)


async def connect_uplink(
    ovsdb: OvsdbClient, bridge: str, node_ip: ipaddress.IPv4Address
) -> UplinkConfig | None:
    """Make `bridge` own the node address and the uplink; returns what moved (for
    `release_uplink`), None when nothing did (already an OVS bridge's, or on no device)."""
    holder = await asyncio.to_thread(_device_with, node_ip)
    rows = await ovsdb.interfaces()
    internal = {row.name for row in rows if row.type == "internal"}
    if holder is not None and holder in internal and holder != bridge:
        log.info("uplink_already_in_ovs", device=holder)  # e.g. the embedded lab's br-phy
        return None
    ids = await ovsdb.bridge_external_ids(bridge) if bridge in internal else {}
    if SAVED_KEY in ids:
        # Our bridge from an earlier run: the address is on it already, or back on the uplink
        # (`release_uplink` at the last shutdown), or gone (vswitchd re-created the tap).
        cfg = UplinkConfig.decode(ids[SAVED_KEY])
        if holder != bridge:
            await asyncio.to_thread(_wait_link, bridge)
            await asyncio.to_thread(move_config, cfg, cfg.uplink, bridge)
        log.info("uplink_config_restored", bridge=bridge, uplink=cfg.uplink)
        return cfg
    if holder is None:
        return None
    cfg = await asyncio.to_thread(read_config, holder)
    cmds = [
        Command(("--may-exist", "add-br", bridge)),
        Command(("set", "Bridge", bridge, "datapath_type=netdev",
                 f'other_config:hwaddr="{cfg.mac}"',
                 f"external_ids:{UPLINK_KEY}={holder}",
                 f"external_ids:{SAVED_KEY}={json.dumps(cfg.encode())}")),
        Command(("--may-exist", "add-port", bridge, holder)),
    ]  # fmt: skip
    await ovsdb.transact(cmds)
    with contextlib.suppress(OSError):
        await asyncio.to_thread(_set_arp_ignore, holder, "8")
    await asyncio.to_thread(_wait_link, bridge)
    await asyncio.to_thread(move_config, cfg, holder, bridge)
    log.info("uplink_connected", bridge=bridge, uplink=holder, addresses=list(cfg.addresses),
             routes=[list(r) for r in cfg.routes])  # fmt: skip
    return cfg


def release_uplink(cfg: UplinkConfig, bridge: str) -> None:
    """The node address and routes back on the uplink, off the bridge; OVS untouched.

    At agent shutdown: the antrea-ovs container stops beside the agent, and a node whose
    address sits on a bridge nobody forwards for could not reach the API server (its kubelet
    could not even start the agent's next pod). The next start moves them back.
    """
    with contextlib.suppress(OSError):
        _set_arp_ignore(cfg.uplink, "0")
    move_config(cfg, bridge, cfg.uplink)
    log.info("uplink_released", bridge=bridge, uplink=cfg.uplink)


async def restore_uplink(ovsdb: OvsdbClient, bridge: str) -> bool:
    """Undo `connect_uplink`: configuration back on the uplink, bridge deleted (uninstall).

    Only a bridge this agent made (it records the uplink) is touched. Returns whether it was.
    """
    if not await ovsdb.bridge_exists(bridge):
        return False
    ids = await ovsdb.bridge_external_ids(bridge)
    if SAVED_KEY not in ids:
        return False
    cfg = UplinkConfig.decode(ids[SAVED_KEY])
    await ovsdb.transact([Command(("--if-exists", "del-br", bridge))])
    await asyncio.to_thread(move_config, cfg, None, cfg.uplink)  # (they left with the bridge)
    with contextlib.suppress(OSError):
        await asyncio.to_thread(_set_arp_ignore, cfg.uplink, "0")
    log.info("uplink_restored", bridge=bridge, uplink=cfg.uplink)
    return True
