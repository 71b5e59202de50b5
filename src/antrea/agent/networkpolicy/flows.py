"""Flow builders for the policy tables: small functions from values to `Flow`s.

Samples of what they produce (ovs-ofctl dump-flows br-int table=90)::

    priority=210,ct_state=-new+est,ip actions=goto_table:105
    priority=200,ip,nw_src=10.244.1.2 actions=conjunction(1,1/2)
    priority=200,ip,reg1=0x3 actions=conjunction(1,2/2),conjunction(4,2/3)
    priority=190,conj_id=1,ip actions=load:0x1->NXM_NX_REG6[],goto_table:105
    table=100 priority=200,ip,reg1=0x3 actions=drop
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple, TypeVar, cast

from antrea.agent.openflow import pipeline as p
from antrea.apis.controlplane.fastnew import positional_new
from antrea.ovs.openflow.cookie import OBJECT_MASK, Category, make_cookie
from antrea.ovs.openflow.flow import (
    Action,
    Conjunction,
    CtClear,
    CtState,
    Drop,
    Flow,
    GotoTable,
    LoadReg,
    Match,
    Output,
    Proto,
    RegMatch,
    Resubmit,
    conj_id_match,
    ct_label_match,
    new_flow,
)

T = TypeVar("T")
EST = CtState(new=False, est=True)
REL = CtState(new=False, rel=True)
LABEL_MASK = 0xFFFFFFFF
# (module globals: an enum member looked up on its class, or a module attribute, costs more,
# and these are used per conjunction and per clause flow)
_IP = Proto.IP
_PRIO_ACTION = p.PRIO_ACTION
_PRIO_METRIC = p.PRIO_METRIC
_PRIO_MATCH = p.PRIO_MATCH


def cookie(round_num: int, object_id: int = 0) -> int:
    return make_cookie(round_num, Category.NETWORK_POLICY, object_id)


@lru_cache(maxsize=64)
def _round_cookie(round_num: int) -> int:
    """The cookie of a round's shared policy flows (object id 0); a conjunction's own flows
    add its ID in the object bits."""
    return cookie(round_num)


def base_flows(
    round_num: int,
    *,
    gateway_ip: str | None = None,
    gateway_mark: RegMatch | None = None,
    with_miss: bool = False,
) -> list[Flow]:
    """Flows that exist whatever the policies: bypasses, the gateway allow, table misses.

    Traffic from the local host (kubelet probes) enters through the gateway with the gateway's
    IP as source. It is matched on both when both are known: in noEncap mode traffic from
    remote pods also enters through the gateway, with their own source IPs, and must be
    checked like any other.
    """
    c = cookie(round_num)
    out: list[Flow] = []
    for d in (p.EGRESS, p.INGRESS):
        out += established_bypass(d.rule_table, p.PRIO_STALE_SYN, p.PRIO_BYPASS, d.allow_goto, c)
        if with_miss:  # the agent's pipeline owns the miss flows; standalone users want them
            out.append(Flow(d.rule_table, p.PRIO_MISS, Match(), (GotoTable(d.default_table),), c))
            out.append(Flow(d.default_table, p.PRIO_MISS, Match(), (GotoTable(d.allow_goto),), c))
    out += gateway_allow(p.INGRESS_RULE, p.PRIO_BYPASS, gateway_ip, gateway_mark, c)
    return out


def established_bypass(
    table: p.Table, stale_syn_priority: int, priority: int, allow_goto: p.Table, c: int
) -> list[Flow]:
    """A rule table's (Kubernetes or Antrea-native) bypasses: established and related
    connections skip the rules (a policy change does not cut them); a TCP SYN that conntrack
    files under an old connection (same 5-tuple still in TIME_WAIT: the userspace datapath
    reports it -new+est) is a new connection: its conntrack state is forgotten and the rules
    evaluate it again (untracked, it is not committed later)."""
    out = [
        Flow(
            table,
            stale_syn_priority,
            Match(proto=Proto.TCP, ct_state=EST, tcp_flags="+syn-ack"),
            (CtClear(), Resubmit(table)),
            c,
        )
    ]
    for state in (EST, REL):
        out.append(
            Flow(
                table, priority, Match(proto=Proto.IP, ct_state=state), (GotoTable(allow_goto),), c
            )
        )
    return out


def gateway_allow(
    table: p.Table,
    priority: int,
    gateway_ip: str | None,
    gateway_mark: RegMatch | None,
    c: int,
) -> list[Flow]:
    """The ingress rule table's allow of traffic from the local host (through the gateway,
    matched on its IP and/or its register mark; none when neither is known)."""
    if gateway_ip is None and gateway_mark is None:
        return []
    regs = (gateway_mark,) if gateway_mark is not None else ()
    src = ipaddress.ip_network(gateway_ip) if gateway_ip is not None else None
    return [
        Flow(
            table,
            priority,
            Match(proto=Proto.IP, regs=regs, nw_src=src),
            (GotoTable(p.CONNTRACK_COMMIT),),
            c,
        )
    ]


def conj_flows(
    round_num: int, d: p.DirectionTables, conj_id: int, *, log: bool = False
) -> list[Flow]:
    """The action flow of one conjunction plus its established-packets counter. With ``log``
    (an audit-logged rule) the action flow also copies the packet to the agent: only new
    connections get there (established ones take the bypass above).

    Built by the ten thousand in an initial sync: a planner keeps the `conj_flow_maker` of
    each direction and calls it per conjunction."""
    # the maker by the direction's identity (hashing the frozen dataclass, or an lru_cache
    # lookup by it, costs ~0.3 us)
    entry = _makers_by_id.get(id(d))
    if entry is None or entry[0] is not d or entry[1] != round_num:
        entry = _makers_by_id[id(d)] = (d, round_num, conj_flow_maker(round_num, d))
    return entry[2](conj_id, log)


ConjFlowMaker = Callable[[int, bool], list[Flow]]


def conj_flow_maker(round_num: int, d: p.DirectionTables) -> ConjFlowMaker:
    """`conj_flows` of one round and direction: ``make(conj_id, log)``, with everything but
    the ID worked out once (`_ConjTemplate`, the round's cookie)."""
    table, reg, start, end, shift, label_mask, goto, tail = _conj_template(d)
    round_cookie = _round_cookie(round_num)
    load_reg = _load_reg
    logged_tail = (_TO_CONTROLLER, goto)

    def make(conj_id: int, log: bool) -> list[Flow]:
        c = round_cookie | (conj_id & OBJECT_MASK)
        load = load_reg(reg, conj_id, start, end)
        return [
            new_flow(
                table,
                _PRIO_ACTION,
                conj_id_match(conj_id),
                (load, *logged_tail) if log else (load, goto),
                c,
            ),
            new_flow(
                table,
                _PRIO_METRIC,
                ct_label_match(EST, (conj_id << shift, label_mask)),
                tail,
                c,
            ),
        ]

    return make


class _ConjTemplate(NamedTuple):
    """What the flows of every conjunction of one direction share."""

    table: int
    reg: int
    start: int
    end: int
    shift: int
    label_mask: int
    goto: GotoTable  # after the conj_reg load (audit-logged rules: to the agent first)
    tail: tuple[Action, ...]  # the counter's actions: the goto


@lru_cache(maxsize=8)
def _conj_template(d: p.DirectionTables) -> _ConjTemplate:
    goto = GotoTable(d.allow_goto)
    reg = d.conj_reg
    return _ConjTemplate(
        d.rule_table,
        reg.reg,
        reg.start,
        reg.end,
        d.label_shift,
        LABEL_MASK << d.label_shift,
        goto,
        (goto,),
    )


_makers_by_id: dict[int, tuple[p.DirectionTables, int, ConjFlowMaker]] = {}


_TO_CONTROLLER = Output("CONTROLLER")


def _fast_new(cls: type[T]) -> Callable[..., T]:
    """`cls`'s constructor without the frozen dataclass's per-field ``object.__setattr__``
    (`positional_new`: every field, positionally; the same object), or the class itself
    when its shape does not allow that."""
    try:
        return cast("Callable[..., T]", positional_new(cls))
    except TypeError:
        return cls


# Built once per conjunction (and clause) by the ten thousand in an initial sync.
_load_reg = _fast_new(LoadReg)
new_conjunction = _fast_new(Conjunction)


# How many conjunction actions one clause flow carries at most. One NXAST_CONJUNCTION is 16
# bytes and a flow mod must fit one OpenFlow message (64 KiB, inside a bundle-add message):
# 4,000 actions plus the largest clause match (a masked IPv6 prefix) stay below that. Beyond it,
# the reconciler puts conjunctions in lower priority bands of the same table.
MAX_CONJUNCTIONS_PER_FLOW = 4000


def clause_flow(
    round_num: int, table: int, match: Match, actions: tuple[Conjunction, ...], band: int = 0
) -> Flow:
    """The clause flow of `match` in one band: the conjunction actions that share it, ordered
    by conjunction ID (the reconciler keeps one `Conjunction` value per conjunction and
    clause, shared by every flow of that clause).

    ``band`` b puts it at priority ``PRIO_MATCH - b``: every clause flow of one conjunction is
    in that conjunction's band, as OVS evaluates conjunctions per priority.
    """
    return new_flow(table, _PRIO_MATCH - band, match, actions, _round_cookie(round_num))


# Cookie object id of isolation flows that also send the packet to the agent's audit log
# (packet-in; reject.py leaves these alone).
AUDIT_OBJECT_ID = OBJECT_MASK


def isolation_flow(round_num: int, table: int, match: Match, *, log: bool = False) -> Flow:
    """The drop of an isolated pod's traffic that no rule allowed; with ``log`` the packet goes
    to the agent first (audit log, agent/auditlog.py) and is dropped there."""
    if log:
        return Flow(
            table, p.PRIO_ISOLATION, match, (Output("CONTROLLER"),),
            cookie(round_num, AUDIT_OBJECT_ID),
        )  # fmt: skip
    return new_flow(table, p.PRIO_ISOLATION, match, _DROP, _round_cookie(round_num))


_DROP = (Drop(),)
