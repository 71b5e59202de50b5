"""The native OpenFlow 1.5 transport against real OVS, with `ovs-ofctl` as the reference.

The same flows go to one bridge through `ovs-ofctl --bundle` and to another through the native
transport; ``ovs-ofctl diff-flows`` must find no difference. The flow set is the agent's whole
pipeline (gateway, tunnel, pods, a remote node, ARP responder), the policy tables (bypasses,
clause/action/metric/isolation flows) and extra flows for every other match field and action
the `Flow` values can carry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antrea.agent.networkpolicy import flows as npflows
from antrea.agent.openflow import pipeline as npt
from antrea.agent.openflow.builder import FlowBuilder, NodeConfig, PodPort
from antrea.agent.openflow.pipeline import FROM_GATEWAY
from antrea.ovs.errors import BundleRejected
from antrea.ovs.openflow import (
    Action,
    Conjunction,
    Ct,
    CtClear,
    CtState,
    DecTTL,
    Drop,
    Flow,
    GotoTable,
    LoadReg,
    Match,
    Move,
    Normal,
    Output,
    OutputReg,
    RegMatch,
    Resubmit,
    SetField,
)
from antrea.ovs.openflow.bundle import OfctlBundleTransport
from antrea.ovs.openflow.client import FlowClient
from antrea.ovs.openflow.flow import Proto
from antrea.ovs.openflow.groups import Bucket, Group, GroupType
from antrea.ovs.openflow.native import OpenFlowTransport
from antrea.ovs.ovsctl import parse_flow_line
from antrea.testbed.ovssandbox import OvsSandbox

pytestmark = [pytest.mark.root, pytest.mark.ovs]

NET = ipaddress.ip_network
REG5 = "NXM_NX_REG5[]"
LABEL_HI = "NXM_NX_CT_LABEL[32..63]"


def _clause_flow(
    round_num: int, table: int, match: Match, conjs: list[tuple[int, int, int]], band: int = 0
) -> Flow:
    """A clause flow carrying the conjunctions (id, clause, n), as the reconciler builds it."""
    actions = tuple(Conjunction(i, k, n) for i, k, n in sorted(conjs))
    return npflows.clause_flow(round_num, table, match, actions, band)


def every_flow() -> list[Flow]:
    node = NodeConfig(
        pod_cidr=ipaddress.IPv4Network("10.244.1.0/24"),
        gateway_ip=ipaddress.IPv4Address("10.244.1.1"),
        gateway_mac="0a:00:00:00:00:01",
    )
    b = FlowBuilder(node, round_num=3)
    flows = [
        *b.pipeline_flows(),
        b.canary_flow(),
        *b.gateway_flows(),
        *b.tunnel_flows(),
        *b.pod_flows(PodPort(10, ipaddress.IPv4Address("10.244.1.10"), "02:00:0a:f4:01:0a")),
        *b.node_flows(
            pod_cidr=ipaddress.IPv4Network("10.244.2.0/24"),
            gateway_ip=ipaddress.IPv4Address("10.244.2.1"),
            node_ip=ipaddress.IPv4Address("172.30.0.2"),
        ),
    ]
    # the policy tables
    flows += npflows.base_flows(
        3, gateway_ip="10.244.1.1", gateway_mark=FROM_GATEWAY.match(), with_miss=True
    )
    for d in (npt.INGRESS, npt.EGRESS):
        flows += npflows.conj_flows(3, d, 7 if d is npt.INGRESS else 8)
        flows.append(
            _clause_flow(
                3,
                d.rule_table,
                Match(proto=Proto.IP, nw_src=NET("10.0.0.0/8")),
                [(7, 1, 3), (9, 1, 2)],
            )
        )
        flows.append(
            npflows.isolation_flow(
                3, d.default_table, Match(proto=Proto.IP, regs=(RegMatch(1, 10),))
            )
        )
    flows.append(_clause_flow(3, 90, Match(proto=Proto.TCP, tp_dst=8080), [(7, 3, 3)], band=4))
    flows.append(
        _clause_flow(3, 90, Match(proto=Proto.UDP, tp_dst=0x1000, tp_dst_mask=0xFC00), [(7, 3, 3)])
    )
    flows.append(_clause_flow(3, 90, Match(proto=Proto.SCTP, tp_dst=9), [(7, 3, 3)]))
    flows.append(_clause_flow(3, 90, Match(proto=Proto.IP), [(11, 1, 2)]))
    flows.append(
        _clause_flow(3, 50, Match(proto=Proto.IP, nw_dst=NET("192.168.7.7/32")), [(8, 2, 2)])
    )
    # the encoder's templates and its path for long action lists: one conjunction on a
    # prefix and on an address, a target's clause shared by many conjunctions
    flows.append(
        _clause_flow(3, 50, Match(proto=Proto.IP, nw_src=NET("172.16.96.0/19")), [(12, 1, 2)])
    )
    flows.append(
        _clause_flow(3, 50, Match(proto=Proto.IP, nw_src=NET("172.16.0.9/32")), [(12, 1, 2)])
    )
    many = [(i, 2, 2) for i in range(100, 140)]
    flows.append(_clause_flow(3, 50, Match(proto=Proto.IP, regs=(RegMatch(1, 77),)), many))
    # every other field and action a Flow can carry
    flows += [
        Flow(5, 100, Match(proto=Proto.UDP, tp_src=53, in_port=3), (Output(4),), cookie=1),
        Flow(5, 101, Match(proto=Proto.ICMP, dl_dst="02:00:00:00:00:09"), (Output("IN_PORT"),)),
        Flow(5, 102, Match(proto=Proto.IP, ct_mark=(0x10, 0xF0)), (Normal(),)),
        Flow(
            5,
            103,
            Match(proto=Proto.IP, tun_id=0x99, tun_dst=ipaddress.IPv4Address("172.30.0.3")),
            (Drop(),),
        ),
        Flow(
            5,
            104,
            Match(
                proto=Proto.ARP,
                arp_op=2,
                arp_spa=ipaddress.IPv4Address("10.0.0.1"),
                arp_sha="02:00:00:00:00:01",
            ),
            (Normal(),),
        ),
        Flow(
            5,
            105,
            Match(regs=(RegMatch(0, 1, 16, 16), RegMatch(3, 0xABCD))),
            (OutputReg(2),),
        ),
        Flow(
            5,
            106,
            Match(proto=Proto.TCP, ct_state=CtState(new=True, trk=True, inv=False, rpl=False)),
            (Ct(commit=True, table=20, zone=5, nat=True, exec_=(Move(REG5, LABEL_HI),)),),
        ),
        Flow(
            5,
            107,
            Match(proto=Proto.IP, nw_src=ipaddress.IPv4Address("10.1.2.3")),
            (
                LoadReg(2, 5, 4, 7),
                LoadReg(3, 1, 9, 9),
                Resubmit(6),
                CtClear(),
                DecTTL(),
                GotoTable(9),
            ),
        ),
        Flow(
            5,
            108,
            Match(proto=Proto.IP, nw_dst=ipaddress.ip_address("10.1.2.4")),
            (SetField("nw_dst", "10.9.9.9"), SetField("reg4", "0x20"), Output(1)),
        ),
        Flow(5, 110, Match(proto=Proto.IP, ct_label=(0xF << 96, 0xF << 96)), (Output("LOCAL"),)),
        Flow(
            5,
            111,
            Match(),
            (Move("NXM_OF_ETH_SRC[0..15]", "NXM_NX_REG7[16..31]"), Output("NORMAL")),
        ),
    ]
    return flows


def ofctl(ovs: OvsSandbox, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return ovs.run(["ovs-ofctl", "-O", "OpenFlow15", *args], check=check)


def diff(ovs: OvsSandbox) -> str:
    out = ofctl(ovs, "diff-flows", ovs.ofctl_target("br-ref"), ovs.ofctl_target("br-nat"),
                check=False)  # fmt: skip
    assert out.returncode in (0, 1, 2), out.stderr
    return out.stdout


def assert_dump_parses_back(ovs: OvsSandbox, bridge: str, flows: list[Flow]) -> None:
    """What the bridge holds, dumped and parsed back (`antrea.ovs.ovsctl`, the one parser), is
    the flows' (table, priority, match) as values: every field, whatever order and form
    (unmasked full masks, /32 as an address) OVS dumps it in."""
    out = ofctl(ovs, "--no-names", "--no-stats", "dump-flows", ovs.ofctl_target(bridge)).stdout
    got = {
        (f.table, f.priority, f.parsed.exact)
        for f in (parse_flow_line(line) for line in out.splitlines())
        if f is not None
    }
    want = {(f.table, f.priority, _as_dumped(f.match)) for f in flows}
    assert got == want


def _as_dumped(m: Match) -> Match:
    """``m`` as OVS reports it: registers in register order, a full port mask as none, a
    ct_state without any flag as no ct_state."""
    regs = tuple(sorted(m.regs, key=lambda r: (r.reg, r.start)))
    mask = None if m.tp_dst_mask == 0xFFFF else m.tp_dst_mask
    ct_state = None if m.ct_state == CtState() else m.ct_state
    return dataclasses.replace(m, regs=regs, tp_dst_mask=mask, ct_state=ct_state)


def count(ovs: OvsSandbox, bridge: str) -> int:
    out = ofctl(ovs, "--no-stats", "dump-flows", ovs.ofctl_target(bridge)).stdout
    lines = [line.strip() for line in out.splitlines() if "priority" in line]
    return sum(1 for line in lines if line != "priority=0 actions=NORMAL")  # a new bridge's


@pytest.fixture(scope="module")
def bridges_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OvsSandbox]:
    """Two bridges on one OVS for the whole module (hypothesis examples reuse them)."""
    if os.geteuid() != 0 or shutil.which("ovs-vswitchd") is None:
        pytest.skip("needs root and Open vSwitch")
    netns = f"antrea-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    sandbox = OvsSandbox(rundir=tmp_path_factory.mktemp("ovs"), netns=netns)
    try:
        sandbox.start()
        for br in ("br-ref", "br-nat"):
            sandbox.vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
        yield sandbox
    finally:
        sandbox.stop()
        subprocess.run(["ip", "netns", "del", netns], check=False)


@pytest.fixture
def bridges(ovs: OvsSandbox) -> OvsSandbox:
    for br in ("br-ref", "br-nat"):
        ovs.vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
        ofctl(ovs, "del-flows", ovs.ofctl_target(br))
    return ovs


async def test_same_flows_both_ways(bridges: OvsSandbox) -> None:
    ref = OfctlBundleTransport(bridges.ofctl_target("br-ref"))
    nat = OpenFlowTransport(bridges.ofctl_target("br-nat"))
    try:
        flows = list({f.key: f for f in every_flow()}.values())
        await ref.bundle(add=flows)
        await nat.bundle(add=flows)
        assert count(bridges, "br-nat") == len(flows)
        assert diff(bridges) == ""
        assert_dump_parses_back(bridges, "br-nat", flows)
        # modify_strict (new actions, counters and cookie kept) and delete_strict
        modify = [f.with_actions((Output(9),)) for f in flows[:20]]
        delete = flows[20:40]
        await ref.bundle(modify=modify, delete=delete)
        await nat.bundle(modify=modify, delete=delete)
        assert count(bridges, "br-nat") == len(flows) - 20
        assert diff(bridges) == ""
        # the comparison can fail: one flow differing on one side is reported
        await nat.bundle(modify=[flows[40].with_actions((Output(7),))])
        assert "output:7" in diff(bridges)
    finally:
        await nat.close()


async def test_bundle_is_atomic_and_errors_name_the_flow(bridges: OvsSandbox) -> None:
    nat = OpenFlowTransport(bridges.ofctl_target("br-nat"))
    try:
        good = [
            Flow(10, 100, Match(proto=Proto.IP, nw_src=NET(f"10.0.{i}.0/24")), (Drop(),))
            for i in range(50)
        ]
        bad = Flow(10, 101, Match(proto=Proto.IP), (GotoTable(3),))  # goto_table must go forward
        with pytest.raises(BundleRejected) as err:
            await nat.bundle(add=[*good[:25], bad, *good[25:]])
        assert "goto_table:3" in str(err.value) and "priority=101" in str(err.value)
        assert count(bridges, "br-nat") == 0  # nothing of the bundle applied
        # a flow too big for one OpenFlow message is refused, and the bundle discarded
        huge = Flow(
            10, 102, Match(proto=Proto.IP), tuple(Conjunction(i, 1, 2) for i in range(1, 5000))
        )
        with pytest.raises(BundleRejected, match="exceeds one OpenFlow message"):
            await nat.bundle(add=[*good, huge])
        assert count(bridges, "br-nat") == 0
        await nat.bundle(add=good)  # the connection is still fine
        await nat.barrier()
        assert count(bridges, "br-nat") == 50
        assert nat.connects == 1
    finally:
        await nat.close()


def _addr(second: int, i: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(f"10.{second}.{i >> 8}.{i & 255}")


def _drops(n: int, second: int, table: int = 10, priority: int = 100) -> list[Flow]:
    return [
        Flow(table, priority, Match(proto=Proto.IP, nw_src=_addr(second, i)), (Drop(),))
        for i in range(n)
    ]


async def test_streamed_bundle_is_one_atomic_bundle(bridges: OvsSandbox) -> None:
    """Adds streamed in several pieces (a plain bundle committed on the same connection in
    between), then modifies, deletes and more adds at the commit: nothing is visible before the
    commit, and the switch ends up as `ovs-ofctl` leaves the reference bridge."""
    ref = OfctlBundleTransport(bridges.ofctl_target("br-ref"))
    nat = OpenFlowTransport(bridges.ofctl_target("br-nat"))
    try:
        before = _drops(40, 1)
        for t in (ref, nat):
            await t.bundle(add=before)
        streamed = _drops(3000, 2) + [f.with_actions((Output(3),)) for f in _drops(200, 3)]
        modify = [f.with_actions((Output(9),)) for f in before[:10]]
        delete = before[10:20]
        rest = _drops(5, 4)
        other = _drops(7, 5, priority=50)
        stream = nat.stream()
        await stream.add(streamed[:1500])
        await nat.bundle(add=other)  # another bundle while the stream is open
        await stream.add(streamed[1500:])
        await nat.barrier()
        assert count(bridges, "br-nat") == 40 + 7  # the streamed adds are not visible
        await stream.commit(add=rest, modify=modify, delete=delete)
        await ref.bundle(add=[*other, *streamed, *rest], modify=modify, delete=delete)
        assert count(bridges, "br-nat") == 40 + 7 + 3200 + 5 - 10
        assert diff(bridges) == ""
        assert nat.connects == 1 and not nat._streams
    finally:
        await nat.close()


async def test_streamed_bundle_refused_at_commit_leaves_the_switch_unchanged(
    bridges: OvsSandbox,
) -> None:
    """A refused flow among the streamed adds (or the commit's adds) fails the whole bundle:
    its modifies and deletes are not applied either, the error names the flow, and the
    connection goes on (a discarded stream leaves nothing either)."""
    nat = OpenFlowTransport(bridges.ofctl_target("br-nat"))
    try:
        before = _drops(30, 1)
        await nat.bundle(add=before)
        bad = Flow(10, 101, Match(proto=Proto.IP), (GotoTable(3),))  # goto_table must go forward

        def dump() -> list[str]:
            out = ofctl(bridges, "--no-stats", "dump-flows", bridges.ofctl_target("br-nat"))
            return sorted(out.stdout.splitlines()[1:])

        want = dump()
        for streamed, final in (([*_drops(2000, 2), bad], _drops(5, 4)), (_drops(2000, 2), [bad])):
            stream = nat.stream()
            await stream.add(streamed[:1000])
            await stream.add(streamed[1000:])
            with pytest.raises(BundleRejected) as err:
                await stream.commit(
                    add=final,
                    modify=[f.with_actions((Output(9),)) for f in before[:10]],
                    delete=before[10:],
                )
            assert "goto_table:3" in str(err.value) and "priority=101" in str(err.value)
            assert dump() == want
        stream = nat.stream()
        await stream.add(_drops(100, 2))
        await stream.discard()
        await nat.barrier()
        assert dump() == want
        await nat.bundle(add=_drops(3, 6))  # the connection is still fine
        assert count(bridges, "br-nat") == 33
        assert nat.connects == 1 and not nat._streams and not nat._errors
    finally:
        await nat.close()


async def test_streamed_bundle_resent_after_the_connection_is_lost(bridges: OvsSandbox) -> None:
    """ovs-vswitchd restarts while a stream is open (the switch drops its open bundle): the
    commit sends everything again as one plain bundle on the new connection."""
    nat = OpenFlowTransport(bridges.ofctl_target("br-nat"))
    try:
        stream = nat.stream()
        await stream.add(_drops(500, 2))
        await nat.barrier()
        await asyncio.to_thread(restart_vswitchd, bridges)
        await stream.add(_drops(10, 3))
        await stream.commit(add=_drops(5, 4))
        assert count(bridges, "br-nat") == 515
        assert nat.connects == 2
    finally:
        await nat.close()


async def test_streamed_bundle_dropped_by_the_switch_when_idle_is_resent(
    bridges: OvsSandbox,
) -> None:
    """ovs-vswitchd drops a bundle left idle past its bundle-idle-timeout (and a later add to
    the same id opens a new one): the commit finds out and sends everything as a plain bundle,
    never commits only the adds sent after the drop."""
    bridges.vsctl("set", "Open_vSwitch", ".", "other_config:bundle-idle-timeout=1")
    nat = OpenFlowTransport(bridges.ofctl_target("br-nat"))
    try:
        stream = nat.stream()
        await stream.add(_drops(300, 2))
        await nat.barrier()
        await asyncio.sleep(3)  # idle 1 s, checked every second
        await stream.add(_drops(10, 3))
        await stream.commit(add=_drops(5, 4))
        assert count(bridges, "br-nat") == 315
        assert nat.connects == 1 and not nat._streams and not nat._errors
    finally:
        await nat.close()
        bridges.vsctl("remove", "Open_vSwitch", ".", "other_config", "bundle-idle-timeout")


def restart_vswitchd(ovs: OvsSandbox) -> None:
    """Stop ovs-vswitchd by its pid (it loses every flow) and start it again on the same db."""
    pid = int((ovs.rundir / "ovs-vswitchd.pid").read_text().strip())
    os.kill(pid, signal.SIGTERM)
    for _ in range(250):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    ovs.run(
        [
            "ovs-vswitchd",
            ovs.db_sock,
            f"--pidfile={ovs.rundir}/ovs-vswitchd.pid",
            "--detach",
            f"--log-file={ovs.rundir}/ovs-vswitchd.log",
            f"--unixctl={ovs.rundir}/ovs-vswitchd.ctl",
        ]
    )


async def test_reconnects_and_replays_after_vswitchd_restart(bridges: OvsSandbox) -> None:
    """The held connection breaks when ovs-vswitchd restarts; the transport reconnects on its
    own, and the reconnect hook replays the client's flows into the empty tables."""
    client: FlowClient | None = None

    async def replay() -> None:
        assert client is not None
        await client.replay()

    nat = OpenFlowTransport(bridges.ofctl_target("br-nat"), on_reconnect=replay)
    client = FlowClient(nat)
    try:
        flows = [
            Flow(10, 100, Match(proto=Proto.IP, nw_src=NET(f"10.1.{i}.0/24")), (Drop(),))
            for i in range(30)
        ]
        await client.sync({"a": flows})
        assert count(bridges, "br-nat") == 30
        await asyncio.to_thread(restart_vswitchd, bridges)
        # nothing is sent meanwhile: the transport notices the closed connection, redials
        # until the new ovs-vswitchd answers, and the hook puts the 30 flows back
        for _ in range(200):
            if count(bridges, "br-nat") == 30:
                break
            await asyncio.sleep(0.05)
        assert count(bridges, "br-nat") == 30
        assert nat.connects == 2
        extra = Flow(10, 100, Match(proto=Proto.IP, nw_src=NET("10.2.0.0/16")), (Drop(),))
        await client.sync({"b": [extra]})
        assert count(bridges, "br-nat") == 31
        assert nat.connects == 2
    finally:
        await nat.close()


async def test_group_mods(bridges: OvsSandbox) -> None:
    """Groups through the native transport read back as `ovs-ofctl add-group` writes them."""
    nat = OpenFlowTransport(bridges.ofctl_target("br-nat"))
    try:
        select = Group(7, GroupType.SELECT, (Bucket((Output(3),), 10), Bucket((Output(4),), 20)))
        every = Group(8, GroupType.ALL, (Bucket((Output(5),)), Bucket((Output(6),))))
        await nat.groups(add=[select, every])
        ofctl(bridges, "add-group", bridges.ofctl_target("br-ref"),
              "group_id=7,type=select,bucket=bucket_id:0,weight:10,actions=output:3,"
              "bucket=bucket_id:1,weight:20,actions=output:4")  # fmt: skip
        ofctl(bridges, "add-group", bridges.ofctl_target("br-ref"),
              "group_id=8,type=all,bucket=bucket_id:0,actions=output:5,"
              "bucket=bucket_id:1,actions=output:6")  # fmt: skip

        def groups(br: str) -> list[str]:
            out = ofctl(bridges, "dump-groups", bridges.ofctl_target(br)).stdout
            return sorted(line.strip() for line in out.splitlines() if "group_id" in line)

        assert groups("br-nat") == groups("br-ref")
        assert len(groups("br-nat")) == 2
        await nat.groups(modify=[Group(8, GroupType.ALL, (Bucket((Output(9),)),))])
        assert any("group_id=8" in g and "output:9" in g for g in groups("br-nat"))
        await nat.groups(delete=[select])
        assert [g for g in groups("br-nat") if "group_id=7" in g] == []
    finally:
        await nat.close()


# -- random flows, both ways ------------------------------------------------------------------
_IP4 = st.integers(1, 2**32 - 2).map(ipaddress.IPv4Address)
_NETS = st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 32)).map(
    lambda t: ipaddress.ip_network((t[0] >> (32 - t[1]) << (32 - t[1]), t[1]))
)
_MAC = st.integers(0, 2**48 - 1).map(lambda v: ":".join(f"{b:02x}" for b in v.to_bytes(6, "big")))
_REG = st.tuples(st.integers(0, 15), st.integers(0, 31)).flatmap(
    lambda t: st.tuples(
        st.just(t[0]), st.just(t[1]), st.integers(t[1], 31)
    ).flatmap(lambda u: st.integers(0, 2 ** (u[2] - u[1] + 1) - 1).map(
        lambda v: RegMatch(u[0], v, u[1], u[2])))
)  # fmt: skip
_CT = st.builds(
    CtState,
    new=st.none() | st.booleans(),
    est=st.none() | st.booleans(),
    inv=st.none() | st.booleans(),
    trk=st.none() | st.booleans(),
)


