"""What the CNI commands do to a node: veth + IP + OVS port + flows, and undoing it.

ADD is a sequence of steps, each with its undo pushed on a stack; any failure runs the stack
in reverse, so a failed ADD leaves no address, link, port or flow behind (Antrea rolls back
with cmdDel the same way). DEL is idempotent and works with the pod's namespace already gone:
it removes what it finds, by container id (interface store, IPAM) and by the host link name.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from antrea.agent import netlink
from antrea.agent.interfacestore import InterfaceConfig, InterfaceStore, host_interface_name
from antrea.agent.ipam import IPAM, IPAMError
from antrea.agent.openflow.builder import FlowBuilder, PodPort
from antrea.agent.owners import PodOwner
from antrea.apis.cni.errors import (
    CHECK_INTERFACE_FAILURE,
    CONFIG_INTERFACE_FAILURE,
    INVALID_NETWORK_CONFIG,
    IPAM_FAILURE,
    TRY_AGAIN_LATER,
    UNKNOWN_CONTAINER,
    CniError,
)
from antrea.ovs.openflow.client import CoalescingWriter
from antrea.ovs.openflow.flow import Flow
from antrea.ovs.ovsconfig import OvsdbClient
from antrea.util.batcher import Batcher

log = structlog.get_logger(__name__)


FIRST_POD_OFPORT = 3

# Delivers an ADD's result to the runtime; False when the runtime is no longer there to take it.
Confirm = Callable[[dict[str, Any]], Awaitable[bool]]


class RequestAbandoned(CniError):
    """The runtime gave up on an ADD before taking its result; the ADD was rolled back."""

    def __init__(self, container_id: str) -> None:
        super().__init__(
            TRY_AGAIN_LATER,
            f"the runtime gave up on the ADD of container {container_id}; it was rolled back",
        )


# Where deploy/antrea.yml mounts the host's /var/run/netns (and /proc) in the agent container.
HOST_ROOT = "/host"


def host_netns_path(path: str) -> str:
    """The runtime's netns path as this process sees it.

    A runtime passes its own path (``/var/run/netns/cni-...``); in the agent container the host's
    directory is mounted under ``/host`` (as upstream Antrea's agent does). A path that exists
    as given (the agent as a host process, the lab) or exists nowhere (DEL after the sandbox is
    gone) is kept.
    """
    if not path or os.path.exists(path) or not path.startswith("/"):
        return path
    inside = HOST_ROOT + path
    return inside if os.path.exists(inside) else path


def parse_cni_args(args: str) -> dict[str, str]:
    """``K8S_POD_NAMESPACE=x;K8S_POD_NAME=a;...`` -> dict (malformed pairs skipped)."""
    out: dict[str, str] = {}
    for pair in args.split(";"):
        key, eq, value = pair.partition("=")
        if eq and key:
            out[key.strip()] = value.strip()
    return out


def pod_owner(container_id: str) -> PodOwner:
    return PodOwner(container_id)


@dataclass(frozen=True, slots=True)
class Request:
    command: str
    container_id: str
    netns: str
    ifname: str
    args: dict[str, str]
    config: dict[str, Any]

    @property
    def pod_name(self) -> str:
        return self.args.get("K8S_POD_NAME", "")

    @property
    def pod_namespace(self) -> str:
        return self.args.get("K8S_POD_NAMESPACE", "")


class PodConfigurator:
    def __init__(
        self,
        *,
        bridge: str,
        ovsdb: OvsdbClient,
        writer: CoalescingWriter,
        builder: Callable[[], FlowBuilder],
        store: InterfaceStore,
        ipam: IPAM,
        mtu: int,
        disable_tx_checksum: bool = False,
    ) -> None:
        self.bridge = bridge
        self.ovsdb = ovsdb
        self.writer = writer
        self.builder = builder
        self.store = store
        self.ipam = ipam
        self.mtu = mtu
        self.disable_tx_checksum = disable_tx_checksum
        self._locks: dict[str, asyncio.Lock] = {}
        self._reserved: set[int] = set()  # ofports requested by ADDs in flight
        self._background: set[asyncio.Task[None]] = set()
        self._links: Batcher[str] = Batcher(_delete_links)

    def _lock(self, container_id: str) -> asyncio.Lock:
        return self._locks.setdefault(container_id, asyncio.Lock())

    # -- ADD -----------------------------------------------------------------------------
    def result_for(self, cfg: InterfaceConfig, *, host_mac: str = "") -> dict[str, Any]:
        """The 1.1.0-shaped result: host end (index 0), pod end (index 1), IP, route."""
        cidr = self.ipam.cidr
        host: dict[str, Any] = {"name": cfg.interface_name}
        if host_mac:
            host["mac"] = host_mac
        return {
            "cniVersion": "1.1.0",
            "interfaces": [
                host,
                {
                    "name": cfg.container_ifname,
                    "mac": cfg.mac,
                    "mtu": self.mtu,
                    "sandbox": cfg.netns,
                },
            ],
            "ips": [
                {
                    "address": f"{cfg.ip}/{cidr.prefixlen}",
                    "gateway": str(self.ipam.gateway),
                    "interface": 1,
                }
            ],
            "routes": [{"dst": "0.0.0.0/0", "gw": str(self.ipam.gateway)}],
            "dns": {},
        }

    async def add(self, req: Request, confirm: Confirm | None = None) -> dict[str, Any]:
        """Attach the pod; with ``confirm``, keep the attachment only if the result is delivered.

        Cancellation (the runtime went away) and a failed ``confirm`` roll back every step, as a
        failure does: the runtime never finds an address, veth or OVS port it did not get.
        """
        async with self._lock(req.container_id):
            existing = self.store.get(req.container_id)
            if existing is not None:
                if existing.container_ifname == req.ifname:
                    # A repeated ADD: same attachment, no second address.
                    return self.result_for(existing)
                raise CniError(
                    INVALID_NETWORK_CONFIG,
                    f"container {req.container_id} is already attached as "
                    f"{existing.container_ifname}; one interface per container is supported",
                )
            undo: list[Callable[[], Awaitable[object]]] = []
            try:
                result = await self._add(req, undo)
                if confirm is not None and not await confirm(result):
                    raise RequestAbandoned(req.container_id)
                return result
            except BaseException as exc:
                if isinstance(exc, RequestAbandoned | asyncio.CancelledError):
                    log.warning("cni_add_rolled_back", container_id=req.container_id)
                for step in reversed(undo):
                    try:
                        await step()
                    except (Exception, asyncio.CancelledError) as step_exc:
                        log.warning("cni_add_rollback_step_failed", error=repr(step_exc))
                raise

    async def _add(
        self, req: Request, undo: list[Callable[[], Awaitable[object]]]
    ) -> dict[str, Any]:
        steps = _Steps()
        try:
            alloc = await self.ipam.allocate(req.container_id, req.ifname)
        except IPAMError as exc:
            raise CniError(IPAM_FAILURE, "IP allocation failed", str(exc)) from exc
        undo.append(lambda: self.ipam.release(req.container_id, req.ifname))
        steps.mark("ipam")

        host_name = host_interface_name(req.pod_name or req.container_id, req.container_id)
        ip_if = ipaddress.IPv4Interface(f"{alloc.ip}/{self.ipam.cidr.prefixlen}")
        # The agent picks the pod MAC and the ofport (ofport_request), so the pod's flows
        # depend on nothing that is still to be created: their bundle is installed while the
        # veth is made and ovs-vswitchd attaches the port, instead of after both.
        pod_mac = netlink.random_mac()
        ofport = self._reserve_ofport()
        cfg = InterfaceConfig(
            container_id=req.container_id,
            pod_name=req.pod_name,
            pod_namespace=req.pod_namespace,
            interface_name=host_name,
            container_ifname=req.ifname,
            ip=alloc.ip,
            mac=pod_mac,
            ofport=ofport,
            netns=req.netns,
        )
        owner = pod_owner(req.container_id)
        undo.append(lambda: _async(self._reserved.discard, ofport))
        flows = asyncio.ensure_future(self.writer.submit(owner, self._pod_flows(cfg)))
        undo.append(lambda: self.writer.submit(owner, None))
        undo.append(lambda: _quietly(flows))  # first let the install finish, then undo it
        # The thread cannot be cancelled: if the ADD is (the runtime gave up), the undo waits
        # for it to finish and then removes whatever it created.
        making = asyncio.ensure_future(
            asyncio.to_thread(
                netlink.create_pod_veth,
                netns=req.netns,
                ifname=req.ifname,
                host_name=host_name,
                ip=ip_if,
                gateway=self.ipam.gateway,
                mtu=self.mtu,
                disable_tx_checksum=self.disable_tx_checksum,
                pod_mac=pod_mac,
            )
        )

        async def remove_veth() -> None:
            await _quietly(making)
            await asyncio.to_thread(netlink.delete_link, host_name)

        undo.append(remove_veth)
        try:
            veth = await asyncio.shield(making)
        except netlink.NetnsGone as exc:
            raise CniError(CONFIG_INTERFACE_FAILURE, f"netns {req.netns} does not exist") from exc
        except Exception as exc:
            raise CniError(
                CONFIG_INTERFACE_FAILURE, "failed to configure the pod interface", repr(exc)
            ) from exc
        steps.mark("veth")

        undo.append(lambda: self.ovsdb.remove_port(self.bridge, host_name))
        # One OVSDB transaction (port + Interface settings) that returns once ovs-vswitchd
        # attached the port; the flows bundle has been on its way since before the veth.
        port_res, flows_res = await asyncio.gather(
            self.ovsdb.attach_port(
                self.bridge, host_name, ofport_request=ofport, external_ids=cfg.external_ids()
            ),
            asyncio.shield(flows),  # a cancelled ADD still waits for it in the undo
            return_exceptions=True,
        )
        if isinstance(port_res, BaseException):
            raise CniError(
                CONFIG_INTERFACE_FAILURE, "failed to add the OVS port", repr(port_res)
            ) from port_res
        if isinstance(flows_res, BaseException):
            raise CniError(
                CONFIG_INTERFACE_FAILURE, "failed to install the pod flows", repr(flows_res)
            ) from flows_res
        actual = port_res
        if actual <= 0:
            raise CniError(CONFIG_INTERFACE_FAILURE, f"OVS port {host_name} got no ofport")
        if actual != ofport:  # the number was taken after all: re-state the flows
            log.warning("ofport_request_not_honoured", requested=ofport, ofport=actual)
            cfg = dataclasses.replace(cfg, ofport=actual)
            await self.writer.submit(owner, self._pod_flows(cfg))
        self._reserved.discard(ofport)
        steps.mark("ovs")

        self.store.add(cfg)
        undo.append(lambda: _async(self.store.delete, req.container_id))
        # Gratuitous ARP in the background: the result does not depend on it.
        garp = asyncio.create_task(
            _quietly(
                asyncio.to_thread(
                    netlink.send_gratuitous_arp, req.netns, req.ifname, veth.pod_mac, alloc.ip
                )
            )
        )
        self._background.add(garp)
        garp.add_done_callback(self._background.discard)
        log.info(
            "pod_network_added",
            pod=cfg.pod_key,
            container_id=req.container_id,
            ip=str(alloc.ip),
            ofport=cfg.ofport,
            interface=host_name,
            ms=steps.ms,
        )
        return self.result_for(cfg, host_mac=veth.host_mac)

    def _reserve_ofport(self) -> int:
        """The lowest free port number above the fixed ones (tun0 = 1, gw0 = 2)."""
        used = {c.ofport for c in self.store.list()} | self._reserved
        n = FIRST_POD_OFPORT
        while n in used:
            n += 1
        self._reserved.add(n)
        return n

    def _pod_flows(self, cfg: InterfaceConfig) -> list[Flow]:
        return self.builder().pod_flows(PodPort(cfg.ofport, cfg.ip, cfg.mac))

    # -- DEL -----------------------------------------------------------------------------
    async def delete(self, req: Request) -> None:
        async with self._lock(req.container_id):
            cfg = self.store.get(req.container_id)
            host_name = (
                cfg.interface_name
                if cfg is not None
                else host_interface_name(req.pod_name or req.container_id, req.container_id)
            )
            await self.remove_attachment(req.container_id, host_name, netns=req.netns)

    async def remove_attachment(
        self, container_id: str, host_name: str, *, netns: str = ""
    ) -> None:
        """Flows, port, veth, address and store entry of one container; each step idempotent."""
        await asyncio.gather(
            self._remove_flows_and_port(container_id, host_name),
            self._links.submit(host_name),
        )
        await self.ipam.release(container_id)
        cfg = self.store.delete(container_id)
        log.info(
            "pod_network_deleted",
            container_id=container_id,
            pod=cfg.pod_key if cfg else "",
            interface=host_name,
        )

    async def _remove_flows_and_port(self, container_id: str, host_name: str) -> None:
        # Flows first: removing a port keeps ovs-vswitchd's main loop busy for a while
        # (userspace datapath), and a bundle sent meanwhile waits behind it.
        await self.writer.submit(pod_owner(container_id), None)
        await self.ovsdb.remove_port(self.bridge, host_name)

    # -- CHECK ---------------------------------------------------------------------------
    async def check(self, req: Request) -> None:
        cfg = self.store.get(req.container_id)
        if cfg is None:
            raise CniError(UNKNOWN_CONTAINER, f"unknown container {req.container_id}")
        prev = req.config.get("prevResult")
        if not isinstance(prev, dict):
            raise CniError(INVALID_NETWORK_CONFIG, "CHECK needs a prevResult")
        try:
            state = await asyncio.to_thread(netlink.pod_interface_state, req.netns, req.ifname)
        except netlink.NetnsGone as exc:
            raise CniError(CHECK_INTERFACE_FAILURE, f"netns {req.netns} does not exist") from exc
        if not state.exists:
            raise CniError(CHECK_INTERFACE_FAILURE, f"interface {req.ifname} not found")
        for iface in prev.get("interfaces") or []:
            if iface.get("sandbox") and iface.get("name") == req.ifname:
                mac = str(iface.get("mac") or "").lower()
                if mac and mac != state.mac.lower():
                    raise CniError(
                        CHECK_INTERFACE_FAILURE,
                        f"interface {req.ifname} has MAC {state.mac}, expected {mac}",
                    )
        for ip in prev.get("ips") or []:
            addr = str(ip.get("address", ""))
            if addr and addr not in state.addresses:
                raise CniError(CHECK_INTERFACE_FAILURE, f"address {addr} not found on {req.ifname}")
        for route in prev.get("routes") or []:
            gw = route.get("gw")
            if route.get("dst") == "0.0.0.0/0" and gw and state.default_gateway != gw:
                raise CniError(CHECK_INTERFACE_FAILURE, f"default route via {gw} not found")
        if not await asyncio.to_thread(netlink.link_exists, cfg.interface_name):
            raise CniError(CHECK_INTERFACE_FAILURE, f"host interface {cfg.interface_name} missing")
        if await self.ovsdb.interface_ofport(cfg.interface_name) != cfg.ofport:
            raise CniError(
                CHECK_INTERFACE_FAILURE, f"OVS port {cfg.interface_name} missing or renumbered"
            )

    # -- GC ------------------------------------------------------------------------------
    async def gc(self, req: Request) -> None:
        """Release every attachment not listed in ``cni.dev/valid-attachments``."""
        valid = {
            (str(a.get("containerID", "")), str(a.get("ifname", "")))
            for a in req.config.get("cni.dev/valid-attachments") or []
            if isinstance(a, dict)
        }
        valid_ids = {cid for cid, _ in valid}
        for cfg in self.store.list():
            if (cfg.container_id, cfg.container_ifname) not in valid:
                async with self._lock(cfg.container_id):
                    await self.remove_attachment(cfg.container_id, cfg.interface_name)
        for alloc in self.ipam.allocations():
            if alloc.container_id not in valid_ids:
                await self.ipam.release(alloc.container_id)


async def _delete_links(names: list[str]) -> None:
    """Delete host veths in ONE kernel batch (`netlink.delete_links`).

    Each veth deletion costs an RCU grace period under the RTNL lock, so concurrent DELs used
    to queue behind each other; the batcher gives a batch one, and when a batch fails deletes
    its links one by one so that only the faulty one reports the error.
    """
    await asyncio.to_thread(netlink.delete_links, names)


async def _quietly(aw: Awaitable[object]) -> None:
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await aw


async def _async(fn: Callable[..., object], *args: object) -> object:
    return fn(*args)


class _Steps:
    """Milliseconds per ADD step, for the canonical log line."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.ms: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.ms[name] = round((now - self._last) * 1000, 1)
        self._last = now
