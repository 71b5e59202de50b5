"""The pipeline's flows as values: table misses, anti-spoofing, per-node routing, rounds."""

from __future__ import annotations

import ipaddress

from antrea.agent.openflow import builder as ob
from antrea.agent.openflow import pipeline as p
from antrea.agent.openflow.pipeline import (
    FROM_GATEWAY,
    FROM_POD,
    FROM_TUNNEL,
    GATEWAY_OFPORT,
    GLOBAL_VIRTUAL_MAC,
    TUNNEL_OFPORT,
)
from antrea.ovs.openflow import GotoTable, OutputReg, SetField
from antrea.ovs.openflow.client import FlowClient
from antrea.ovs.openflow.cookie import Category, cookie_category, cookie_round
from antrea.ovs.openflow.render import render_flow
from antrea.testbed.openflow import RecordingTransport

GW_MAC = "02:00:00:00:00:01"
POD = ob.PodPort(ofport=3, ip=ipaddress.IPv4Address("10.244.1.2"), mac="0a:00:00:00:00:02")


def builder(*, encap: bool = True, round_num: int = 7) -> ob.FlowBuilder:
    node = ob.NodeConfig(
        pod_cidr=ipaddress.IPv4Network("10.244.1.0/24"),
        gateway_ip=ipaddress.IPv4Address("10.244.1.1"),
        gateway_mac=GW_MAC,
        encap=encap,
    )
    return ob.FlowBuilder(node, round_num=round_num)


def test_every_table_has_a_miss_flow_and_policy_tables_pass_through() -> None:
    """Without policy, 50/60/90/100 only hold a priority-0 goto to the next table."""
    flows = builder().pipeline_flows()
    misses = {f.table: f for f in flows if f.priority == p.PRIORITY_MISS}
    assert set(misses) == {t.id for t in p.TABLES}
    for table, nxt in ((50, 60), (60, 70), (90, 100), (100, 105)):
        assert misses[table].actions == (GotoTable(nxt),)
    assert not [f for f in flows if f.table in p.POLICY_TABLES and f.priority != 0]
    assert render_flow(misses[10]).endswith("actions=drop")  # spoof guard drops by default
    assert render_flow(misses[110]).endswith("actions=drop")


def test_conntrack_commit_only_after_ingress() -> None:
    """Table 30 tracks in zone 65520, 31 drops invalid, 105 commits new connections."""
    text = [render_flow(f) for f in builder().pipeline_flows()]
    assert (
        "table=30,priority=200,cookie=0x7000000000000,ip actions=ct(table=31,zone=65520,nat)"
    ) in text
    assert any("table=31" in t and "ct_state=+inv+trk" in t and "actions=drop" in t for t in text)
    commit = next(t for t in text if "table=105" in t and "+new+trk" in t and "ct_mark" not in t)
    # service connections were committed with their DNAT in table 42: straight to output
    assert any(
        "table=105,priority=210" in t and "ct_mark=0x1/0x1" in t and "goto_table:110" in t
        for t in text
    )
    assert "ct(commit,zone=65520,exec(move:NXM_NX_REG5[]->NXM_NX_CT_LABEL[32..63]," in commit
    assert commit.endswith("goto_table:110")
    out = [f for f in builder().pipeline_flows() if f.table == 110 and f.priority == 200]
    assert out[0].actions == (OutputReg(1),)