@st.composite
def _match(draw: st.DrawFn) -> Match:
    protos = [Proto.IP, Proto.TCP, Proto.UDP, Proto.SCTP, Proto.ARP, Proto.ICMP]
    proto = draw(st.sampled_from([None, *protos]))
    ip = proto in ("ip", "tcp", "udp", "sctp", "icmp")
    tp = proto in ("tcp", "udp", "sctp")
    mask = draw(st.none() | st.sampled_from([0xFFF0, 0xFF00, 0xC000]))
    return Match(
        proto=proto,
        in_port=draw(st.none() | st.integers(1, 60000)),
        dl_src=draw(st.none() | _MAC),
        dl_dst=draw(st.none() | _MAC),
        regs=tuple({r.reg: r for r in draw(st.lists(_REG, max_size=3))}.values()),
        ct_state=draw(st.none() | _CT) if ip else None,
        ct_mark=draw(st.none() | st.tuples(st.integers(0, 255), st.just(0xFF))),
        conj_id=draw(st.none() | st.integers(1, 2**32 - 1)) if ip else None,
        tun_id=draw(st.none() | st.integers(1, 2**40)),
        nw_src=draw(st.none() | _NETS | _IP4) if ip else None,
        nw_dst=draw(st.none() | _NETS) if ip else None,
        arp_op=draw(st.none() | st.integers(1, 2)) if proto == "arp" else None,
        arp_tpa=draw(st.none() | _IP4) if proto == "arp" else None,
        tp_src=draw(st.none() | st.integers(1, 65535)) if tp else None,
        tp_dst=(draw(st.integers(0, 65535)) & (mask or 0xFFFF)) if tp else None,
        tp_dst_mask=mask if tp else None,
        tcp_flags=draw(st.none() | st.sampled_from(["+syn-ack", "+rst", "-fin+psh"]))
        if proto == "tcp"
        else None,
    )


