"""The probe's tries are new connections to the datapath too: fresh source ports.

A UDP try that reused the 5-tuple of a recent allowed try would match that conntrack entry
(established) and pass a policy that now denies the pair (seen in CI: conformance 104, UDP/81
x/a -> y/b allowed through a leftover entry of an earlier case).
"""

from __future__ import annotations

import asyncio
import socket

from antrea.testbed.lab import probe
from antrea.testbed.lab.probe import SOURCE_PORTS, Target, next_source_port


def test_a_source_port_comes_back_only_after_the_whole_range() -> None:
    n = len(SOURCE_PORTS)
    draws = [next_source_port() for _ in range(2 * n + 5)]
    assert all(p in SOURCE_PORTS for p in draws)
    assert len(set(draws[:n])) == n  # no repeat within one rotation
    assert draws[n:] == draws[: n + 5]  # then the same order again


def test_each_try_binds_the_next_port_and_skips_a_busy_one() -> None:
    """Loopback UDP echo in this namespace: the try's socket sends from the rotation's port."""

    async def main() -> tuple[list[int], int]:
        loop = asyncio.get_running_loop()
        seen: list[int] = []

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.t = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                seen.append(addr[1])
                self.t.sendto(data, addr)  # type: ignore[attr-defined]

        transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            here = Target("self", "/proc/self/ns/net", "127.0.0.1")
            there = Target("echo", "/proc/self/ns/net", "127.0.0.1")
            first = await probe._try_once(here, there, "UDP", port)
            assert first == probe.CONNECTED
            taken = next_source_port()  # the port the next try would use: hold it
            busy.bind(("0.0.0.0", taken + 1 if taken + 1 in SOURCE_PORTS else SOURCE_PORTS[0]))
            second = await probe._try_once(here, there, "UDP", port)
            third = await probe._try_once(here, there, "UDP", port)
            assert second == third == probe.CONNECTED
            return seen, busy.getsockname()[1]
        finally:
            busy.close()
            transport.close()

    seen, held = asyncio.run(main())
    assert len(seen) == 3 and len(set(seen)) == 3
    assert all(p in SOURCE_PORTS for p in seen)
    assert held not in seen  # the busy port was skipped, not failed on
