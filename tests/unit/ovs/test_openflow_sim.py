"""The flow-table interpreter used by policy tests follows OVS's lookup rules."""

from __future__ import annotations

import ipaddress

from antrea.ovs.openflow.flow import (
    Conjunction,
    Drop,
    Flow,
    GotoTable,
    LoadReg,
    Match,
    Proto,
    RegMatch,
)
from antrea.ovs.openflow.sim import FlowTables, Packet


def net(text: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(text)


def conj_table(*extra: Flow) -> FlowTables:
    return FlowTables(
        [
            Flow(
                90, 200, Match(proto=Proto.IP, nw_src=net("10.1.0.0/16")), (Conjunction(1, 1, 2),)
            ),
            Flow(90, 200, Match(proto=Proto.IP, regs=(RegMatch(1, 3),)), (Conjunction(1, 2, 2),)),
            Flow(90, 190, Match(proto=Proto.IP, conj_id=1), (LoadReg(6, 1), GotoTable(105))),
            Flow(90, 0, Match(), (GotoTable(100),)),
            Flow(100, 200, Match(proto=Proto.IP, regs=(RegMatch(1, 3),)), (Drop(),)),
            Flow(100, 0, Match(), (GotoTable(105),)),
            *extra,
        ],
        (90, 100),
    )


def test_conjunction_needs_every_clause() -> None:
    sim = conj_table()
    ok = sim.run(90, Packet("tcp", "10.1.2.3", "10.244.1.10", 80, regs={1: 3}))
    assert not ok.dropped and ok.table == 105 and ok.path == ((90, 190),)
    wrong_src = sim.run(90, Packet("tcp", "10.2.2.3", "10.244.1.10", 80, regs={1: 3}))
    assert wrong_src.dropped and wrong_src.path == ((90, 0), (100, 200))
    other_pod = sim.run(90, Packet("tcp", "10.1.2.3", "10.244.1.11", 80, regs={1: 4}))
    assert not other_pod.dropped and other_pod.table == 105  # not isolated


def test_higher_priority_ordinary_flow_beats_a_conjunction() -> None:
    sim = conj_table(Flow(90, 210, Match(proto=Proto.TCP, tp_dst=80), (Drop(),)))
    assert sim.run(90, Packet("tcp", "10.1.2.3", "x", 80, regs={1: 3})).dropped
    assert not sim.run(90, Packet("tcp", "10.1.2.3", "x", 81, regs={1: 3})).dropped


def test_masked_ports_and_protocols() -> None:
    sim = FlowTables(
        [
            Flow(
                50, 200, Match(proto=Proto.UDP, tp_dst=0x50, tp_dst_mask=0xFFF0), (GotoTable(70),)
            ),
            Flow(50, 0, Match(), (Drop(),)),
        ],
        (50,),
    )
    assert sim.run(50, Packet("udp", "1.1.1.1", "2.2.2.2", 95)).table == 70
    assert sim.run(50, Packet("udp", "1.1.1.1", "2.2.2.2", 96)).dropped
    assert sim.run(50, Packet("tcp", "1.1.1.1", "2.2.2.2", 80)).dropped
