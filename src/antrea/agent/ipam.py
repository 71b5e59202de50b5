"""Node-local IPAM: addresses of the Node's ``spec.podCIDR``, persisted like host-local.

One file per allocated address under ``<stateDir>/ipam/<cidr>/<ip>`` holding
``<containerID>\\n<ifname>``, created with O_EXCL: an allocation is on file the moment ADD
returns it, so an agent restart keeps it, and a crash between allocation and port creation leaves
a file that start-up reconciliation releases. Like host-local, the file is not fsync'd: an agent
crash keeps the page cache, and a machine crash takes every pod (and its network namespace)
with it, so the reservations it could lose belong to containers that no longer exist (an fsync
on the event loop used to cost several milliseconds of every CNI ADD on a busy disk).

The first host address is the gateway's and is never handed out; allocation continues after the
last reserved address (host-local's round-robin) so a just-released address is not immediately
reused by another pod.

Concurrency: all callers are coroutines of one agent process; an asyncio lock serialises the
scan-and-create, and O_EXCL makes a double allocation impossible even across processes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

from antrea.errors import AntreaError

log = structlog.get_logger(__name__)

_LAST = "last_reserved_ip"


class IPAMError(AntreaError):
    """Allocation failed (e.g. the range is exhausted)."""


@dataclass(frozen=True, slots=True)
class Allocation:
    ip: ipaddress.IPv4Address
    container_id: str
    ifname: str


class IPAM:
    def __init__(self, cidr: ipaddress.IPv4Network, state_dir: Path) -> None:
        self.cidr = cidr
        self.dir = state_dir / "ipam" / str(cidr).replace("/", "_")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = asyncio.Lock()
        hosts = list(cidr.hosts()) if cidr.prefixlen < 31 else list(cidr)
        self.gateway = hosts[0]
        self._range = hosts[1:]

    # -- persistence ------------------------------------------------------------------
    def _path(self, ip: ipaddress.IPv4Address) -> Path:
        return self.dir / str(ip)

    def allocations(self) -> list[Allocation]:
        out = []
        for entry in self.dir.iterdir():
            if entry.name == _LAST or entry.name.startswith("."):
                continue
            try:
                ip = ipaddress.IPv4Address(entry.name)
                cid, _, ifname = entry.read_text().partition("\n")
            except (ValueError, OSError):
                continue
            out.append(Allocation(ip, cid.strip(), ifname.strip()))
        return sorted(out, key=lambda a: a.ip)

    def find(self, container_id: str, ifname: str) -> Allocation | None:
        for a in self.allocations():
            if a.container_id == container_id and (not ifname or a.ifname == ifname):
                return a
        return None

    def _try_claim(self, ip: ipaddress.IPv4Address, container_id: str, ifname: str) -> bool:
        try:
            fd = os.open(self._path(ip), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, f"{container_id}\n{ifname}".encode())
        finally:
            os.close(fd)
        return True

    def _last(self) -> ipaddress.IPv4Address | None:
        try:
            return ipaddress.IPv4Address((self.dir / _LAST).read_text().strip())
        except (OSError, ValueError):
            return None

    def _set_last(self, ip: ipaddress.IPv4Address) -> None:
        tmp = self.dir / f".{_LAST}.tmp"
        tmp.write_text(str(ip))
        tmp.replace(self.dir / _LAST)

    # -- API -----------------------------------------------------------------------------
    async def allocate(self, container_id: str, ifname: str) -> Allocation:
        """The address of (container_id, ifname): the existing one, or a new one."""
        async with self._lock:
            existing = self.find(container_id, ifname)
            if existing is not None:
                return existing
            last = self._last()
            start = 0
            if last is not None and last in self.cidr:
                start = (int(last) - int(self._range[0]) + 1) if self._range else 0
            n = len(self._range)
            for i in range(n):
                ip = self._range[(start + i) % n]
                if self._try_claim(ip, container_id, ifname):
                    self._set_last(ip)
                    log.debug("ip_allocated", ip=str(ip), container_id=container_id)
                    return Allocation(ip, container_id, ifname)
        raise IPAMError(f"no free address left in {self.cidr}")

    async def release(self, container_id: str, ifname: str = "") -> list[Allocation]:
        """Release every address of the container (idempotent)."""
        async with self._lock:
            released = [
                a
                for a in self.allocations()
                if a.container_id == container_id and (not ifname or a.ifname == ifname)
            ]
            for a in released:
                self._path(a.ip).unlink(missing_ok=True)
                log.debug("ip_released", ip=str(a.ip), container_id=container_id)
            return released

    async def release_ip(self, ip: ipaddress.IPv4Address) -> None:
        async with self._lock:
            self._path(ip).unlink(missing_ok=True)

    async def reconcile(
        self,
        *,
        keep_containers: Iterable[str] = (),
        keep_ips: Iterable[ipaddress.IPv4Address] = (),
    ) -> list[Allocation]:
        """Release allocations held by neither a known container nor a known IP.

        Erring on the side of keeping (Antrea's rule): an address survives if EITHER the
        interface store (OVS ports) or pod status still references it.
        """
        containers = set(keep_containers)
        ips = set(keep_ips)
        async with self._lock:
            leaked = [
                a
                for a in self.allocations()
                if a.container_id not in containers and a.ip not in ips
            ]
            for a in leaked:
                self._path(a.ip).unlink(missing_ok=True)
        if leaked:
            log.info("ipam_leaks_released", ips=[str(a.ip) for a in leaked])
        return leaked
