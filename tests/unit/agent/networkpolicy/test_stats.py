"""Per-rule counters from one dump; prefix canonicalisation."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from antrea.agent.networkpolicy.addresses import net_key, prefix_key
from antrea.agent.networkpolicy.stats import conj_counters, rule_counters
from antrea.ovs.ovsctl import parse_flow_line

H = " cookie=0x1020000000007, duration=3.2s, "
DUMP = [
    H + "table=90, n_packets=4, n_bytes=296, priority=190,conj_id=7,ip "
    "actions=set_field:0x7->reg6,goto_table:105",
    H + "table=90, n_packets=40, n_bytes=4000, priority=211,ct_state=-new+est,"
    "ct_label=0x7/0xffffffff,ip actions=goto_table:105",
    H + "table=50, n_packets=1, n_bytes=74, priority=190,conj_id=9,ip "
    "actions=set_field:0x9->reg5,goto_table:70",
    H + "table=50, n_packets=5, n_bytes=500, priority=211,ct_state=-new+est,"
    "ct_label=0x900000000/0xffffffff00000000,ip actions=goto_table:70",
    H + "table=90, n_packets=99, n_bytes=9900, priority=200,ip,reg1=0x3 actions=conjunction(7,2/2)",
]


def test_counters_per_conjunction_and_rule() -> None:
    flows = [f for f in (parse_flow_line(line) for line in DUMP) if f]
    by_conj = conj_counters(flows)
    assert by_conj[7].sessions == 4 and by_conj[7].packets == 44 and by_conj[7].bytes == 4296
    assert by_conj[9].sessions == 1 and by_conj[9].packets == 6
    rules = rule_counters(flows, {7: "r1", 9: "r2"}.get)
    assert rules["r1"].to_json() == {"sessions": 4, "packets": 44, "bytes": 4296}
    assert set(rules) == {"r1", "r2"}


@given(st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_prefix_key_matches_ipaddress(addr: int, plen: int) -> None:
    text = f"{ipaddress.IPv4Address(addr)}/{plen}"
    assert prefix_key(text) == net_key(ipaddress.IPv4Network(text, strict=False))


def test_prefix_key_edge_cases() -> None:
    assert prefix_key("10.0.0.1") == (0x0A000001, 32)
    assert prefix_key("::/0") is None
    assert prefix_key("junk") is None
