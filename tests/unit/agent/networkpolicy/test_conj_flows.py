"""`flows.conj_flows` (built per conjunction from a per-direction template and the match
shape constructors) is the plain spelling of a conjunction's two flows: the action flow
(load the rule ID, to the agent first when audit-logged, then past the default table) and
its established-packets counter (the rule ID in the direction's ct_label bits)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from antrea.agent.networkpolicy import flows as fb
from antrea.agent.openflow import pipeline as p
from antrea.ovs.openflow.cookie import OBJECT_MASK
from antrea.ovs.openflow.flow import (
    CtState,
    Flow,
    GotoTable,
    LoadReg,
    Match,
    Output,
    Proto,
)


def _plain(round_num: int, d: p.DirectionTables, cid: int, log: bool) -> list[Flow]:
    c = fb.cookie(round_num, cid & OBJECT_MASK)
    goto = GotoTable(d.allow_goto)
    r = d.conj_reg
    load = LoadReg(r.reg, cid, r.start, r.end)
    actions = (load, Output("CONTROLLER"), goto) if log else (load, goto)
    label = (cid << d.label_shift, 0xFFFFFFFF << d.label_shift)
    est = CtState(new=False, est=True)
    return [
        Flow(d.rule_table, p.PRIO_ACTION, Match(proto=Proto.IP, conj_id=cid), actions, c),
        Flow(
            d.rule_table,
            p.PRIO_METRIC,
            Match(proto=Proto.IP, ct_state=est, ct_label=label),
            (goto,),
            c,
        ),
    ]


@given(
    st.integers(1, 2**20),
    st.sampled_from([p.INGRESS, p.EGRESS]),
    st.integers(1, 2**32 - 1),
    st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_conj_flows_are_the_plain_flows(
    round_num: int, d: p.DirectionTables, cid: int, log: bool
) -> None:
    got = fb.conj_flows(round_num, d, cid, log=log)
    want = _plain(round_num, d, cid, log)
    assert got == want
    assert [f.key for f in got] == [f.key for f in want]
    assert [hash(f.key) for f in got] == [hash(f.key) for f in want]


def test_an_equal_direction_value_gets_its_own_tables() -> None:
    # the template is looked up by the direction's identity: another (equal or different)
    # DirectionTables object still gets flows of its own tables
    other = p.DirectionTables(
        p.EGRESS_RULE, p.EGRESS_DEFAULT, p.L3_FORWARDING, p.INGRESS_RULE_ID, 0
    )
    assert fb.conj_flows(3, other, 7) == _plain(3, other, 7, False)
    assert fb.conj_flows(3, p.INGRESS, 7) == _plain(3, p.INGRESS, 7, False)