_ACTIONS = st.lists(
    st.one_of(
        st.builds(Conjunction, st.integers(1, 2**32 - 1), st.just(1), st.just(2)),
        st.builds(Output, st.integers(1, 60000) | st.sampled_from(["IN_PORT", "LOCAL"])),
        st.builds(LoadReg, st.integers(0, 15), st.integers(0, 255), st.just(8), st.just(15)),
        st.builds(Resubmit, st.integers(0, 254)),
        st.builds(SetField, st.just("eth_dst"), _MAC),
        st.just(CtClear()),
        st.just(DecTTL()),
    ),
    max_size=4,
)


@given(st.lists(st.tuples(_match(), _ACTIONS, st.booleans()), min_size=1, max_size=25))
@settings(max_examples=15, deadline=None)
def test_random_flows_install_the_same_both_ways(
    bridges_once: OvsSandbox, flows: list[tuple[Match, list[Action], bool]]
) -> None:
    """Random matches and actions: what OVS holds is the same through both transports."""
    batch: dict[object, Flow] = {}
    for i, (match, actions, goto) in enumerate(flows):
        acts = tuple(a for a in actions if not isinstance(a, Conjunction)) or tuple(actions)
        if any(isinstance(a, Conjunction) for a in acts):
            acts = tuple(a for a in acts if isinstance(a, Conjunction))  # conjunction only
        elif goto:
            acts = (*acts, GotoTable(200))
        f = Flow(10, 100 + i, match, acts, cookie=i)
        batch[f.key] = f

    async def run() -> None:
        for br in ("br-ref", "br-nat"):
            ofctl(bridges_once, "del-flows", bridges_once.ofctl_target(br))
        ref = OfctlBundleTransport(bridges_once.ofctl_target("br-ref"))
        nat = OpenFlowTransport(bridges_once.ofctl_target("br-nat"))
        try:
            try:
                await ref.bundle(add=list(batch.values()))
            except BundleRejected:
                with pytest.raises(BundleRejected):  # refused by one way: refused by both
                    await nat.bundle(add=list(batch.values()))
                return
            await nat.bundle(add=list(batch.values()))
        finally:
            await nat.close()
        assert diff(bridges_once) == ""
        assert_dump_parses_back(bridges_once, "br-nat", list(batch.values()))

    asyncio.run(run())
