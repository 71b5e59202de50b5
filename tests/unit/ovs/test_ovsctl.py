"""dump-flows parsing (antctl get ovsflows, flow-count metrics, the restart canary)."""

from __future__ import annotations

from antrea.ovs.ovsctl import parse_flow_line


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