def test_pod_flows_enforce_port_mac_and_ip() -> None:
    """Spoof guard admits the pod's (in_port, MAC, IP) for IP and ARP; L2 calc points at it."""
    flows = builder().pod_flows(POD)
    text = [render_flow(f) for f in flows]
    assert (
        "table=10,priority=200,cookie=0x7010000000003,ip,in_port=3,dl_src=0a:00:00:00:00:02,"
        "nw_src=10.244.1.2 actions=goto_table:30"
    ) in text
    assert any(
        "arp,in_port=3,arp_spa=10.244.1.2,arp_sha=0a:00:00:00:00:02 actions=goto_table:20" in t
        for t in text
    )
    classifier = next(f for f in flows if f.table == 0)
    assert FROM_POD.load() in classifier.actions
    l2 = next(f for f in flows if f.table == 80)
    assert "dl_dst=0a:00:00:00:00:02" in render_flow(l2)
    assert "set_field:0x3->reg1" in render_flow(l2) or "load:0x3->NXM_NX_REG1[]" in render_flow(l2)
    # from the tunnel: MACs rewritten, TTL decremented
    l3 = next(f for f in flows if f.table == 70 and f.match.regs)
    assert SetField("eth_dst", POD.mac) in l3.actions and SetField("eth_src", GW_MAC) in l3.actions
    assert FROM_TUNNEL.match() in l3.match.regs
    assert all(cookie_category(f.cookie) is Category.POD_CONNECTIVITY for f in flows)


def test_no_tunnel_flows_in_noencap_mode() -> None:
    b = builder(encap=False)
    assert not [
        f for f in b.pod_flows(POD) if f.table == 70 and FROM_TUNNEL.match() in f.match.regs
    ]
    # a Service DNATed to the pod (sent to the gateway MAC) is delivered in both modes
    (dnat,) = [f for f in b.pod_flows(POD) if f.table == 70 and f.priority == 200]
    (hairpin,) = [f for f in b.pod_flows(POD) if f.table == 70 and f.priority == 210]
    assert hairpin.match.nw_src == hairpin.match.nw_dst == POD.ip
    assert dnat.match.ct_mark == (1, 1) and SetField("eth_dst", POD.mac) in dnat.actions
    assert (
        b.node_flows(
            pod_cidr=ipaddress.IPv4Network("10.244.2.0/24"),
            gateway_ip=ipaddress.IPv4Address("10.244.2.1"),
            node_ip=ipaddress.IPv4Address("172.30.0.2"),
        )
        == []
    )


def test_remote_node_flows_tunnel_and_arp_responder() -> None:
    """A remote subnet goes to tun0 with tun_dst; its gateway IP is answered with the vMAC."""
    flows = builder().node_flows(
        pod_cidr=ipaddress.IPv4Network("10.244.2.0/24"),
        gateway_ip=ipaddress.IPv4Address("10.244.2.1"),
        node_ip=ipaddress.IPv4Address("172.30.0.2"),
    )
    text = [render_flow(f) for f in flows]
    l3 = next(t for t in text if "table=70" in t)
    assert "nw_dst=10.244.2.0/24" in l3
    assert (
        "set_field:172.30.0.2->tun_dst" in l3 and f"set_field:{GLOBAL_VIRTUAL_MAC}->eth_dst" in l3
    )
    assert "dec_ttl" in l3
    arp = next(t for t in text if "table=20" in t)
    assert "arp_tpa=10.244.2.1" in arp and "arp_op=1" in arp and arp.endswith("IN_PORT")
    assert all(cookie_category(f.cookie) is Category.NODE_ROUTE for f in flows)


def test_gateway_and_tunnel_classification() -> None:
    b = builder()
    gw = b.gateway_flows()
    tun = b.tunnel_flows()
    gw_class = next(f for f in gw if f.table == 0)
    assert gw_class.match.in_port == GATEWAY_OFPORT and FROM_GATEWAY.load() in gw_class.actions
    tun_class = next(f for f in tun if f.table == 0)
    assert tun_class.match.in_port == TUNNEL_OFPORT and GotoTable(30) in tun_class.actions


async def test_all_base_flows_install_in_one_bundle_with_the_round() -> None:
    """Start-up state goes out as ONE bundle, every cookie carrying the agent's round."""
    t = RecordingTransport()
    client = FlowClient(t)
    b = builder(round_num=42)
    await client.sync(
        {
            "pipeline": b.pipeline_flows(),
            "gateway": b.gateway_flows(),
            "tunnel": b.tunnel_flows(),
            "canary": [b.canary_flow()],
            ("pod", "c1"): b.pod_flows(POD),
        }
    )
    assert len(t.bundles) == 1
    assert {cookie_round(f.cookie) for f in t.flows.values()} == {42}
    assert t.table(p.CANARY_TABLE)
