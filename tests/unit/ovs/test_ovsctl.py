"""dump-flows parsing (antctl get ovsflows, flow-count metrics, the restart canary, the policy
flows of antctl and the stats): lines, and their matches and actions as values."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from antrea.ovs.openflow.flow import Conjunction, CtState, Match, Proto, RegMatch
from antrea.ovs.openflow.render import render_match
from antrea.ovs.ovsctl import parse_flow_line, parse_match


def test_parse_with_stats() -> None:
    line = (
        " cookie=0x1010000000003, duration=12.3s, table=10, n_packets=5, n_bytes=420, "
        "idle_age=1, priority=200,ip,in_port=3,dl_src=0a:00:00:00:00:02,nw_src=10.244.1.2 "
        "actions=goto_table:30"
    )
    f = parse_flow_line(line)
    assert f is not None
    assert (f.table, f.priority, f.cookie) == (10, 200, 0x1010000000003)
    assert (f.n_packets, f.n_bytes) == (5, 420)
    assert f.match == "ip,in_port=3,dl_src=0a:00:00:00:00:02,nw_src=10.244.1.2"
    assert f.actions == "goto_table:30"


def test_parse_without_stats_and_defaults() -> None:
    f = parse_flow_line(" cookie=0x0, priority=0 actions=drop")
    assert f is not None and (f.table, f.priority, f.match, f.actions) == (0, 0, "", "drop")
    g = parse_flow_line("cookie=0x1, table=20, priority=190,arp actions=NORMAL")
    assert g is not None and g.match == "arp" and g.table == 20


def test_headers_are_skipped() -> None:
    assert parse_flow_line("NXST_FLOW reply (xid=0x4):") is None
    assert parse_flow_line("") is None


# -- the dumped match and actions as values ------------------------------------------------

_CT = st.builds(
    CtState,
    new=st.none() | st.booleans(),
    est=st.none() | st.booleans(),
    rel=st.none() | st.booleans(),
    rpl=st.none() | st.booleans(),
    inv=st.none() | st.booleans(),
    trk=st.none() | st.booleans(),
).filter(
    lambda s: any(getattr(s, f) is not None for f in ("new", "est", "rel", "rpl", "inv", "trk"))
)
_MAC = st.sampled_from(["02:00:00:00:00:01", "0a:00:00:00:00:0b"])
_IP4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
_NET = st.builds(
    lambda a, n: ipaddress.IPv4Network((a, n), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
_REG = st.builds(
    lambda reg, start, width, value: RegMatch(reg, value % (1 << width), start, start + width - 1),
    st.integers(0, 15),
    st.integers(0, 16),
    st.integers(1, 16),
    st.integers(0, 2**16 - 1),
)


@st.composite
def _matches(draw: st.DrawFn) -> Match:
    proto = draw(st.none() | st.sampled_from(list(Proto)))
    tp = proto in (Proto.TCP, Proto.UDP, Proto.SCTP)
    mask = draw(st.none() | st.sampled_from([0xFFF0, 0xFF00, 0xC000]))
    regs = {r.reg: r for r in draw(st.lists(_REG, max_size=3))}
    return Match(
        proto=proto,
        in_port=draw(st.none() | st.integers(1, 60000)),
        dl_src=draw(st.none() | _MAC),
        dl_dst=draw(st.none() | _MAC),
        regs=tuple(regs[r] for r in sorted(regs)),
        ct_state=draw(st.none() | _CT),
        ct_mark=draw(st.none() | st.tuples(st.integers(0, 255), st.just(0xFF))),
        ct_label=draw(st.none() | st.tuples(st.integers(0, 2**32 - 1), st.just(0xFFFFFFFF << 32))),
        conj_id=draw(st.none() | st.integers(1, 2**32 - 1)),
        tun_id=draw(st.none() | st.integers(1, 2**40)),
        tun_dst=draw(st.none() | _IP4),
        nw_src=draw(st.none() | _NET | _IP4),
        nw_dst=draw(st.none() | _NET),
        arp_op=draw(st.none() | st.integers(1, 2)),
        arp_spa=draw(st.none() | _IP4),
        arp_tpa=draw(st.none() | _IP4),
        arp_sha=draw(st.none() | _MAC),
        tp_src=draw(st.none() | st.integers(1, 65535)) if tp else None,
        tp_dst=(draw(st.integers(0, 65535)) & (mask or 0xFFFF)) if tp else None,
        tp_dst_mask=mask if tp else None,
        tcp_flags=draw(st.none() | st.sampled_from(["+syn-ack", "-fin+psh"])),
        icmp_type=draw(st.none() | st.integers(0, 255)),
        icmp_code=draw(st.none() | st.integers(0, 255)),
    )


@given(_matches())
def test_a_rendered_match_parses_back_to_the_same_value(m: Match) -> None:
    parsed = parse_match(render_match(m))
    assert parsed.other == () and parsed.exact == m


@given(_matches())
def test_single_fields_read_as_the_whole_match_does(m: Match) -> None:
    f = parse_flow_line(f" table=90, priority=200,{render_match(m)} actions=drop")
    assert f is not None
    assert (f.conj_id, f.ct_label, f.ct_state) == (m.conj_id, m.ct_label, m.ct_state)


def test_what_ovs_dumps_parses_to_the_values_the_agent_built() -> None:
    # field order, unmasked full masks and /32 as OVS 3.1 dumps them (checked against real OVS
    # in tests/integration/test_openflow_native.py)
    dumped = parse_match(
        "ct_state=-new+est+trk,ct_mark=0x5,tcp,reg0=0x10000/0x10000,reg1=0x3,in_port=3,"
        "nw_dst=10.1.2.3,tp_dst=0x1f90/0xfff0"
    )
    assert dumped.exact == Match(
        proto=Proto.TCP,
        in_port=3,
        regs=(RegMatch(0, 1, 16, 16), RegMatch(1, 3)),
        ct_state=CtState(new=False, est=True, trk=True),
        ct_mark=(5, 0xFFFFFFFF),
        nw_dst=ipaddress.IPv4Network("10.1.2.3/32"),
        tp_dst=0x1F90,
        tp_dst_mask=0xFFF0,
    )
    assert parse_match("ct_label=0x1,udp,tp_dst=65535").exact == Match(
        proto=Proto.UDP, ct_label=(1, (1 << 128) - 1), tp_dst=65535
    )


def test_fields_a_match_cannot_hold_are_kept_as_text() -> None:
    dumped = parse_match(
        "udp,in_port=LOCAL,nw_frag=later,ct_state=+snat,reg2=0x5/0x5,tp_src=0x1/0x1"
    )
    assert dumped.match == Match(proto=Proto.UDP)
    assert dumped.other == (
        "in_port=LOCAL",
        "nw_frag=later",
        "ct_state=+snat",
        "reg2=0x5/0x5",
        "tp_src=0x1/0x1",
    )
    assert dumped.exact is None


def test_conjunction_ids_labels_and_states_of_dumped_policy_flows() -> None:
    clause = parse_flow_line(
        " cookie=0x1020000000007, table=90, n_packets=9, n_bytes=90, priority=200,ip,"
        "nw_src=10.0.0.0/8 actions=conjunction(7,1/2),conjunction(19,1/3)"
    )
    action = parse_flow_line(
        " table=90, priority=190,conj_id=7,ip actions=set_field:0x7->reg6,goto_table:105"
    )
    metric = parse_flow_line(
        " table=50, priority=211,ct_state=-new+est,ct_label=0x900000000/0xffffffff00000000,ip"
        " actions=goto_table:70"
    )
    drop = parse_flow_line(" table=100, priority=200,ip,reg1=0x3 actions=drop")
    assert clause is not None and action is not None and metric is not None and drop is not None
    assert clause.conjunctions == (Conjunction(7, 1, 2), Conjunction(19, 1, 3))
    assert clause.conj_ids == {7, 19} and clause.conj_id is None and not clause.drops
    assert action.conj_id == 7 and action.conj_ids == {7} and action.conjunctions == ()
    assert metric.ct_label == (0x900000000, 0xFFFFFFFF00000000) and metric.conj_ids == set()
    assert metric.ct_state == CtState(new=False, est=True)
    assert drop.drops and drop.parsed.exact == Match(proto=Proto.IP, regs=(RegMatch(1, 3),))
    assert {"reg1=0x3", "ip", "drop"} <= drop.tokens
