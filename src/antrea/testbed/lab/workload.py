"""What a lab pod "runs": a server on every declared containerPort, inside the pod's namespace.

One asyncio process (the lab supervisor) serves all pods of all nodes: for each port a worker
thread enters the pod's network namespace and creates the listening socket, and the event loop
serves it from then on. That costs a few file descriptors per pod instead of a ~30 MB Python
process per pod (measured: a process per pod would dominate a 27-pod lab's memory and start-up).

TCP: accept, write one line ``<ns>/<pod>\\n`` and close. UDP: echo the datagram back.
SCTP is skipped: this kernel has no SCTP sockets. Each pod keeps its last `LOG_LINES` log
lines (what it listens on, every connection or datagram it answered: a probe's trace),
which ``kubectl logs`` reads through the API server (`antrea.testbed.lab.podio`).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import functools
import socket
from dataclasses import dataclass, field
from typing import Any, cast

import structlog

from antrea.testbed.lab import netns

log = structlog.get_logger(__name__)

LOG_LINES = 1000


@dataclass(frozen=True, slots=True)
class PortSpec:
    port: int
    protocol: str  # TCP | UDP


def ports_of(pod: dict[str, Any]) -> list[PortSpec]:
    """Every distinct (port, protocol) declared by the pod's containers; SCTP is dropped."""
    seen: dict[tuple[int, str], PortSpec] = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            proto = str(p.get("protocol") or "TCP").upper()
            num = p.get("containerPort")
            if proto in ("TCP", "UDP") and isinstance(num, int) and 0 < num < 65536:
                seen.setdefault((num, proto), PortSpec(num, proto))
    return sorted(seen.values(), key=lambda s: (s.port, s.protocol))


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Echo(asyncio.DatagramProtocol):
    def __init__(self, record: collections.deque[str], port: int) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.record = record
        self.port = port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)
            self.record.append(
                f"{_stamp()} udp {addr[0]}:{addr[1]} -> :{self.port} echoed {len(data)} bytes"
            )


@dataclass(slots=True)
class Workload:
    """The servers of one pod; ``stop`` closes them all."""

    pod: str
    netns_path: str
    servers: list[asyncio.Server] = field(default_factory=list)
    transports: list[asyncio.BaseTransport] = field(default_factory=list)
    lines: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=LOG_LINES)
    )

    async def start(self, ports: list[PortSpec]) -> None:
        loop = asyncio.get_running_loop()
        banner = f"{self.pod}\n".encode()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peername") or ("?", 0)
            port = (writer.get_extra_info("sockname") or ("", 0))[1]
            self.lines.append(f"{_stamp()} tcp {peer[0]}:{peer[1]} -> :{port} answered")
            try:
                writer.write(banner)
                await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()

        for spec in ports:
            kind = socket.SOCK_STREAM if spec.protocol == "TCP" else socket.SOCK_DGRAM
            sock = await netns.socket_in(self.netns_path, socket.AF_INET, kind)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("0.0.0.0", spec.port))
                if spec.protocol == "TCP":
                    sock.listen(128)
                    self.servers.append(await asyncio.start_server(answer, sock=sock))
                else:
                    transport, _ = await loop.create_datagram_endpoint(
                        functools.partial(_Echo, self.lines, spec.port), sock=sock
                    )
                    self.transports.append(transport)
                self.lines.append(f"{_stamp()} listening on :{spec.port}/{spec.protocol}")
            except OSError:
                sock.close()
                log.warning(
                    "workload_port_failed", pod=self.pod, port=spec.port, protocol=spec.protocol
                )
        log.debug("workload_started", pod=self.pod, ports=[f"{p.port}/{p.protocol}" for p in ports])

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for transport in self.transports:
            transport.close()
        for server in self.servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 1.0)
            except (TimeoutError, OSError):
                pass
        self.servers.clear()
        self.transports.clear()
