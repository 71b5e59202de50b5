"""The host's way into the real lab's API server: 127.0.0.1:<port> -> <underlay .1>:6443.

The API server runs inside the lab's underlay namespace, which the host cannot route to. This
small process (`antrea lab forward`, started by `lab up`) listens on the host's loopback and,
for every connection, opens one from inside the underlay namespace (a socket created there, see
`antrea.testbed.lab.netns`) and pipes raw bytes both ways: TLS stays end to end.
"""

from __future__ import annotations

import asyncio
import signal
import socket

import structlog

from antrea.testbed.lab import netns
from antrea.testbed.lab.splice import splice
from antrea.testbed.lab.state import UNDERLAY_API_PORT, LabSpec

log = structlog.get_logger(__name__)


async def run(spec: LabSpec, port: int) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    target = (spec.underlay_api_ip, UNDERLAY_API_PORT)
    ns_path = netns.netns_path(spec.underlay_netns)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = await netns.socket_in(ns_path, socket.AF_INET, socket.SOCK_STREAM)
        try:
            await loop.sock_connect(sock, target)
            up_reader, up_writer = await asyncio.open_connection(sock=sock)
        except OSError as exc:
            sock.close()
            log.warning("forward_connect_failed", error=str(exc))
            writer.close()
            return
        await splice(reader, writer, up_reader, up_writer)

    server = await asyncio.start_server(handle, "127.0.0.1", port, reuse_address=True)
    log.info("lab_forward_started", port=port, target=f"{target[0]}:{target[1]}")
    await stopping.wait()
    server.close()
