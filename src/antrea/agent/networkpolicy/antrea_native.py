"""Antrea-native rules (ClusterNetworkPolicy, Antrea NetworkPolicy) in their own tables.

Where they sit (docs/design/ovs-pipeline.md): the Antrea-native rule tables come before the
Kubernetes rule tables of each direction, 45 AntreaPolicyEgressRule before 50 and
85 AntreaPolicyIngressRule before 90; baseline-tier rules live in the default tables 60 / 100
*below* the Kubernetes isolation drops (priority 200), so they apply only to pods no Kubernetes
NetworkPolicy isolates, and only when no Kubernetes rule allowed the packet first.

Every rule is one conjunction per named-port resolution (the clauses of `plan_rule`, exactly as
for a Kubernetes rule) at ONE OpenFlow priority of its own, ordered by (tier priority, policy
priority, rule position, policy UID): the first matching rule of the table decides, because OVS
takes the highest-priority conjunction that completes. Its action flow (``conj_id=N``):

| action | flow action |
| --- | --- |
| Allow | reg5/reg6 = N (ct_label), goto 70 (egress) / 105 (ingress): skips the Kubernetes tables |
| Drop | drop (the action flow's packet counter counts it) |
| Reject | the agent's reject action (`RejectAction`), else drop |
| Pass | goto the Kubernetes rule table (50 / 90) |

``enableLogging``: the action flow also sends the packet to the agent (``output:CONTROLLER``
after loading the packet-in reason "log" into reg0[18..19]; a logged Drop does only that), so
the audit log (agent/auditlog.py) writes one line per new connection; a Reject loads "reject"
(plus "log" when logged), which is what the reject responder answers.

A miss falls through to the Kubernetes rule table. Nothing here isolates a pod: an Antrea-native
policy never does by itself.

Priorities (`PrioritySpace`): a new rule takes a priority between its neighbours (the midpoint,
or a fixed step from the last one at the ends); when its neighbours have no free priority
between them, the nearest run of rules on one side shifts by one to open a slot. Those rules'
flows are rewritten in the same bundle as the insertion (one atomic change); no other rule's
flows are touched. A batch of many new rules (the initial state) is spread evenly over the
range instead. Tables 45/85 use priorities 1,000..60,000; baseline rules 1..198.

Fail closed: a rule whose planning or flow building raises or whose flows the switch refuses
is replaced by drop flows for its applied-to pods at its own priority (`reg1=<ofport>` ingress
/ ``nw_src=<pod IP>`` egress); one that gets no priority (the range is full) drops the same at
the top of its table. Traffic it should have dropped stays dropped and its pods are isolated by it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field

import structlog

from antrea.agent.networkpolicy import flows as fb
from antrea.agent.networkpolicy.cache import CacheRule, CompletedRule
from antrea.agent.networkpolicy.conjunctions import (
    Atom,
    Clauses,
    ServicesKey,
    atom_key,
    atom_match,
    isolation_atoms,
    plan_rule,
)
from antrea.agent.networkpolicy.ids import ConjIDAllocator
from antrea.agent.openflow import pipeline as p
from antrea.agent.owners import PolicyOwner
from antrea.apis.controlplane.types import Direction, PodReference, RuleAction
from antrea.errors import AntreaError
from antrea.ovs.openflow.flow import (
    Action,
    Conjunction,
    Drop,
    Flow,
    GotoTable,
    Match,
    Output,
    Proto,
    RegMatch,
)

log = structlog.get_logger(__name__)

Owner = Hashable
OWNER = PolicyOwner.NATIVE  # (OWNER, rule id): every flow of one Antrea-native rule
BASELINE_TIER_PRIORITY = 253

INITIAL_STEP = 16
REBALANCE_BATCH = 64  # a batch adding more keys than this (and than the table holds) spreads all

RuleKey = tuple[int, float, int, str, str]  # tier, policy priority, position, policy, rule id
RejectAction = Callable[[Direction], tuple[Action, ...]]


class PrioritySpaceExhausted(AntreaError, RuntimeError):
    """No OpenFlow priority is left in the table for one more rule."""


class PrioritySpace:
    """OpenFlow priorities for ordered keys: the lowest key gets the highest priority."""

    def __init__(self, lo: int, hi: int, step: int = INITIAL_STEP) -> None:
        self.lo, self.hi, self.step = lo, hi, step
        self.keys: list[RuleKey] = []
        self.prio: dict[RuleKey, int] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def rebalance(self, new: list[RuleKey]) -> set[RuleKey]:
        """Add ``new`` and spread every key evenly over the range; returns the keys moved."""
        keys = sorted(set(self.keys) | set(new))
        if len(keys) > self.hi - self.lo + 1:
            raise PrioritySpaceExhausted(f"{len(keys)} rules for {self.lo}..{self.hi}")
        step = (self.hi - self.lo + 1) // (len(keys) + 1)
        old = self.prio
        self.keys = keys
        self.prio = {k: self.hi - (i + 1) * step for i, k in enumerate(keys)}
        return {k for k in keys if old.get(k) != self.prio[k]}

    def remove(self, key: RuleKey) -> None:
        if self.prio.pop(key, None) is not None:
            del self.keys[bisect.bisect_left(self.keys, key)]

    def insert(self, key: RuleKey) -> set[RuleKey]:
        """Give ``key`` a priority; returns every key whose priority changed (with ``key``)."""
        if key in self.prio:
            return set()
        i = bisect.bisect_left(self.keys, key)
        keys, prio = self.keys, self.prio
        upper = prio[keys[i - 1]] if i > 0 else self.hi + 1
        lower = prio[keys[i]] if i < len(keys) else self.lo - 1
        if upper - lower > 1:
            if i == len(keys) and upper - self.step > lower:
                p = upper - self.step if keys else (self.hi + self.lo) // 2
            elif i == 0 and lower + self.step < upper:
                p = lower + self.step
            else:
                p = (upper + lower) // 2
            keys.insert(i, key)
            prio[key] = p
            return {key}
        # No free priority between the neighbours: shift the shorter run that reaches a gap.
        down = self._run_down(i)
        up = self._run_up(i - 1)
        if down is None and up is None:
            raise PrioritySpaceExhausted(f"no priority left in {self.lo}..{self.hi}")
        changed: set[RuleKey] = {key}
        if up is None or (down is not None and down - i <= (i - 1) - up):
            assert down is not None
            new_p = prio[keys[i]]
            for k in keys[i : down + 1]:
                prio[k] -= 1
                changed.add(k)
        else:
            new_p = prio[keys[i - 1]]
            for k in keys[up:i]:
                prio[k] += 1
                changed.add(k)
        keys.insert(i, key)
        prio[key] = new_p
        return changed

    def _run_down(self, i: int) -> int | None:
        """Last index of the run from ``i`` that can move one priority down, if any."""
        keys, prio = self.keys, self.prio
        for j in range(i, len(keys)):
            below = prio[keys[j + 1]] if j + 1 < len(keys) else self.lo - 1
            if prio[keys[j]] - below > 1:
                return j
        return None

    def _run_up(self, i: int) -> int | None:
        """First index of the run ending at ``i`` that can move one priority up, if any."""
        keys, prio = self.keys, self.prio
        for j in range(i, -1, -1):
            above = prio[keys[j - 1]] if j > 0 else self.hi + 1
            if above - prio[keys[j]] > 1:
                return j
        return None


@dataclass
class NativeRule:
    rule: CacheRule
    table: int
    key: RuleKey
    conjs: dict[ServicesKey, tuple[int, Clauses]] = field(default_factory=dict)
    fail_atoms: frozenset[Atom] = frozenset()
    failed: str = ""  # why the rule is realized as drops only


def is_native(rule: CacheRule) -> bool:
    return rule.rule.action is not None


def rule_table(rule: CacheRule) -> int:
    d = p.tables_for(rule.direction)
    if rule.tier_priority == BASELINE_TIER_PRIORITY:
        return d.default_table
    return p.ANTREA_EGRESS_RULE if rule.direction is Direction.OUT else p.ANTREA_INGRESS_RULE


def rule_key(rule: CacheRule) -> RuleKey:
    return (
        rule.tier_priority if rule.tier_priority is not None else 0,
        rule.policy_priority if rule.policy_priority is not None else 0.0,
        rule.rule.priority,
        rule.policy,
        rule.id,
    )


class NativeRealizer:
    """State and flows of the Antrea-native rules of one node (used by the reconciler)."""

    def __init__(
        self,
        *,
        round_num: int,
        ids: ConjIDAllocator,
        conj_rule: dict[int, str],
        ofport_of: Callable[[PodReference], int | None],
        reject: RejectAction | None = None,
    ) -> None:
        self.round_num = round_num
        self.ids = ids
        self.conj_rule = conj_rule
        self.ofport_of = ofport_of
        self.reject = reject
        self.rules: dict[str, NativeRule] = {}
        self.spaces: dict[int, PrioritySpace] = {}

    def _space(self, table: int) -> PrioritySpace:
        space = self.spaces.get(table)
        if space is None:
            baseline = table in (p.EGRESS_DEFAULT, p.INGRESS_DEFAULT)
            space = self.spaces[table] = (
                PrioritySpace(p.BASELINE_LO, p.BASELINE_HI, step=2)
                if baseline
                else PrioritySpace(p.NATIVE_LO, p.NATIVE_HI)
            )
        return space

    def owners(self) -> set[Owner]:
        return {(OWNER, rid) for rid in self.rules}

    def update(
        self,
        rules: Mapping[str, CompletedRule | None],
        *,
        desired: dict[Owner, list[Flow] | None],
        blame: dict[Owner, set[str]],
        failed: dict[str, str],
    ) -> None:
        """Diff these native rules against what is realized; fill ``desired`` for the bundle."""
        rerender: set[str] = set()
        placed: dict[int, list[RuleKey]] = {}  # table -> keys needing a priority
        planned: list[tuple[NativeRule, CompletedRule]] = []
        for rid in sorted(rules):
            completed = rules[rid]
            old = self.rules.get(rid)
            if completed is None:
                if old is not None:
                    self._forget(old)
                    del self.rules[rid]
                    desired[(OWNER, rid)] = None
                    blame.setdefault((OWNER, rid), set()).add(rid)
                continue
            rule = completed.rule
            table = rule_table(rule)
            key = rule_key(rule)
            cur = old
            if cur is None or cur.table != table or cur.key != key:
                if cur is not None:
                    self._forget(cur)
                cur = NativeRule(rule, table, key)
                self.rules[rid] = cur
                placed.setdefault(table, []).append(key)
            cur.rule = rule
            planned.append((cur, completed))
        for table, keys in placed.items():
            rerender |= self._place(table, sorted(keys), failed)
        for cur, completed in planned:
            self._plan(cur, completed, failed)
            rerender.add(cur.rule.id)
        for rid in rerender:
            r = self.rules.get(rid)
            if r is None:
                continue
            desired[(OWNER, rid)] = self._flows_or_drops(r, failed)
            blame.setdefault((OWNER, rid), set()).add(rid)

    def _flows_or_drops(self, r: NativeRule, failed: dict[str, str]) -> list[Flow]:
        """The rule's flows; when building them raises, its drops alone (fail closed, this
        rule only: the batch goes on, where a crash here used to leave the rule with no flow
        at all, its Drop unenforced)."""
        try:
            return self.flows(r)
        except Exception as exc:
            r.failed = f"flows failed: {type(exc).__name__}: {exc}"
            failed[r.rule.id] = r.failed
            log.warning("antrea_policy_rule_flows_failed", rule=r.rule.id, error=r.failed)
            self._release(r, keep=set())
            return self.flows(r)

    def _place(self, table: int, keys: list[RuleKey], failed: dict[str, str]) -> set[str]:
        """Priorities for new keys; returns the rule IDs whose priority is new or moved.

        Many keys at once (the initial state, a large batch) spread the whole table evenly;
        a few are placed one by one between their neighbours (shifting the shortest run when
        there is no room), so unrelated rules keep their priorities.
        """
        space = self._space(table)
        if len(keys) > max(REBALANCE_BATCH, len(space)):
            try:
                return {k[4] for k in space.rebalance(keys)}
            except PrioritySpaceExhausted:
                pass  # more rules than priorities: place what fits, fail the rest closed
        moved: set[str] = set()
        for key in keys:
            try:
                moved |= {k[4] for k in space.insert(key)}
            except PrioritySpaceExhausted as exc:
                log.warning("antrea_policy_priority_exhausted", rule=key[4], table=table)
                failed[key[4]] = f"{exc}: its pods drop everything at the top of the table"
                self.rules[key[4]].failed = failed[key[4]]
                moved.add(key[4])
        return moved

    def _plan(self, r: NativeRule, completed: CompletedRule, failed: dict[str, str]) -> None:
        if r.key not in self._space(r.table).prio:  # no priority left: drops only, on top
            self._release(r, keep=set())
            r.fail_atoms = isolation_atoms(completed, self.ofport_of)
            return
        try:
            plan = plan_rule(completed, self.ofport_of)
            for cl in plan.conjunctions.values():
                for _, atoms in cl.numbered():
                    for a in atoms:
                        atom_match(a)
        except Exception as exc:
            r.failed = f"planning failed: {type(exc).__name__}: {exc}"
            failed[r.rule.id] = r.failed
            log.warning("antrea_policy_rule_planning_failed", rule=r.rule.id, error=r.failed)
            self._release(r, keep=set())
            try:
                r.fail_atoms = isolation_atoms(completed, self.ofport_of)
            except Exception:  # no drop to install: a crash, for the controller's last resort
                log.exception("antrea_policy_rule_isolation_failed", rule=r.rule.id)
                raise
            return
        r.failed = ""
        r.fail_atoms = plan.isolated
        self._release(r, keep=set(plan.conjunctions))
        for skey, clauses in plan.conjunctions.items():
            was = r.conjs.get(skey)
            if was is not None:
                r.conjs[skey] = (was[0], clauses)
                continue
            cid = self.ids.allocate()
            self.conj_rule[cid] = r.rule.id
            r.conjs[skey] = (cid, clauses)

    def _release(self, r: NativeRule, keep: set[ServicesKey]) -> None:
        for skey in [k for k in r.conjs if k not in keep]:
            cid, _ = r.conjs.pop(skey)
            self.ids.release(cid)

    def _forget(self, r: NativeRule) -> None:
        self._release(r, keep=set())
        space = self.spaces.get(r.table)
        if space is not None:
            space.remove(r.key)

    def fail_closed(self, rid: str, reason: str) -> list[Flow] | None:
        """Drops for the rule's pods at its priority (its flows were refused)."""
        r = self.rules.get(rid)
        if r is None:
            return None
        r.failed = reason
        self._release(r, keep=set())
        return self.flows(r)

    def desired_of(self, rid: str) -> list[Flow] | None:
        r = self.rules.get(rid)
        return self.flows(r) if r is not None else None

    def flows(self, r: NativeRule) -> list[Flow]:
        prio = self._space(r.table).prio.get(r.key)
        if prio is None:  # no priority left (PrioritySpaceExhausted): fail closed, on top
            top = self._space(r.table).hi + 1
            c = fb.cookie(self.round_num)
            return [
                Flow(r.table, top, atom_match(a), (Drop(),), c)
                for a in sorted(r.fail_atoms, key=atom_key)
            ]
        c = fb.cookie(self.round_num)
        if r.failed:
            return [
                Flow(r.table, prio, atom_match(a), (Drop(),), c)
                for a in sorted(r.fail_atoms, key=atom_key)
            ]
        clause_actions: dict[Atom, list[Conjunction]] = {}
        out: list[Flow] = []
        for cid, clauses in r.conjs.values():
            n = clauses.n_clauses
            for k, atoms in clauses.numbered():
                for a in atoms:
                    clause_actions.setdefault(a, []).append(Conjunction(cid, k, n))
            out.append(
                Flow(
                    r.table,
                    prio,
                    Match(proto=Proto.IP, conj_id=cid),
                    self._actions(r.rule, cid),
                    fb.cookie(self.round_num, cid),
                )
            )
        for a in sorted(clause_actions, key=atom_key):
            actions = tuple(sorted(clause_actions[a], key=lambda x: (x.conj_id, x.clause)))
            out.append(Flow(r.table, prio, atom_match(a), actions, c))
        return out

    def priority_of(self, rid: str) -> int | None:
        """The OpenFlow priority of a realized rule (None: unknown or without one)."""
        r = self.rules.get(rid)
        return self._space(r.table).prio.get(r.key) if r is not None else None

    def _actions(self, rule: CacheRule, cid: int) -> tuple[Action, ...]:
        """The action flow's actions. ``enableLogging``: the packet also goes to the agent
        (``output:CONTROLLER``) with the packet-in reason "log" in reg0 (only new connections
        reach it: established ones take the bypass); a Reject carries "reject" (and "log")."""
        d = p.tables_for(rule.direction)
        action = rule.rule.action
        logged = rule.rule.enable_logging
        copy: tuple[Action, ...] = (
            (p.PACKET_IN_REASON.load(p.PACKET_IN_LOG), Output("CONTROLLER")) if logged else ()
        )
        if action is RuleAction.ALLOW:
            return (d.conj_reg.load(cid), *copy, GotoTable(d.allow_goto))
        if action is RuleAction.PASS:
            return (*copy, GotoTable(d.rule_table))
        if action is RuleAction.REJECT and self.reject is not None:
            reason = p.PACKET_IN_REJECT | (p.PACKET_IN_LOG if logged else 0)
            return (p.PACKET_IN_REASON.load(reason), *self.reject(rule.direction))
        return copy or (Drop(),)


def base_flows(
    round_num: int,
    *,
    gateway_ip: str | None,
    gateway_mark: RegMatch | None,
    with_miss: bool = False,
) -> list[Flow]:
    """The fixed flows of tables 45 and 85 (their misses belong to the pipeline).

    As in the Kubernetes rule tables: established and related connections skip the rules (a
    policy change does not cut them), a SYN that conntrack files under a dead connection is
    re-evaluated as new, and traffic from the local host (kubelet probes) reaches local pods.
    """
    c = fb.cookie(round_num)
    out: list[Flow] = []
    for table, d in ((p.ANTREA_EGRESS_RULE, p.EGRESS), (p.ANTREA_INGRESS_RULE, p.INGRESS)):
        out += fb.established_bypass(
            table, p.PRIO_NATIVE_STALE_SYN, p.PRIO_NATIVE_BYPASS, d.allow_goto, c
        )
        if with_miss:  # standalone users (the agent's pipeline owns these)
            out.append(Flow(table, p.PRIO_MISS, Match(), (GotoTable(d.rule_table),), c))
    out += fb.gateway_allow(
        p.ANTREA_INGRESS_RULE, p.PRIO_NATIVE_BYPASS, gateway_ip, gateway_mark, c
    )
    return out
