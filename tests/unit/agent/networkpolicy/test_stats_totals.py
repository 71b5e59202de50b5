"""The agent's per-rule totals: baseline at start, reinstalled flows, conjunction reuse, runs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from antrea.agent.networkpolicy.stats import RuleStats, RuleTotals
from antrea.apis.stats.types import TrafficStats

OWNERS = {7: ("rid-a", "p1", "allow-web"), 8: ("rid-b", "p1", "allow-web"), 9: ("rid-c", "p2", "")}


def R(sessions: int) -> RuleStats:
    return RuleStats(sessions=sessions, packets=sessions * 3, bytes=sessions * 300)


def T(sessions: int) -> TrafficStats:
    return TrafficStats(packets=sessions * 3, bytes=sessions * 300, sessions=sessions)


def test_first_reading_is_a_baseline_then_deltas_summed_per_rule_name() -> None:
    t = RuleTotals(run="r")
    t.observe({7: R(50), 9: R(5)}, OWNERS.get)  # left by a previous agent run: not counted
    assert t.totals() == {}
    t.observe({7: R(52), 8: R(3), 9: R(5)}, OWNERS.get)  # 8 is new: all of it counts
    assert t.totals() == {("p1", "allow-web"): T(5)}
    t.observe({7: R(53), 8: R(3), 9: R(6)}, OWNERS.get)
    assert t.totals() == {("p1", "allow-web"): T(6), ("p2", ""): T(1)}
    s = t.summary("n1")
    assert s.node == "n1" and [(r.policy, r.rule, r.since) for r in s.rules] == [
        ("p1", "allow-web", "r.1"),
        ("p2", "", "r.2"),
    ]


def test_reinstalled_flows_count_from_zero_never_backwards() -> None:
    t = RuleTotals(run="r")
    t.observe({7: R(10)}, OWNERS.get)
    t.observe({7: R(12)}, OWNERS.get)
    t.observe({7: R(1)}, OWNERS.get)  # the flows were replaced: their counters restarted
    assert t.totals() == {("p1", "allow-web"): T(3)} and t.resets == 1


def test_unmapped_conjunctions_are_tracked_so_a_late_mapping_does_not_recount() -> None:
    owners: dict[int, tuple[str, str, str]] = {}
    t = RuleTotals(run="r")
    t.observe({7: R(40)}, owners.get)
    t.observe({7: R(41)}, owners.get)  # not yet mapped to a rule (policy not realized yet)
    owners[7] = OWNERS[7]
    t.observe({7: R(43)}, owners.get)
    assert t.totals() == {("p1", "allow-web"): T(2)}
    owners[7] = ("rid-z", "p2", "")  # the ID released and given to another rule: new flows
    t.observe({7: R(50)}, owners.get)
    assert t.totals() == {("p1", "allow-web"): T(2), ("p2", ""): T(50)}


def test_a_policy_gone_from_the_node_is_forgotten_and_comes_back_as_a_new_run() -> None:
    t = RuleTotals(run="r")
    t.observe({}, OWNERS.get)
    t.observe({7: R(4)}, OWNERS.get)
    assert t.summary("n").rules[0].since == "r.1"
    t.retain({"p2"})
    assert t.totals() == {}
    t.observe({7: R(1)}, OWNERS.get)
    (r,) = t.summary("n").rules
    assert r.since == "r.2" and r.stats == T(1)


# Readings of one conjunction over time: traffic grows its counters, a reinstall resets them to
# zero before new traffic. What the totals count never exceeds the traffic after the baseline,
# never goes backwards, and equals it when every reinstall is visible and loses nothing.
@settings(max_examples=300)
@given(
    st.integers(0, 100),
    st.lists(st.tuples(st.integers(0, 20), st.booleans(), st.integers(0, 20)), max_size=25),
)
def test_totals_never_backwards_nor_above_the_traffic(
    initial: int, steps: list[tuple[int, bool, int]]
) -> None:
    t = RuleTotals(run="r")
    counter = initial
    t.observe({7: R(counter)}, OWNERS.get)
    traffic = 0
    exact = True
    seen = 0
    for before, reinstall, after in steps:
        last = counter
        counter += before
        if reinstall:
            counter = 0
        counter += after
        # a reinstall is seen only when the counters went down, and then what the old flows
        # counted since the last reading is lost (never guessed)
        if reinstall and (before or counter >= last):
            exact = False
        traffic += before + after
        t.observe({7: R(counter)}, OWNERS.get)
        got = t.totals().get(("p1", "allow-web"), TrafficStats()).sessions
        assert seen <= got <= traffic
        seen = got
    if exact:
        assert seen == traffic


def test_saved_totals_continue_under_their_tokens_in_the_next_agent_run() -> None:
    import json

    first = RuleTotals(run="r1")
    first.observe({}, OWNERS.get)
    first.observe({7: R(4), 9: R(2)}, OWNERS.get)
    saved = json.loads(json.dumps(first.saved()))
    second = RuleTotals(run="r2")
    assert second.restore(saved) == 2
    second.observe({7: R(4), 9: R(2)}, OWNERS.get)  # the flows survived: a baseline
    second.observe({7: R(5), 9: R(2)}, OWNERS.get)
    got = {(r.policy, r.rule): (r.since, r.stats) for r in second.summary("n").rules}
    assert got == {("p1", "allow-web"): ("r1.1", T(5)), ("p2", ""): ("r1.2", T(2))}


def test_restore_skips_what_is_malformed() -> None:
    t = RuleTotals(run="r")
    bad: object
    for bad in (None, [], {"totals": 3}, {"totals": [["p", "r", "s", -1, 0, 0], ["p"], 5]}):
        assert t.restore(bad) == 0
    assert t.restore({"totals": [["p", "r", "s", 1, 2, 3], ["p", "q", 4, 1, 2, 3]]}) == 1
    assert t.totals() == {("p", "r"): TrafficStats(packets=1, bytes=2, sessions=3)}


# The agent and the controller together, over an agent's lives on one node: traffic, readings
# sent to the controller, flows reinstalled, agent restarts with or without its saved totals
# (OVS keeps the flows and their counters). The controller's count never goes backwards and
# never exceeds the traffic.
event = st.one_of(
    st.tuples(st.just("traffic"), st.integers(1, 9)),
    st.tuples(st.sampled_from(["read", "reinstall", "restart", "restart-saved"]), st.just(0)),
)


@settings(max_examples=300)
@given(st.lists(event, max_size=40))
def test_agent_and_controller_never_backwards_never_twice(events: list[tuple[str, int]]) -> None:
    from antrea.controller.stats import StatsAggregator

    agg = StatsAggregator()
    runs = 0

    def new_agent() -> RuleTotals:
        nonlocal runs
        runs += 1
        return RuleTotals(run=f"run{runs}")

    agent = new_agent()
    ovs = traffic = seen = 0
    agent.observe({7: R(ovs)}, OWNERS.get)
    for what, n in events:
        if what == "traffic":
            ovs += n
            traffic += n
        elif what == "reinstall":
            ovs = 0
        elif what.startswith("restart"):
            saved = agent.saved()
            agent = new_agent()
            if what == "restart-saved":
                agent.restore(saved)
            agent.observe({7: R(ovs)}, OWNERS.get)  # the new run's baseline
        else:
            agent.observe({7: R(ovs)}, OWNERS.get)
            agg.report(agent.summary("n1"))
            got = agg.total("p1").sessions
            assert seen <= got <= traffic
            seen = got
