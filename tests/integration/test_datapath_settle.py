"""`antrea.ovs.datapath.settle` against a real userspace OVS: once it returns, no cached
datapath flow (megaflow) of the tables before the change forwards a packet any more.

The conformance suite once saw a new connection to a just-isolated pod pass after the agent
said "realized" (CI, antrea-022 on the 3-node noEncap lab). One way that happens: the single
``revalidator/wait`` the agent used answers at the end of the revalidation round in progress,
which may have begun before the change and then keeps the old megaflows as they were. Here that
situation is made likely: two thousand megaflows, each costly to translate (a 40-table chain
reading the source address, so each source has its own megaflow), make a round last long; a
round is started (a no-op flow mod) right before the change, which lands while it runs. With
the single wait, old megaflows still forwarded after it in 5 to 8 of 12 trials (two runs each,
load average ~11); `settle` must leave none.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest

from antrea.ovs.datapath import settle
from antrea.ovs.openflow.flow import Drop, Flow, GotoTable, Match, Move, Output, Proto
from antrea.ovs.openflow.native import OpenFlowTransport
from antrea.ovs.ovsctl import OfCtl
from antrea.testbed.lab import netns as labnetns
from antrea.testbed.ovssandbox import OvsSandbox

pytestmark = [pytest.mark.root, pytest.mark.ovs]

BRIDGE = "br0"
SOURCES = 2000  # megaflows (one per source address)
CHAIN = 40  # tables each megaflow's translation walks
TRIALS = 12
PROBE_SPORT = 4242  # marks the probes among the packets received


def _flow(table: int, last: tuple[Output | Drop, ...]) -> Flow:
    actions = (Move("NXM_OF_IP_SRC[]", f"NXM_NX_REG{table % 8}[]"),)
    return Flow(
        table,
        10,
        Match(proto=Proto.IP),
        actions + (last if table == CHAIN else (GotoTable(table + 1),)),
    )


def _frame(i: int, sport: int) -> bytes:
    src = struct.pack("!I", (10 << 24) | (1 << 16) | i)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, src, bytes([10, 2, 0, 1]))
    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    return eth + ip + struct.pack("!HHHH", sport, 2000, 8, 0)


class Wire:
    """Frames into the bridge through q1, frames out of it through q2 (internal ports)."""

    def __init__(self, tx: socket.socket, rx: socket.socket) -> None:
        self.tx, self.rx = tx, rx

    def send(self, sources: range, sport: int) -> None:
        for n, i in enumerate(sources):
            self.tx.send(_frame(i, sport))
            if n % 200 == 199:
                time.sleep(0.002)  # let the switch keep up (the tap queue is short)
                self.received()

    async def collect(self, seconds: float) -> int:
        """Probe frames that come out within ``seconds``."""
        n = 0
        for _ in range(int(seconds / 0.01)):
            await asyncio.sleep(0.01)
            n += self.received()
        return n

    def received(self) -> int:
        """Probe frames that came out since the last call (others are drained)."""
        n = 0
        while True:
            try:
                data = self.rx.recv(2048)
            except BlockingIOError:
                return n
            if data[34:36] == struct.pack("!H", PROBE_SPORT):
                n += 1


@pytest.mark.asyncio
async def test_no_old_megaflow_forwards_after_settle(ovs: OvsSandbox) -> None:
    assert ovs.netns is not None
    ovs.vsctl(
        "add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev",
        "protocols=OpenFlow15",
        "--", "add-port", BRIDGE, "q1", "--", "set", "interface", "q1", "type=internal",
        "ofport_request=1",
        "--", "add-port", BRIDGE, "q2", "--", "set", "interface", "q2", "type=internal",
        "ofport_request=2",
    )  # fmt: skip
    for dev in ("q1", "q2"):
        ovs.run(["ip", "link", "set", dev, "up"])
    path = labnetns.netns_path(ovs.netns)

    def sockets() -> Wire:
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        tx.bind(("q1", 0))
        rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        rx.bind(("q2", 0))
        rx.setblocking(False)
        return Wire(tx, rx)

    wire = await labnetns.run_in(path, sockets)
    ofctl = OfCtl(ovs.ofctl_target(BRIDGE), bridge=BRIDGE, rundir=str(ovs.rundir))
    transport = OpenFlowTransport(ovs.ofctl_target(BRIDGE))
    allow, deny = _flow(CHAIN, (Output(2),)), _flow(CHAIN, (Drop(),))
    # never installed: its strict delete only bumps the tables version (starts a round)
    kick = _flow(CHAIN + 1, (Drop(),))
    probes = range(0, SOURCES, SOURCES // 50)
    try:
        await transport.bundle(add=[_flow(t, ()) for t in range(CHAIN)] + [allow])
        await settle(ofctl)
        wire.send(range(SOURCES), 1000)
        leaks = []
        for _ in range(TRIALS):
            wire.send(range(SOURCES), 1000)  # every megaflow used (none idles out)
            await asyncio.sleep(0.05)
            wire.received()
            for _ in range(5):  # a backlog behind the refresh may take a while
                wire.send(probes, PROBE_SPORT)
                if await wire.collect(0.5):
                    break
            else:
                raise AssertionError("the allowing tables forward nothing: test broken")
            await transport.bundle(delete=[kick])
            await transport.bundle(modify=[deny])
            await settle(ofctl)
            wire.send(probes, PROBE_SPORT)
            leaks.append(await wire.collect(0.2))
            await transport.bundle(modify=[allow])
            await settle(ofctl)
        assert not any(leaks), f"old megaflows forwarded after settle: {leaks} (per trial)"
    finally:
        await transport.close()
        wire.tx.close()
        wire.rx.close()
        ovs.vsctl("--if-exists", "del-br", BRIDGE)


def test_no_flow_cookie_names_no_category() -> None:
    from antrea.ovs.datapath import NO_FLOW
    from antrea.ovs.openflow.cookie import CATEGORY_MASK, CATEGORY_SHIFT, Category

    assert NO_FLOW.cookie is not None
    assert (NO_FLOW.cookie & CATEGORY_MASK) >> CATEGORY_SHIFT not in set(Category)
