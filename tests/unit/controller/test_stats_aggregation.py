"""Cluster-wide per-rule counters: folding agent runs, duplicates, late reports, forgetting."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from antrea.apis.stats.codec import decode_summary, encode_summary
from antrea.apis.stats.types import NodeStatsSummary, RuleTraffic, TrafficStats
from antrea.controller.stats import StatsAggregator


def T(sessions: int, packets: int | None = None, nbytes: int | None = None) -> TrafficStats:
    p = sessions * 3 if packets is None else packets
    return TrafficStats(packets=p, bytes=p * 100 if nbytes is None else nbytes, sessions=sessions)


def summary(node: str, *rules: tuple[str, str, str, TrafficStats]) -> NodeStatsSummary:
    return NodeStatsSummary(node, tuple(RuleTraffic(p, r, s, t) for p, r, s, t in rules))


def test_summed_across_nodes_and_rules() -> None:
    agg = StatsAggregator()
    agg.report(summary("n1", ("p", "allow-web", "a.1", T(2)), ("p", "", "a.2", T(1))))
    agg.report(summary("n2", ("p", "allow-web", "b.1", T(3))))
    assert agg.rules("p") == {"allow-web": T(5), "": T(1)}
    assert agg.total("p") == T(6)


def test_a_repeated_or_late_report_never_counts_twice() -> None:
    agg = StatsAggregator()
    agg.report(summary("n1", ("p", "r", "a.1", T(5))))
    agg.report(summary("n1", ("p", "r", "a.1", T(5))))  # sent twice (response lost)
    agg.report(summary("n1", ("p", "r", "a.1", T(4))))  # an older report arriving late
    assert agg.total("p") == T(5)


def test_an_agent_restart_is_folded_not_lost_nor_counted_twice() -> None:
    agg = StatsAggregator()
    agg.report(summary("n1", ("p", "r", "run1.1", T(7))))
    agg.report(summary("n1", ("p", "r", "run2.1", T(2))))  # the agent restarted: a new run
    assert agg.total("p") == T(9)
    agg.report(summary("n1", ("p", "r", "run2.1", T(3))))
    assert agg.total("p") == T(10)
    agg.report(summary("n1", ("p", "r", "run1.1", T(7))))  # the old run, late: ignored
    assert agg.total("p") == T(10)


def test_unknown_policies_dropped_deleted_ones_forgotten() -> None:
    agg = StatsAggregator(known=lambda p: p == "p")
    agg.report(summary("n1", ("p", "r", "a.1", T(1)), ("gone", "r", "a.2", T(1))))
    assert agg.policies() == ["p"] and agg.dropped == 1
    agg.forget("p")
    assert agg.rules("p") == {} and agg.total("p") == TrafficStats()


def test_codec_round_trip_and_refusals() -> None:
    s = summary("n1", ("p", "r", "a.1", T(1, 2, 3)), ("q", "", "a.2", T(0)))
    assert decode_summary(encode_summary(s)) == s
    import msgpack
    import pytest

    from antrea.apis.controlplane.codec import DecodeError

    for bad in (
        b"\x00junk",
        msgpack.packb({"v": 1, "node": "", "rules": []}),
        msgpack.packb({"v": 2, "node": "n1", "rules": []}),
        msgpack.packb({"v": 1, "node": "n1", "rules": [["p", "r", "a", -1, 0, 0]]}),
        msgpack.packb({"v": 1, "node": "n1", "rules": [["p", "r", "a", 1.5, 0, 0]]}),
        msgpack.packb({"v": 1, "node": "n1", "rules": [["p", "r", "a", 1, 0]]}),
    ):
        with pytest.raises(DecodeError):
            decode_summary(bad)


# An agent's life on a node, as the controller sees it: runs (a restart starts a new one), each
# run's totals growing; every report may be delivered, lost, or delivered twice, and late
# deliveries of the previous report interleave.
step = st.tuples(
    st.sampled_from(["grow", "grow", "grow", "restart"]),
    st.integers(0, 5),
    st.sampled_from(["deliver", "deliver", "lose", "twice", "late"]),
)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.sampled_from(["n1", "n2"]), step), max_size=40))
def test_never_backwards_never_more_than_counted(
    steps: list[tuple[str, tuple[str, int, str]]],
) -> None:
    agg = StatsAggregator()
    runs: dict[str, list[int]] = {"n1": [0], "n2": [0]}  # per node: each run's sessions
    previous: dict[str, NodeStatsSummary] = {}
    seen = TrafficStats()
    for node, (what, n, delivery) in steps:
        if what == "restart":
            runs[node].append(0)
        runs[node][-1] += n
        run_id = len(runs[node])
        s = summary(node, ("p", "r", f"{node}-run{run_id}.1", T(runs[node][-1])))
        if delivery in ("deliver", "twice"):
            agg.report(s)
        if delivery == "twice":
            agg.report(s)
        if delivery == "late" and node in previous:
            agg.report(previous[node])
        previous[node] = s
        now = agg.total("p")
        assert now.covers(seen), "counters went backwards"
        seen = now
        truth = sum(sum(r) for r in runs.values())
        assert now.sessions <= truth, "counted twice"
    # everything delivered in order from here on: the last report of each node's run makes the
    # current runs exact; ended runs count at least what reached the controller before they ended
    for node in ("n1", "n2"):
        run_id = len(runs[node])
        agg.report(summary(node, ("p", "r", f"{node}-run{run_id}.1", T(runs[node][-1]))))
    assert agg.total("p").sessions <= sum(sum(r) for r in runs.values())
    assert agg.total("p").sessions >= runs["n1"][-1] + runs["n2"][-1]


@given(st.lists(st.tuples(st.sampled_from(["n1", "n2", "n3"]), st.integers(0, 9)), max_size=30))
def test_in_order_delivery_is_exact(growth: list[tuple[str, int]]) -> None:
    agg = StatsAggregator()
    totals: dict[str, int] = {}
    for node, n in growth:
        totals[node] = totals.get(node, 0) + n
        agg.report(summary(node, ("p", "r", f"{node}.1", T(totals[node]))))
    assert agg.total("p") == T(sum(totals.values()))
