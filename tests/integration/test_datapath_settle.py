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
import ipaddress
import socket
import struct
import time

import pytest

from antrea.ovs.datapath import settle
from antrea.ovs.errors import OfctlError
from antrea.ovs.openflow.flow import (
    Ct,
    CtState,
    Drop,
    Flow,
    GotoTable,
    Match,
    Move,
    Normal,
    Output,
    Proto,
)
from antrea.ovs.openflow.native import OpenFlowTransport
from antrea.ovs.ovsctl import OfCtl
from antrea.testbed.lab import netns as labnetns
from antrea.testbed.lab.probe import Target, probe_pair
from antrea.testbed.lab.workload import PortSpec, Workload
from antrea.testbed.ovssandbox import OvsSandbox
from antrea.util import ethtool

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


@pytest.mark.asyncio
async def test_appctl_in_process_answers_like_ovs_appctl(ovs: OvsSandbox) -> None:
    """`OfCtl.appctl` speaks to the control socket itself (`antrea.ovs.unixctl`)."""
    ovs.vsctl("add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev")
    ofctl = OfCtl(ovs.ofctl_target(BRIDGE), bridge=BRIDGE, rundir=str(ovs.rundir))
    ctl = f"{ovs.rundir}/ovs-vswitchd.ctl"
    for args in (["version"], ["dpif/show"], ["revalidator/wait"], ["upcall/show"]):
        want = ovs.run(["ovs-appctl", "-t", ctl, *args]).stdout
        got = await ofctl.appctl(*args)
        if args[0] == "upcall/show":  # its figures move; the shape does not
            want, got = want.split(":")[0], got.split(":")[0]
        assert got == want, args
    with pytest.raises(OfctlError, match="not a valid command"):
        await ofctl.appctl("no-such/command")
    assert ofctl.errors == 1


def test_no_flow_cookie_names_no_category() -> None:
    from antrea.ovs.datapath import NO_FLOW
    from antrea.ovs.openflow.cookie import CATEGORY_MASK, CATEGORY_SHIFT, Category

    assert NO_FLOW.cookie is not None
    assert (NO_FLOW.cookie & CATEGORY_MASK) >> CATEGORY_SHIFT not in set(Category)


# -- no datapath flow of the old tables survives settle ------------------------------------
# Two pods on one L2 segment behind a stateful pipeline (conntrack, recirculation): an allow
# flow admits new client->server connections, established ones pass, the rest drops. Real TCP
# connections make the datapath cache megaflows of the allowing tables; the allow is replaced by
# a drop and `settle` runs. After it, no datapath flow cached under the allowing tables may be
# left (the real-cluster leak of 2026-12-07: such flows outlived two revalidation rounds and
# kept letting a forbidden egress through), and a new connection is dropped.

SERVER_PORT = 80
CLIENT_IP, SERVER_IP = "10.77.0.1", "10.77.0.2"


def _stateful(allow: bool) -> list[Flow]:
    est = CtState(trk=True, est=True)
    admit = Match(proto=Proto.TCP, nw_src=ipaddress.IPv4Address(CLIENT_IP),
                  nw_dst=ipaddress.IPv4Address(SERVER_IP), tp_dst=SERVER_PORT)  # fmt: skip
    return [
        Flow(0, 200, Match(proto=Proto.ARP), (Normal(),)),
        Flow(0, 100, Match(proto=Proto.IP), (Ct(table=1),)),
        Flow(1, 200, Match(proto=Proto.IP, ct_state=est), (Normal(),)),
        Flow(1, 100, admit, (Ct(commit=True), Normal()) if allow else (Drop(),)),
        Flow(1, 0, Match(), (Drop(),)),
    ]


def _ipv4_datapath_flows(ovs: OvsSandbox) -> dict[str, str]:
    """The IPv4 datapath flows by UFID (a flow's identity: a flow deleted and then cached
    again for another packet is another flow)."""
    ctl = f"{ovs.rundir}/ovs-vswitchd.ctl"
    out = ovs.run(["ovs-appctl", "-t", ctl, "dpctl/dump-flows", "-m"]).stdout
    flows = {}
    for line in out.splitlines():
        ufid, _, rest = line.partition(", ")
        if "eth_type(0x0800)" in line and ufid.startswith("ufid:"):
            flows[ufid] = rest
    return flows


@pytest.mark.asyncio
async def test_settle_leaves_no_datapath_flow_of_the_old_tables(ovs: OvsSandbox) -> None:
    node = ovs.netns
    assert node is not None
    ovs.vsctl("add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev",
              "protocols=OpenFlow15")  # fmt: skip
    pods = {"c": (CLIENT_IP, f"{node}-c"), "s": (SERVER_IP, f"{node}-s")}
    server = Workload("s", str(labnetns.netns_path(pods["s"][1])))
    transport = OpenFlowTransport(ovs.ofctl_target(BRIDGE))
    try:
        for i, (key, (ip, pod_ns)) in enumerate(pods.items()):
            host_if = f"{key}{node[-10:]}"
            labnetns.add(pod_ns)
            ovs.run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0",
                     "netns", pod_ns])  # fmt: skip
            for argv in (
                ["ip", "-n", pod_ns, "addr", "add", f"{ip}/24", "dev", "eth0"],
                ["ip", "-n", pod_ns, "link", "set", "eth0", "up"],
                ["ip", "-n", pod_ns, "link", "set", "lo", "up"],
                ["ip", "link", "set", host_if, "up"],
            ):
                ovs.run(argv)
            await labnetns.run_in(labnetns.netns_path(pod_ns),
                                  lambda: ethtool.disable_tx_checksum("eth0"))  # fmt: skip
            ovs.vsctl("add-port", BRIDGE, host_if, "--", "set", "interface", host_if,
                      f"ofport_request={i + 1}")  # fmt: skip
        await server.start([PortSpec(SERVER_PORT, "TCP")])
        client = Target("c", str(labnetns.netns_path(pods["c"][1])), CLIENT_IP)
        target = Target("s", server.netns_path, SERVER_IP)
        ofctl = OfCtl(ovs.ofctl_target(BRIDGE), bridge=BRIDGE, rundir=str(ovs.rundir))

        async def connects() -> bool:
            return await probe_pair(client, target, protocol="TCP", port=SERVER_PORT)

        await transport.bundle(add=_stateful(allow=True))
        await settle(ofctl)
        for _ in range(3):  # allowed; several connections, so megaflows are cached
            assert await connects(), "the allowing tables do not connect: test broken"
        await asyncio.sleep(0.3)  # the last connection's closing packets
        cached = _ipv4_datapath_flows(ovs)
        assert cached, "no megaflow cached by the allowed connections: test broken"

        await transport.bundle(modify=_stateful(allow=False))
        await settle(ofctl)
        left = {u: f for u, f in _ipv4_datapath_flows(ovs).items() if u in cached}
        assert not left, f"datapath flows cached before the change survived settle: {left}"
        assert not await connects(), "a new connection passed the dropping tables"

        await transport.bundle(modify=_stateful(allow=True))
        await settle(ofctl)
        assert await connects(), "allowed again, yet dropped: the drop above proves nothing"
    finally:
        await server.stop()
        await transport.close()
        ovs.vsctl("--if-exists", "del-br", BRIDGE)
        for _, pod_ns in pods.values():
            labnetns.delete(pod_ns)
