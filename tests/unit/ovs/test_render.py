"""Flow values render to exactly the ovs-ofctl text we expect (golden lines)."""

from __future__ import annotations

import ipaddress

import pytest

from antrea.ovs.openflow import (
    Conjunction,
    Ct,
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
from antrea.ovs.openflow.cookie import (
    Category,
    category_filter,
    cookie_category,
    cookie_round,
    make_cookie,
)
from antrea.ovs.openflow.flow import FlowFilter, Proto
from antrea.ovs.openflow.render import (
    render_add,
    render_bundle,
    render_delete,
    render_filter,
    render_flow,
    render_match,
    render_modify,
    render_port_tokens,
    render_trace_packet,
)


def test_conjunction_flows_read_like_antrea() -> None:
    """The three shapes of a two-clause ingress rule."""
    src = Flow(
        90,
        200,
        Match(proto=Proto.IP, nw_src=ipaddress.ip_network("10.244.1.2/32")),
        (Conjunction(1, 1, 2),),
    )
    dst = Flow(90, 200, Match(proto=Proto.IP, regs=(RegMatch(1, 3),)), (Conjunction(1, 2, 2),))
    act = Flow(90, 190, Match(proto=Proto.IP, conj_id=1), (GotoTable(105),))
    assert render_flow(src) == (
        "table=90,priority=200,cookie=0x0,ip,nw_src=10.244.1.2 actions=conjunction(1,1/2)"
    )
    assert (
        render_flow(dst)
        == "table=90,priority=200,cookie=0x0,ip,reg1=0x3 actions=conjunction(1,2/2)"
    )
    assert (
        render_flow(act) == "table=90,priority=190,cookie=0x0,ip,conj_id=1 actions=goto_table:105"
    )


def test_every_action_renders() -> None:
    flow = Flow(
        0,
        10,
        Match(),
        (
            Output(3),
            Output("IN_PORT"),
            OutputReg(1),
            Normal(),
            Drop(),
            GotoTable(10),
            Resubmit(20),
            LoadReg(0, 1, 16, 16),
            LoadReg(0, 2, 0, 15),
            LoadReg(1, 7),
            SetField("eth_src", "aa:bb:cc:dd:ee:ff"),
            Move("NXM_OF_ETH_SRC[]", "NXM_OF_ETH_DST[]"),
            DecTTL(),
            Ct(commit=True, zone=65520, exec_=(LoadReg(0, 1, 0, 0),)),
            Ct(table=31, zone=65520, nat=True),
        ),
        cookie=0x10,
    )
    assert render_add(flow) == (
        "add table=0,priority=10,cookie=0x10 actions=output:3,output:IN_PORT,output:NXM_NX_REG1[],"
        "NORMAL,drop,goto_table:10,resubmit(,20),load:0x1->NXM_NX_REG0[16],"
        "load:0x2->NXM_NX_REG0[0..15],load:0x7->NXM_NX_REG1[],set_field:aa:bb:cc:dd:ee:ff->eth_src,"
        "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],dec_ttl,"
        "ct(commit,zone=65520,exec(load:0x1->NXM_NX_REG0[0])),ct(table=31,zone=65520,nat)"
    )


def test_match_fields_canonical_and_masked() -> None:
    m = Match(
        proto=Proto.TCP,
        in_port=2,
        dl_src="aa:00:00:00:00:01",
        regs=(RegMatch(0, 1, 16, 16),),
        ct_state=CtState(new=False, est=True),
        nw_dst=ipaddress.ip_network("10.0.0.0/8"),
        tp_dst=0x400,
        tp_dst_mask=0xFC00,
    )
    f = Flow(50, 210, m, (GotoTable(70),))
    text = (
        "tcp,in_port=2,dl_src=aa:00:00:00:00:01,reg0=0x10000/0x10000,ct_state=-new+est,"
        "nw_dst=10.0.0.0/8,tp_dst=0x400/0xfc00"
    )
    assert render_match(f.match) == text
    assert render_modify(f) == f"modify_strict table=50,priority=210,{text} actions=goto_table:70"
    assert render_delete(f) == f"delete_strict table=50,priority=210,{text}"


def test_flow_key_is_the_match_value() -> None:
    """A flow's identity is (table, priority, Match): equal values, whatever their spelling."""
    host = Match(proto=Proto.IP, nw_src=ipaddress.ip_address("10.0.0.1"))
    as_net = Match(proto=Proto.IP, nw_src=ipaddress.ip_network("10.0.0.1/32"))
    assert host == as_net and hash(host) == hash(as_net)
    assert Flow(50, 200, host, (Drop(),)).key == Flow(50, 200, as_net, (GotoTable(70),)).key
    assert Flow(50, 200, host, (Drop(),)).key != Flow(50, 201, host, (Drop(),)).key
    other = Match(proto=Proto.IP, nw_src=ipaddress.ip_network("10.0.0.0/8"))
    assert Flow(50, 200, host, (Drop(),)).key != Flow(50, 200, other, (Drop(),)).key
    assert Flow(50, 200, host, (Drop(),)).key.match is host


def test_match_addresses_must_be_ipaddress_values() -> None:
    with pytest.raises(TypeError, match="nw_src"):
        Match(proto="ip", nw_src="10.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="arp_tpa"):
        Match(proto="arp", arp_tpa=ipaddress.ip_network("10.0.0.0/8"))  # type: ignore[arg-type]


def test_bundle_document_orders_deletes_first() -> None:
    a = Flow(0, 1, Match(proto=Proto.IP), (Drop(),))
    b = Flow(0, 2, Match(proto=Proto.ARP), (Normal(),))
    doc = render_bundle(add=[a], modify=[b], delete=[b])
    assert [line.split()[0] for line in doc.splitlines()] == [
        "delete_strict",
        "modify_strict",
        "add",
    ]


def test_key_ignores_actions_and_cookie() -> None:
    a = Flow(0, 1, Match(proto=Proto.IP), (Drop(),), cookie=1)
    b = Flow(0, 1, Match(proto=Proto.IP), (Normal(),), cookie=2)
    assert a.key == b.key
    assert a != b


def test_cookie_layout() -> None:
    c = make_cookie(0x1234, Category.NETWORK_POLICY, 77)
    assert c == 0x1234_02_0000000000 + 77
    assert cookie_round(c) == 0x1234
    assert cookie_category(c) is Category.NETWORK_POLICY


def test_filters_and_trace_packets_are_rendered_here() -> None:
    assert render_filter(FlowFilter()) == ""
    assert render_filter(FlowFilter(table=250)) == "table=250"
    assert render_filter(FlowFilter(table=50, cookie=0x2 << 40, cookie_mask=0xFF << 40)) == (
        "table=50,cookie=0x20000000000/0xff0000000000"
    )
    assert render_filter(category_filter(Category.SERVICE)) == "cookie=0x30000000000/0xff0000000000"
    assert render_filter(FlowFilter(cookie=0x10)) == "cookie=0x10"
    assert render_trace_packet(
        in_port=3,
        dl_src="02:00:00:00:00:03",
        dl_dst="02:00:00:00:00:01",
        proto="tcp",
        nw_src=ipaddress.IPv4Address("10.244.1.2"),
        nw_dst=ipaddress.IPv4Address("10.244.2.2"),
        extra="tp_dst=80",
    ) == (
        "in_port=3,dl_src=02:00:00:00:00:03,dl_dst=02:00:00:00:00:01,tcp,nw_src=10.244.1.2,"
        "nw_dst=10.244.2.2,nw_ttl=64,tp_dst=80"
    )
    tokens = render_port_tokens(3, ipaddress.IPv4Address("10.244.1.2"), "02:00:00:00:00:03")
    assert {"in_port=3", "reg1=0x3", "nw_src=10.244.1.2", "dl_dst=02:00:00:00:00:03"} <= tokens
