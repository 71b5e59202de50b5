"""``antctl get ovsflows -p POD``: which dumped flows name a pod (its port, address or MAC)."""

from __future__ import annotations

import ipaddress

from antrea.agent.apiserver import _flow_mentions
from antrea.ovs.ovsctl import parse_flow_line

IP = ipaddress.IPv4Address("10.244.1.2")
MAC = "02:00:00:00:00:03"


def mentions(line: str) -> bool:
    f = parse_flow_line(line)
    assert f is not None
    return _flow_mentions(f, 3, IP, MAC)


def test_a_pods_flows_are_those_naming_its_port_address_or_mac() -> None:
    assert mentions(" table=0, priority=190,in_port=3 actions=load:0x2->NXM_NX_REG0[0..15]")
    assert mentions(" table=10, priority=200,ip,in_port=3,dl_src=02:00:00:00:00:03 actions=drop")
    assert mentions(" table=70, priority=200,ip,nw_dst=10.244.1.2 actions=goto_table:80")
    assert mentions(" table=100, priority=200,ip,reg1=0x3 actions=drop")
    assert mentions(" table=20, priority=190,arp,arp_spa=10.244.1.2 actions=NORMAL")
    # another pod's port, address or MAC (prefixes of this one's included)
    assert not mentions(" table=0, priority=190,in_port=33 actions=drop")
    assert not mentions(" table=70, priority=200,ip,nw_dst=10.244.1.20 actions=drop")
    assert not mentions(" table=100, priority=200,ip,reg1=0x30 actions=drop")
    assert not mentions(" table=90, priority=190,conj_id=3,ip actions=goto_table:105")
