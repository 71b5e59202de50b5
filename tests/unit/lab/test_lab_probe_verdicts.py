"""The probe tells connected, rejected (an active refusal) and dropped (silence) apart."""

from __future__ import annotations

import os
import socket

import pytest

from antrea.testbed.lab import probe
from antrea.testbed.lab.probe import Target


@pytest.mark.root
async def test_verdicts_on_real_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "TIMEOUT", 0.3)
    monkeypatch.setattr(probe, "TRIES", 1)
    me = Target("me", f"/proc/{os.getpid()}/ns/net", "127.0.0.1")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: the kernel answers RST
    udp_closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_closed.bind(("127.0.0.1", 0))
    udp_port = udp_closed.getsockname()[1]
    udp_closed.close()  # nothing bound: ICMP port unreachable
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # bound, never answers: silence
    try:
        v = probe.probe_pair_verdict
        assert await v(me, me, protocol="TCP", port=listener.getsockname()[1]) == "connected"
        assert await v(me, me, protocol="TCP", port=closed.getsockname()[1]) == "rejected"
        assert await v(me, me, protocol="UDP", port=udp_port) == "rejected"
        assert await v(me, me, protocol="UDP", port=silent.getsockname()[1]) == "dropped"
    finally:
        for s in (listener, closed, silent):
            s.close()
