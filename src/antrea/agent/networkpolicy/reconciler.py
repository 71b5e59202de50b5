"""Rules in, flow deltas out: the policy reconciler.

State kept per rule (`RealizedRule`): its conjunctions by named-port resolution (with their
IDs and clause match sets) and its isolation matches, the equivalent of Antrea's
``lastRealized``. Globally, the reconciler keeps which conjunctions use every clause match
(one OVS flow per (table, match), carrying several ``conjunction()`` actions) and which rules
isolate every pod (a reference count per drop flow).

A batch of dirty rules is diffed against that state and only the flows that must change are
handed to the `FlowClient`, as *owners* (`antrea.agent.owners.PolicyOwner`): a conjunction's
action flows are owned by ``(CONJUNCTION, id)``, a shared clause flow by ``(MATCH, table,
match)`` and a drop flow by ``(ISOLATION, table, match)``. Changing one rule therefore
rewrites only the clause flows whose conjunction lists change, never the flows of rules it
shares them with.

No size ceiling: a clause flow carries at most `MAX_CONJUNCTIONS_PER_FLOW` conjunction actions
(one OpenFlow message is 64 KiB). Every conjunction lives in one *band* (priority
``PRIO_MATCH - band`` of its rule table; OVS evaluates conjunctions per priority), chosen at
allocation as the first band where each of its clause matches has room, so a match shared by
more conjunctions is one flow per band, all owned by the same ``(MATCH, ...)`` owner. IDs,
action flows and counters do not depend on the band.

Everything of a batch goes to the switch as ONE bundle. If OVS rejects it, the batch is bisected
(log2 of its size extra bundles per bad owner, instead of one per owner) and the rules behind
the rejected owners are reported as failed; those owners are retried with the next batch, and
every other change lands.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import structlog

from antrea.agent.networkpolicy import antrea_native, lastresort
from antrea.agent.networkpolicy import flows as fb
from antrea.agent.networkpolicy.cache import CacheRule, CompletedRule
from antrea.agent.networkpolicy.conjunctions import (
    Atom,
    Clauses,
    PlanMemo,
    RulePlan,
    ServicesKey,
    atom_match,
    isolation_atoms,
    plan_rule,
)
from antrea.agent.networkpolicy.flows import new_conjunction
from antrea.agent.networkpolicy.ids import ConjIDAllocator
from antrea.agent.openflow.pipeline import (
    EGRESS,
    INGRESS,
    MATCH_BANDS,
    DirectionTables,
    tables_for,
)
from antrea.agent.owners import PolicyOwner, is_policy_owner
from antrea.apis.controlplane.types import Direction, PodReference
from antrea.errors import AntreaError
from antrea.ovs.errors import BundleRejected
from antrea.ovs.openflow.client import FlowClient, FlowOwnershipError
from antrea.ovs.openflow.flow import Conjunction, Flow, RegMatch
from antrea.ovs.openflow.render import render_table_match

log = structlog.get_logger(__name__)

Owner = Hashable
BASE_OWNER = (PolicyOwner.BASE,)
MatchKey = tuple[int, Atom]
_Entry = dict[int, Conjunction]  # a clause match's conjunctions: ID -> its action there


class BandsExhausted(AntreaError, RuntimeError):
    """Every priority band of a clause match is full (MATCH_BANDS x the per-flow cap)."""


class RealizedConj(NamedTuple):
    conj_id: int
    clauses: Clauses


class RealizedRule(NamedTuple):
    rule: CacheRule
    conjs: dict[ServicesKey, RealizedConj]
    isolated: frozenset[Atom]


# Realized state is recorded per rule by the ten thousand: the named tuples are made without
# their Python-level __new__ (argument parsing costs more than the tuple).
_new = tuple.__new__
# (an enum member looked up on its class costs more than a module global: per rule and flow)
_CONJ = PolicyOwner.CONJUNCTION
_MATCH = PolicyOwner.MATCH
_IN = Direction.IN


_NO_ATOMS: frozenset[Atom] = frozenset()
_NO_CONJS: dict[ServicesKey, RealizedConj] = {}
_GONE = RulePlan({}, _NO_ATOMS)


@dataclass
class BatchResult:
    rules: int = 0
    flows_added: int = 0
    flows_modified: int = 0
    flows_deleted: int = 0
    bundles: int = 0
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)  # rule id -> error
    failed_stage: dict[str, str] = field(default_factory=dict)  # rule id -> "plan" | "apply"


@dataclass(slots=True)
class _Batch:
    """What the planning of one batch collects: the owners' desired flows, who to blame for
    them (filled in lazily, see `PolicyReconciler._blame_shared`) and the clause and
    isolation matches whose flows must be rebuilt once every rule of the batch is linked."""

    desired: dict[Owner, list[Flow] | None] = field(default_factory=dict)
    blame: dict[Owner, set[str]] = field(default_factory=dict)
    # touched clause matches -> their conjunctions as the batch left them so far (the entry of
    # `PolicyReconciler._matches`; `_NO_ENTRY` once the match has none): whoever changes an
    # entry records it here, so the flows are built without looking each match up again
    matches: dict[MatchKey, dict[int, Conjunction]] = field(default_factory=dict)
    iso: set[MatchKey] = field(default_factory=set)
    # new conjunctions' owners and flows not staged yet (`PolicyReconciler._stage`)
    new_conjs: list[tuple[Owner, list[Flow]]] = field(default_factory=list)
    # the isolation atoms of the last rule added and their holder sets (`_add_rule`): the
    # rules of one policy share them; dropped when a holder set may have left `_isolation`
    iso_holders: tuple[frozenset[Atom], int, list[set[str]]] | None = None


# the entry of a clause match that has no conjunction (left): never written to
_NO_ENTRY: dict[int, Conjunction] = {}


class RuleRealizationError(AntreaError, RuntimeError):
    """A rule could not be realized (its isolation flows are kept)."""


BundleObserver = Callable[[int, float, bool], None]  # (flow operations, seconds, ok)
# More rules for the batch being planned (see `PolicyReconciler.reconcile`); empty: none.
Absorb = Callable[[], Mapping[str, "CompletedRule | None"]]
PLAN_CHUNK = 256  # rules planned between two yields to the event loop


class PolicyReconciler:
    def __init__(
        self,
        client: FlowClient,
        *,
        round_num: int,
        ofport_of: Callable[[PodReference], int | None],
        gateway_ip: str | None = None,
        gateway_mark: RegMatch | None = None,
        allocator: ConjIDAllocator | None = None,
        on_bundle: BundleObserver | None = None,
        install_miss_flows: bool = False,
        settle: Callable[[], Awaitable[None]] | None = None,
        max_conjunctions_per_flow: int = fb.MAX_CONJUNCTIONS_PER_FLOW,
        reject: antrea_native.RejectAction | None = None,
    ) -> None:
        self.client = client
        self.round_num = round_num
        self.ofport_of = ofport_of
        self.gateway_ip = gateway_ip
        self.gateway_mark = gateway_mark
        self.ids = allocator or ConjIDAllocator()
        self.on_bundle = on_bundle
        self.install_miss_flows = install_miss_flows
        self.settle = settle
        # Asked after each bundle: true = more work is already waiting, so the datapath wait
        # is left to the batch that follows (`unsettled` until then; see settle_now).
        self.defer_settle: Callable[[], bool] | None = None
        self.unsettled = False
        self.realized: dict[str, RealizedRule] = {}
        self.conj_rule: dict[int, str] = {}  # conj id -> rule id (kept while the ID cools down)
        self.band_cap = max_conjunctions_per_flow
        # clause match -> conjunction ID -> its action in that match's flow (one value per
        # conjunction and clause, shared by the flows of every match of the clause)
        self._matches: dict[MatchKey, dict[int, Conjunction]] = {}
        # match -> band -> conjunctions, for the bands past 0 only (band 0 holds the rest of
        # the match's conjunctions): empty unless a match has more than `band_cap` of them
        self._band_load: dict[MatchKey, dict[int, int]] = {}
        self._conj_band: dict[int, int] = {}  # conjunctions outside band 0
        self._isolation: dict[MatchKey, set[str]] = {}
        self._logged: set[str] = set()  # rules with audit logging (their isolation is logged)
        self._conj_dir: dict[int, DirectionTables] = {}
        self._failed: dict[Owner, set[str]] = {}
        # what the rules planned since the last yield to the event loop found about their
        # targets (`PlanMemo`): cleared at every yield, as pods may get or lose their ports
        self._memo = PlanMemo()
        # the conjunction flows of each direction, by ID (`flows.conj_flow_maker`)
        self._conj_flows_in = fb.conj_flow_maker(round_num, INGRESS)
        self._conj_flows_out = fb.conj_flow_maker(round_num, EGRESS)
        # A batch crashed before the switch had it: owners may hold flows the indexes forgot
        # (conjunction IDs among them) until `resync` has sent every owner again.
        self._unsynced = False
        # rule id -> its last-resort drops (`lastresort`): realization and isolation crashed
        self._last_resort: dict[str, list[Flow]] = {}
        # Antrea-native rules: own tables and priorities, same IDs, same bundles.
        self.native = antrea_native.NativeRealizer(
            round_num=round_num,
            ids=self.ids,
            conj_rule=self.conj_rule,
            ofport_of=ofport_of,
            reject=reject,
        )

    # -- queries --------------------------------------------------------------------------
    def is_realized(self, rid: str) -> bool:
        """Whether rule ``rid`` has flows: a Kubernetes rule's conjunctions or an
        Antrea-native rule's own flows."""
        return rid in self.realized or rid in self.native.rules

    def rule_of_conj(self, conj_id: int) -> str | None:
        return self.conj_rule.get(conj_id)

    def counts(self) -> dict[Direction, int]:
        out = {Direction.IN: 0, Direction.OUT: 0}
        for r in self.realized.values():
            out[r.rule.direction] += 1
        return out

    # -- base flows -----------------------------------------------------------------------
    def base_flows(self) -> list[Flow]:
        out = fb.base_flows(
            self.round_num,
            gateway_ip=self.gateway_ip,
            gateway_mark=self.gateway_mark,
            with_miss=self.install_miss_flows,
        )
        out += antrea_native.base_flows(
            self.round_num,
            gateway_ip=self.gateway_ip,
            gateway_mark=self.gateway_mark,
            with_miss=self.install_miss_flows,
        )
        return out

    async def settle_now(self) -> None:
        """Wait for the datapath to reflect every bundle sent so far (see `settle`);
        `unsettled` stays set until the wait has returned."""
        if self.settle is None:
            self.unsettled = False
            return
        try:
            await self.settle()
        except Exception as exc:
            log.warning("datapath_settle_failed", error=str(exc))
        finally:
            self.unsettled = False

    # -- the last resort (lastresort.py) ------------------------------------------------
    async def last_resort(self, rules: Mapping[str, CompletedRule | None]) -> None:
        """Drop every new connection of these rules' applied-to pods, from their ofports /
        IPs alone: their realization AND their isolation retry crashed. Held until a batch
        realizes the rule again (`lift_last_resort`); a rule gone loses its drops."""
        for rid, completed in rules.items():
            if completed is None:
                self._last_resort.pop(rid, None)
            else:
                self._last_resort[rid] = lastresort.rule_drops(
                    self.round_num, completed, self.ofport_of
                )
                log.error("policy_rule_last_resort", rule=rid, flows=len(self._last_resort[rid]))
        await self.client.sync({lastresort.OWNER: lastresort.merged(self._last_resort.values())})

    async def lift_last_resort(self, rids: Iterable[str]) -> None:
        """These rules were realized (or isolated) by a batch: their last-resort drops go."""
        held = self._last_resort
        if not held:
            return
        gone = [rid for rid in rids if rid in held]
        if gone:
            for rid in gone:
                del held[rid]
            await self.client.sync({lastresort.OWNER: lastresort.merged(held.values())})

    # -- reconciliation -------------------------------------------------------------------
    async def reconcile(
        self,
        rules: Mapping[str, CompletedRule | None],
        *,
        with_base: bool = False,
        isolate_only: frozenset[str] = frozenset(),
        absorb: Absorb | None = None,
    ) -> BatchResult:
        """Make the flows of `rules` (None = rule gone) right, in one bundle.

        Fails closed, per rule: a rule whose planning raises, or whose flows the switch
        refuses (or the renderer cannot render), falls back to its isolation (drop) flows
        alone and is reported in `BatchResult.failed`; every other rule is realized.
        `isolate_only` forces that fallback (the controller's last resort for a rule whose
        realization crashed).

        With `absorb`, planning yields to the event loop every `PLAN_CHUNK` rules (the
        control-plane stream keeps being read meanwhile) and, once the rules given are
        planned, asks `absorb()` for the rules that became dirty since: they are planned
        into the SAME bundle, until it returns nothing. A burst of policies arriving while
        the first of them are planned thus lands as one bundle, not one per arrival.
        """
        start = time.perf_counter()
        result = BatchResult(rules=len(rules))
        b = _Batch()
        self._memo.clear()
        desired, blame = b.desired, b.blame
        if with_base:
            desired[BASE_OWNER] = self.base_flows()
        all_rules: set[str] = set(rules)
        chunk: Mapping[str, CompletedRule | None] = rules
        try:
            while chunk:
                native = {
                    rid: c
                    for rid, c in chunk.items()
                    if (
                        antrea_native.is_native(c.rule)
                        if c is not None
                        else rid in self.native.rules
                    )
                }
                if native:
                    native_failed: dict[str, str] = {}
                    self.native.update(native, desired=desired, blame=blame, failed=native_failed)
                    for rid in isolate_only & native.keys():
                        desired[(antrea_native.OWNER, rid)] = self.native.fail_closed(
                            rid, "realization crashed; drops only"
                        )
                        native_failed.setdefault(rid, "realization crashed; drops only")
                    for rid, reason in native_failed.items():
                        _fail(result, rid, "plan", reason)
                items = list(chunk.items())
                step = PLAN_CHUNK if absorb is not None else len(items)
                for lo in range(0, len(items), step):
                    if lo:
                        await self._stage(b)
                        self._memo.clear()  # (pods may get or lose their ports meanwhile)
                        await asyncio.sleep(0)  # let the stream be read while we plan
                    self._plan_rules(items[lo : lo + step], native, isolate_only, result, b)
                if absorb is None:
                    break
                self._memo.clear()
                await asyncio.sleep(0)
                chunk = absorb()
                all_rules.update(chunk)
                result.rules += len(chunk)
            if absorb is not None:
                await self._stage(b)
            failures = await self._send(b, batch=all_rules, result=result)
        except Exception:
            # Crashed before the switch had this batch (while planning any chunk, or sending):
            # what was streamed of it goes, its rules keep their drop flows and forget their
            # conjunctions, so that a retry relinks (and re-fails) them from scratch instead of
            # seeing "no change" (the controller resends from the indexes).
            await self.client.discard_staged()
            self._forget_conjunctions(all_rules)
            self._unsynced = True
            raise
        self._failed = {o: blame.get(o, set()) for o in failures}
        self._confirm_ids()
        if self.settle is not None and (result.bundles or failures or self.unsettled):
            # The datapath keeps forwarding with its cached megaflows until the revalidators
            # have seen the new tables: wait for that, so "realized" means enforced. When more
            # work is already waiting, the next batch's wait covers this one's flows too.
            if self.defer_settle is not None and self.defer_settle():
                self.unsettled = True
            else:
                await self.settle_now()
        result.seconds = time.perf_counter() - start
        if result.failed:
            failed = sorted(result.failed)
            log.warning(
                "policy_rules_failed",
                count=len(failed),
                rules=failed[:10],
                owners=[_owner_text(o) for o in list(failures)[:5]],
            )
        return result

    async def _stage(self, b: _Batch) -> None:
        """Stream the flows of the conjunctions created since the last call into the batch's
        bundle (`FlowClient.stage`): final once their rule is planned, they are parsed by the
        switch while the rest is planned. A conjunction dropped or changed later in the batch
        makes the sync send its plan the usual way."""
        new, b.new_conjs = b.new_conjs, []
        if new:
            await self.client.stage(dict(new))

    def _plan_rules(
        self,
        items: list[tuple[str, CompletedRule | None]],
        skip: Mapping[str, object],
        isolate_only: frozenset[str],
        result: BatchResult,
        b: _Batch,
    ) -> None:
        """`_plan_one` of each rule (but those in `skip`); a rule never realized (the bulk
        of an initial sync) is planned and added right here, any other goes through the
        general diff."""
        realized = self.realized
        plan_of, add_rule = self._plan, self._add_rule
        for rid, completed in items:
            if rid in skip:
                continue
            if completed is None or rid in realized or (isolate_only and rid in isolate_only):
                self._plan_one(rid, completed, result, rid in isolate_only, b)
                continue
            plan = plan_of(rid, completed, result, forced=False)
            assert plan is not None
            try:
                add_rule(rid, completed.rule, plan, b)
            except Exception as exc:
                self._link_failed(rid, completed.rule, plan, exc, result=result, b=b)

    def _link_failed(
        self,
        rid: str,
        cache_rule: CacheRule,
        plan: RulePlan,
        exc: Exception,
        *,
        result: BatchResult,
        b: _Batch,
    ) -> None:
        """A planned rule could not be linked (e.g. BandsExhausted): this rule only fails,
        its isolation kept."""
        _fail(result, rid, "plan", f"cannot link: {type(exc).__name__}: {exc}")
        log.warning("policy_rule_link_failed", rule=rid, error=str(exc))
        self._update_rule(rid, cache_rule, RulePlan({}, plan.isolated), b)

    def _plan_one(
        self,
        rid: str,
        completed: CompletedRule | None,
        result: BatchResult,
        forced: bool,
        b: _Batch,
    ) -> None:
        """Plan one Kubernetes rule and diff it into this batch's owners (fails closed).

        Who to blame for an owner's flows is not recorded here (one set per owner and rule,
        for the rare batch the switch refuses): `_blame_shared` works it out from the
        indexes when a bundle fails."""
        plan = self._plan(rid, completed, result, forced=forced)
        cache_rule = completed.rule if completed is not None else None
        try:
            self._update_rule(rid, cache_rule, plan, b)
        except Exception as exc:  # e.g. BandsExhausted: this rule only, isolation kept
            assert cache_rule is not None and plan is not None
            self._link_failed(rid, cache_rule, plan, exc, result=result, b=b)

    async def _send(
        self, b: _Batch, *, batch: set[str], result: BatchResult
    ) -> dict[Owner, Exception]:
        desired, blame = b.desired, b.blame
        self._touched_owners(b)
        for owner, rids in list(self._failed.items()):  # retry what the switch refused before
            if owner not in desired:
                desired[owner] = self._desired_of(owner)
            blame.setdefault(owner, set()).update(rids)

        failures = await self._submit(desired, result, bisect=False)
        if failures:
            self._blame_shared(b, batch)
            # Find the refused owners with the new conjunctions' action flows held back: a
            # conjunction allows nothing without its `conj_id` flow, so no rule is ever
            # half-installed *and* active while the batch is bisected.
            held: dict[Owner, list[Flow] | None] = {
                o: f for o, f in desired.items() if f is not None and _is_conj_owner(o)
            }
            rest = {o: f for o, f in desired.items() if o not in held}
            failures = await self._submit(rest, result)
            for _ in range(3):
                if not failures and not held:
                    break
                failures = await self._withdraw(failures, blame, result, held)
                held = {}
        return failures

    def _forget_conjunctions(self, rids: Iterable[str]) -> None:
        scratch = _Batch()
        for rid in rids:
            r = self.realized.get(rid)
            if r is None or not r.conjs:
                continue
            d = tables_for(r.rule.direction)
            for rc in r.conjs.values():
                self._drop_conj(rc.conj_id, (rc.clauses,), d, scratch)
            self.realized[rid] = RealizedRule(r.rule, {}, r.isolated)

    async def resync(self) -> BatchResult:
        """Sync every policy owner to what the indexes say (after a crash left a batch
        half-applied to the indexes: their flows would otherwise never be sent)."""
        owners: set[Owner] = {o for o in self.client.owners() if is_policy_owner(o)}
        owners |= {(PolicyOwner.MATCH, t, a) for t, a in self._matches}
        owners |= {(PolicyOwner.ISOLATION, t, a) for t, a in self._isolation}
        owners |= {(PolicyOwner.CONJUNCTION, c) for c in self._conj_dir}
        owners |= self.native.owners()
        desired: dict[Owner, list[Flow] | None] = {}
        for o in owners:
            try:
                desired[o] = self._desired_of(o)
            except Exception:  # left as installed (a drop flow is never removed this way)
                log.exception("policy_owner_resync_failed", owner=_owner_text(o))
        result = BatchResult()
        failures = await self._submit(desired, result)
        for o in failures:
            self._failed.setdefault(o, set())
        if not failures:
            self._unsynced = False
        self._confirm_ids()
        return result

    def _confirm_ids(self) -> None:
        """Released conjunction IDs become reusable only when no flow carrying one can be
        left in the switch: nothing refused is waiting for a retry and no crash left owners
        unsynced (see `ids`)."""
        if not self._failed and not self._unsynced:
            self.ids.confirm()

    def _plan(
        self, rid: str, completed: CompletedRule | None, result: BatchResult, *, forced: bool
    ) -> RulePlan | None:
        """The rule's plan (None: the rule is gone); planning crashes are contained here."""
        if completed is None:
            return None
        try:
            if forced:
                raise RuleRealizationError("realization crashed; isolation only")
            # (Atoms are turned into matches later, in `_touched_owners`: one that cannot be
            # is a crash of the batch, narrowed to its rule by the controller.)
            return plan_rule(completed, self.ofport_of, self._memo)
        except Exception as exc:
            result.failed[rid] = f"planning failed: {type(exc).__name__}: {exc}"
            result.failed_stage[rid] = "plan"
            log.warning(
                "policy_rule_planning_failed",
                rule=rid,
                policy=completed.rule.policy,
                error=f"{type(exc).__name__}: {exc}",
                exc_info=not forced,
            )
        try:
            iso = isolation_atoms(completed, self.ofport_of)
            for a in iso:
                atom_match(a)
        except Exception as exc:
            # Its pods (a new one among them, or all of a new rule's) would not be isolated:
            # a crash, for the controller's last resort (controller._isolate_crashed).
            log.exception("policy_rule_isolation_failed", rule=rid)
            raise RuleRealizationError(f"no isolation: {exc}") from exc
        return RulePlan({}, iso)

    def _touched_owners(self, b: _Batch) -> None:
        """The flows of every clause and isolation match this batch touched, each built once
        (after all of the batch's links are known)."""
        desired, blame = b.desired, b.blame
        match_flows = self._match_flows
        clause_flow = fb.clause_flow
        round_num = self.round_num
        band_of = self._conj_band
        for mk, conjs in b.matches.items():
            table, atom = mk
            if not conjs:
                flows = None
            elif len(conjs) == 1 and not band_of:  # (most clause matches, band 0)
                flows = [clause_flow(round_num, table, atom_match(atom), tuple(conjs.values()))]
            else:
                flows = match_flows(mk, conjs)
            desired[(_MATCH, table, atom)] = flows
        for mk in b.iso:
            iso_owner: Owner = (PolicyOwner.ISOLATION, mk[0], mk[1])
            holders = self._isolation.get(mk)
            desired[iso_owner] = self._iso_flows(mk, holders)
            blame.setdefault(iso_owner, set()).update(holders or ())

    def _blame_shared(self, b: _Batch, batch: set[str]) -> None:
        """Fill in who to blame for the conjunction and clause owners of a refused bundle,
        from the indexes as this batch left them: a conjunction's rule; for a shared clause
        flow that changed, the batch's rules using it, not the rules that already had it
        installed (all of its users when none is in the batch)."""
        conj_rule, blame = self.conj_rule, b.blame
        for owner in b.desired:
            if _is_conj_owner(owner):
                rid = conj_rule.get(owner[1])  # type: ignore[index]
                if rid is not None:
                    blame.setdefault(owner, set()).add(rid)
        for mk, conjs in b.matches.items():
            users = {conj_rule[c] for c in conjs if c in conj_rule}
            match_owner: Owner = (PolicyOwner.MATCH, mk[0], mk[1])
            blame.setdefault(match_owner, set()).update((users & batch) or users)

    async def _withdraw(
        self,
        failures: dict[Owner, Exception],
        blame: dict[Owner, set[str]],
        result: BatchResult,
        held: dict[Owner, list[Flow] | None],
    ) -> dict[Owner, Exception]:
        """Fail closed: the rules behind refused flows keep their isolation and nothing else.

        A rule with only part of its flows installed could allow less than it should (a
        missing clause member) or more (a peer flow that could not be deleted): withdraw its
        conjunctions so it allows nothing, keep its drop flows, and retry it later.
        """
        b = _Batch(blame=blame)
        desired = b.desired
        rids = {rid for o in failures for rid in blame.get(o, ())}
        for rid in sorted(rids):
            if rid not in result.failed:
                result.failed[rid] = "; ".join(
                    f"{_owner_text(o)}: {exc}"
                    for o, exc in failures.items()
                    if rid in blame.get(o, ())
                )
                result.failed_stage[rid] = "apply"
            realized = self.realized.get(rid)
            if realized is None or not realized.conjs:
                continue
            self._update_rule(rid, realized.rule, RulePlan({}, realized.isolated), b)
        self._touched_owners(b)
        self._blame_shared(b, rids)
        for owner, exc in failures.items():
            if isinstance(owner, tuple) and owner[0] == antrea_native.OWNER:
                desired[owner] = self.native.fail_closed(owner[1], f"flows refused: {exc}")
        for owner in [*failures, *held]:  # held: the action flows of the rules left standing
            if owner not in desired:
                desired[owner] = self._desired_of(owner)
        if rids:
            log.warning("policy_rules_withdrawn", rules=sorted(rids)[:10], count=len(rids))
        return await self._submit(desired, result)

    def _update_rule(
        self,
        rid: str,
        cache_rule: CacheRule | None,
        plan: RulePlan | None,
        b: _Batch,
    ) -> None:
        old = self.realized.get(rid)
        if old is None and plan is not None and cache_rule is not None:
            self._add_rule(rid, cache_rule, plan, b)  # the bulk of an initial sync
            return
        gone = plan is None
        if plan is None:
            plan = _GONE
        if cache_rule is None:
            if old is None:
                return  # never realized, still gone
            cache_rule = old.rule
        d = tables_for(cache_rule.direction)
        old_conjs = old.conjs if old is not None else _NO_CONJS
        want = plan.conjunctions
        conjs = self._update_conjs(rid, cache_rule, old, want, b) if want or old_conjs else {}
        old_iso = old.isolated if old is not None else _NO_ATOMS
        iso = plan.isolated
        if iso is not old_iso:
            table = d.default_table
            isolation = self._isolation
            if old_iso:
                for m in old_iso - iso:
                    mk = (table, m)
                    holders = isolation.get(mk)
                    if holders is not None:
                        holders.discard(rid)
                        if not holders:
                            del isolation[mk]
                            b.iso_holders = None  # (it may hold that set)
                    b.iso.add(mk)
            for m in iso - old_iso if old_iso else iso:
                mk = (table, m)
                holders = isolation.get(mk)
                if holders is None:
                    isolation[mk] = {rid}
                else:
                    holders.add(rid)
                b.iso.add(mk)
        if gone:
            self.realized.pop(rid, None)
            self._logged.discard(rid)
        else:
            self.realized[rid] = _new(RealizedRule, (cache_rule, conjs, iso))
            if cache_rule.rule.enable_logging:
                self._logged.add(rid)
            elif self._logged:
                self._logged.discard(rid)

    def _add_rule(self, rid: str, cache_rule: CacheRule, plan: RulePlan, b: _Batch) -> None:
        """`_update_rule` of a rule realized for the first time: every conjunction is new,
        every isolation atom gained. All or nothing, like `_update_conjs`."""
        rule = cache_rule.rule
        if rule.direction is _IN:
            d, conj_flows = INGRESS, self._conj_flows_in
        else:
            d, conj_flows = EGRESS, self._conj_flows_out
        logged = rule.enable_logging
        conjs: dict[ServicesKey, RealizedConj] = {}
        want = plan.conjunctions
        if want:
            try:
                for key, clauses in want.items():
                    cid = self.ids.allocate()
                    # (recorded first: a failure below drops it with the others)
                    conjs[key] = _new(RealizedConj, (cid, clauses))
                    self.conj_rule[cid] = rid
                    self._conj_dir[cid] = d
                    self._link(cid, clauses, d, b.matches)
                    owner = (_CONJ, cid)
                    flows = b.desired[owner] = conj_flows(cid, logged)
                    b.new_conjs.append((owner, flows))
            except Exception:
                dropped = {(_CONJ, rc.conj_id) for rc in conjs.values()}
                b.new_conjs = [n for n in b.new_conjs if n[0] not in dropped]
                for rc in conjs.values():
                    self._drop_conj(rc.conj_id, (rc.clauses,), d, b)
                raise
        iso = plan.isolated
        if iso:
            table = d.default_table
            last = b.iso_holders
            if last is not None and last[0] is iso and last[1] == table:
                for same in last[2]:  # (the same atoms as the rule before: same sets)
                    same.add(rid)
            else:
                isolation = self._isolation
                touched = b.iso
                sets: list[set[str]] = []
                for m in iso:
                    mk = (table, m)
                    holders = isolation.get(mk)
                    if holders is None:
                        sets.append(isolation.setdefault(mk, {rid}))
                    else:
                        holders.add(rid)
                        sets.append(holders)
                    touched.add(mk)
                b.iso_holders = (iso, table, sets)
        self.realized[rid] = _new(RealizedRule, (cache_rule, conjs, iso))
        if logged:
            self._logged.add(rid)

    def _update_conjs(
        self,
        rid: str,
        cache_rule: CacheRule,
        old: RealizedRule | None,
        want: dict[ServicesKey, Clauses],
        b: _Batch,
    ) -> dict[ServicesKey, RealizedConj]:
        """The rule's conjunctions after `want`: new ones allocated and linked, changed ones
        relinked, vanished ones dropped. All or nothing: on an error (e.g. BandsExhausted)
        the rule is left with no conjunction at all (never half-linked), and it raises."""
        d = tables_for(cache_rule.direction)
        touched = b.matches
        old_conjs = old.conjs if old is not None else _NO_CONJS
        out: dict[ServicesKey, RealizedConj] = {}
        created: list[tuple[int, Clauses]] = []
        try:
            if old_conjs:
                for key, gone in old_conjs.items():
                    if key not in want:
                        self._drop_conj(gone.conj_id, (gone.clauses,), d, b)
            for key, clauses in want.items():
                was = old_conjs.get(key) if old_conjs else None
                if was is None:
                    cid = self.ids.allocate()
                    self.conj_rule[cid] = rid
                    self._conj_dir[cid] = d
                    created.append((cid, clauses))
                    self._link(cid, clauses, d, touched)
                    b.desired[(_CONJ, cid)] = fb.conj_flows(
                        self.round_num, d, cid, log=cache_rule.rule.enable_logging
                    )
                    out[key] = _new(RealizedConj, (cid, clauses))
                elif was.clauses != clauses:
                    self._relink(was.conj_id, was.clauses, clauses, d, touched)
                    out[key] = RealizedConj(was.conj_id, clauses)
                else:
                    out[key] = was
        except Exception:
            for key, was in old_conjs.items():
                sets = (was.clauses, want[key]) if key in want else (was.clauses,)
                self._drop_conj(was.conj_id, sets, d, b)
            for cid, clauses in created:
                self._drop_conj(cid, (clauses,), d, b)
            if old is not None:
                self.realized[rid] = RealizedRule(cache_rule, {}, old.isolated)
            raise
        return out

    def _drop_conj(
        self,
        cid: int,
        clause_sets: Iterable[Clauses],
        d: DirectionTables,
        b: _Batch,
    ) -> None:
        self._unlink(cid, clause_sets, d, b.matches)
        self.ids.release(cid)
        self._conj_dir.pop(cid, None)
        b.desired[(PolicyOwner.CONJUNCTION, cid)] = None

    def _match_flows(self, mk: MatchKey, conjs: dict[int, Conjunction]) -> list[Flow]:
        """The clause flows of one match: one per band in use."""
        band_of = self._conj_band
        match = atom_match(mk[1])
        if len(conjs) == 1:
            ((cid, action),) = conjs.items()
            band = band_of.get(cid, 0) if band_of else 0
            return [fb.clause_flow(self.round_num, mk[0], match, (action,), band)]
        if not band_of:  # every conjunction in band 0 (no clause match past the cap)
            actions = tuple([conjs[cid] for cid in sorted(conjs)])
            return [fb.clause_flow(self.round_num, mk[0], match, actions)]
        by_band: dict[int, list[Conjunction]] = {}
        for cid in sorted(conjs):
            by_band.setdefault(band_of.get(cid, 0), []).append(conjs[cid])
        return [
            fb.clause_flow(self.round_num, mk[0], match, tuple(acts), band)
            for band, acts in sorted(by_band.items())
        ]

    def _choose_band(self, keys: Iterable[MatchKey], first: int = 0) -> int:
        """The first band from `first` where every match in `keys` has room for one more."""
        cap = self.band_cap
        matches = self._matches
        # A match with fewer conjunctions than the cap has room in every band.
        full = [
            (mk, entry)
            for mk in keys
            if (entry := matches.get(mk)) is not None and len(entry) >= cap
        ]
        if not full:
            return first
        for band in range(first, MATCH_BANDS):
            if all(self._load(mk, entry, band) < cap for mk, entry in full):
                return band
        raise BandsExhausted(f"more than {MATCH_BANDS * cap} conjunctions share one clause match")

    def _load(self, mk: MatchKey, entry: dict[int, Conjunction], band: int) -> int:
        """How many conjunctions of match `mk` (its `entry`) are in `band`."""
        upper = self._band_load.get(mk)
        if band:
            return upper.get(band, 0) if upper else 0
        return len(entry) - sum(upper.values()) if upper else len(entry)

    def _add_member(self, mk: MatchKey, cid: int, action: Conjunction, band: int) -> _Entry:
        """Add the conjunction to the match in `band`; the match's entry."""
        entry = self._matches.get(mk)
        if entry is None:
            entry = self._matches[mk] = {}
        if band and cid not in entry:
            upper = self._band_load.setdefault(mk, {})
            upper[band] = upper.get(band, 0) + 1
        entry[cid] = action
        return entry

    def _remove_member(self, mk: MatchKey, cid: int, band: int) -> _Entry:
        """Remove the conjunction from the match; the match's entry (`_NO_ENTRY`: none left)."""
        entry = self._matches.get(mk)
        if entry is None:
            return _NO_ENTRY
        if entry.pop(cid, None) is None:
            return entry
        if not entry:
            del self._matches[mk]
            self._band_load.pop(mk, None)
            return _NO_ENTRY
        if band:
            upper = self._band_load.get(mk)
            if upper is None:
                return entry
            left = upper.get(band, 0) - 1
            if left > 0:
                upper[band] = left
            else:
                upper.pop(band, None)
                if not upper:
                    del self._band_load[mk]
        return entry

    def _link(
        self, cid: int, cl: Clauses, d: DirectionTables, touched: dict[MatchKey, _Entry]
    ) -> None:
        """Add the conjunction to every match of its clauses, in band 0 when each has room
        there (the usual case: linked in one pass, no load counted), else in the first band
        with room in all of them (`_link_banded`)."""
        table: int = d.rule_table
        matches = self._matches
        get = matches.get
        cap = self.band_cap
        from_, to, services = cl
        n = 3 if services else 2
        for k, atoms in enumerate((from_, to, services) if services else (from_, to), 1):
            # one action value per clause, shared by the flows of all of the clause's matches
            action = new_conjunction(cid, k, n)
            for m in atoms:
                mk: MatchKey = (table, m)
                entry = get(mk)
                if entry is None:
                    touched[mk] = matches[mk] = {cid: action}
                elif len(entry) < cap:
                    entry[cid] = action
                    touched[mk] = entry
                else:  # a full match: undo the links made so far, and find a band
                    for _, ms in cl.numbered():
                        for done in ms:
                            self._remove_member((table, done), cid, 0)
                    self._link_banded(cid, cl, d, touched)  # (records every match again)
                    return

    def _link_banded(
        self, cid: int, cl: Clauses, d: DirectionTables, touched: dict[MatchKey, _Entry]
    ) -> None:
        table: int = d.rule_table
        members: list[tuple[MatchKey, Conjunction]] = []
        n = cl.n_clauses
        for k, atoms in cl.numbered():
            action = new_conjunction(cid, k, n)
            members += [((table, m), action) for m in atoms]
        band = self._choose_band([mk for mk, _ in members])
        if band:
            self._conj_band[cid] = band
        for mk, action in members:
            touched[mk] = self._add_member(mk, cid, action, band)

    def _unlink(
        self,
        cid: int,
        clause_sets: Iterable[Clauses],
        d: DirectionTables,
        touched: dict[MatchKey, _Entry],
    ) -> None:
        """Remove the conjunction from every match of `clause_sets`; it leaves its band."""
        band = self._conj_band.pop(cid, 0)
        table = d.rule_table
        for cl in clause_sets:
            for matches in cl:
                for m in matches:
                    mk = (table, m)
                    touched[mk] = self._remove_member(mk, cid, band)

    def _relink(
        self,
        cid: int,
        was: Clauses,
        want: Clauses,
        d: DirectionTables,
        touched: dict[MatchKey, _Entry],
    ) -> None:
        old = {(k, m) for k, ms in was.numbered() for m in ms}
        new = {(k, m) for k, ms in want.numbered() for m in ms}
        before = {m for _, m in old}
        joining = [(d.rule_table, m) for _, m in new - old if m not in before]
        band = self._conj_band.get(cid, 0)
        if was.n_clauses != want.n_clauses or (
            joining and self._choose_band(joining, band) != band
        ):
            # no room in its band for a new match: move the whole conjunction (same bundle)
            self._unlink(cid, (was,), d, touched)
            self._link(cid, want, d, touched)
            return
        still = {m for _, m in new}
        n = want.n_clauses
        for _, m in old - new:
            mk = (d.rule_table, m)
            if m not in still:
                touched[mk] = self._remove_member(mk, cid, band)
            else:
                touched[mk] = self._matches.get(mk, _NO_ENTRY)
        for k, m in new - old:
            mk = (d.rule_table, m)
            touched[mk] = self._add_member(mk, cid, new_conjunction(cid, k, n), band)

    def _iso_flows(self, mk: MatchKey, holders: set[str] | None) -> list[Flow] | None:
        if not holders:
            return None
        log = not holders.isdisjoint(self._logged)
        return [fb.isolation_flow(self.round_num, mk[0], atom_match(mk[1]), log=log)]

    def _desired_of(self, owner: Owner) -> list[Flow] | None:
        """Current desired flows of one owner, rebuilt from the indexes."""
        if not isinstance(owner, tuple) or not owner:
            return None
        if owner == BASE_OWNER:
            return self.base_flows()
        if owner[0] == antrea_native.OWNER:
            return self.native.desired_of(owner[1])
        if owner == lastresort.OWNER:
            return lastresort.merged(self._last_resort.values())
        if owner[0] is PolicyOwner.CONJUNCTION:
            cid = owner[1]
            d = self._conj_dir.get(cid)
            if d is None:
                return None
            return fb.conj_flows(
                self.round_num, d, cid, log=self.conj_rule.get(cid) in self._logged
            )
        if owner[0] is PolicyOwner.MATCH:
            mk = (owner[1], owner[2])
            conjs = self._matches.get(mk)
            return self._match_flows(mk, conjs) if conjs else None
        if owner[0] is PolicyOwner.ISOLATION:
            return self._iso_flows((owner[1], owner[2]), self._isolation.get((owner[1], owner[2])))
        return None

    async def _submit(
        self, desired: dict[Owner, list[Flow] | None], result: BatchResult, *, bisect: bool = True
    ) -> dict[Owner, Exception]:
        if not desired:
            return {}
        start = time.perf_counter()
        try:
            plan = await self.client.sync(desired)
        except Exception as exc:
            # Refused by the switch, or not even renderable: either way it is contained to
            # the owners that cause it (bisection), never to the whole batch.
            if not isinstance(exc, BundleRejected | FlowOwnershipError):
                log.warning("policy_bundle_crashed", error=f"{type(exc).__name__}: {exc}")
            if self.on_bundle is not None:
                self.on_bundle(0, time.perf_counter() - start, False)
            if not bisect:
                return dict.fromkeys(desired, exc)
            if len(desired) == 1:
                owner = next(iter(desired))
                log.warning("policy_flows_rejected", owner=_owner_text(owner), error=str(exc))
                return {owner: exc}
            items = list(desired.items())
            mid = len(items) // 2
            first = await self._submit(dict(items[:mid]), result)
            second = await self._submit(dict(items[mid:]), result)
            return {**first, **second}
        ops = len(plan)
        if ops:
            result.bundles += 1
            result.flows_added += len(plan.add)
            result.flows_modified += len(plan.modify)
            result.flows_deleted += len(plan.delete)
            if self.on_bundle is not None:
                self.on_bundle(ops, time.perf_counter() - start, True)
        return {}


def _is_conj_owner(owner: Owner) -> bool:
    return isinstance(owner, tuple) and len(owner) == 2 and owner[0] is PolicyOwner.CONJUNCTION


def _fail(result: BatchResult, rid: str, stage: str, reason: str) -> None:
    result.failed.setdefault(rid, reason)
    result.failed_stage.setdefault(rid, stage)


def _owner_text(owner: Owner) -> str:
    if isinstance(owner, tuple) and len(owner) == 3 and isinstance(owner[2], tuple):
        return f"{owner[0]} {render_table_match(owner[1], atom_match(owner[2]))}"
    if isinstance(owner, tuple):  # ('np-conj', 7), as before the kinds were typed
        return str(tuple(str(x) if isinstance(x, PolicyOwner) else x for x in owner))
    return str(owner)
