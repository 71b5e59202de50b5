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

import structlog

from antrea.agent.networkpolicy import antrea_native
from antrea.agent.networkpolicy import flows as fb
from antrea.agent.networkpolicy.cache import CacheRule, CompletedRule
from antrea.agent.networkpolicy.conjunctions import (
    Atom,
    Clauses,
    RulePlan,
    ServicesKey,
    atom_match,
    isolation_atoms,
    plan_rule,
)
from antrea.agent.networkpolicy.ids import ConjIDAllocator
from antrea.agent.openflow.pipeline import MATCH_BANDS, DirectionTables, tables_for
from antrea.agent.owners import PolicyOwner, is_policy_owner
from antrea.apis.controlplane.types import Direction, PodReference
from antrea.errors import AntreaError
from antrea.ovs.errors import BundleRejected
from antrea.ovs.openflow.client import FlowClient, FlowOwnershipError
from antrea.ovs.openflow.flow import Flow, RegMatch
from antrea.ovs.openflow.render import render_table_match

log = structlog.get_logger(__name__)

Owner = Hashable
BASE_OWNER = (PolicyOwner.BASE,)
MatchKey = tuple[int, Atom]


class BandsExhausted(AntreaError, RuntimeError):
    """Every priority band of a clause match is full (MATCH_BANDS x the per-flow cap)."""


@dataclass
class RealizedConj:
    conj_id: int
    clauses: Clauses


@dataclass
class RealizedRule:
    rule: CacheRule
    conjs: dict[ServicesKey, RealizedConj] = field(default_factory=dict)
    isolated: frozenset[Atom] = frozenset()


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
        self._matches: dict[MatchKey, dict[int, tuple[int, int]]] = {}
        self._band_load: dict[MatchKey, dict[int, int]] = {}  # match -> band -> conjunctions
        self._conj_band: dict[int, int] = {}  # conjunctions outside band 0
        self._isolation: dict[MatchKey, set[str]] = {}
        self._logged: set[str] = set()  # rules with audit logging (their isolation is logged)
        self._conj_dir: dict[int, DirectionTables] = {}
        self._failed: dict[Owner, set[str]] = {}
        # A batch crashed before the switch had it: owners may hold flows the indexes forgot
        # (conjunction IDs among them) until `resync` has sent every owner again.
        self._unsynced = False
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
        desired: dict[Owner, list[Flow] | None] = {}
        blame: dict[Owner, set[str]] = {}
        if with_base:
            desired[BASE_OWNER] = self.base_flows()
        touched_matches: set[MatchKey] = set()
        touched_iso: set[MatchKey] = set()
        all_rules: set[str] = set(rules)
        chunk: Mapping[str, CompletedRule | None] = rules
        while chunk:
            native = {
                rid: c
                for rid, c in chunk.items()
                if (c is not None and antrea_native.is_native(c.rule))
                or (c is None and rid in self.native.rules)
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
            for i, (rid, completed) in enumerate(list(chunk.items())):
                if absorb is not None and i and not i % PLAN_CHUNK:
                    await asyncio.sleep(0)  # let the stream be read while we plan
                if rid in native:
                    continue
                self._plan_one(
                    rid,
                    completed,
                    result,
                    forced=rid in isolate_only,
                    desired=desired,
                    blame=blame,
                    touched_matches=touched_matches,
                    touched_iso=touched_iso,
                )
            if absorb is None:
                break
            await asyncio.sleep(0)
            chunk = absorb()
            all_rules.update(chunk)
            result.rules += len(chunk)
        try:
            failures = await self._send(
                desired,
                blame=blame,
                touched_matches=touched_matches,
                touched_iso=touched_iso,
                batch=all_rules,
                result=result,
            )
        except Exception:
            # Crashed before the switch had this batch: its rules keep their drop flows and
            # forget their conjunctions, so that a retry relinks (and re-fails) them from
            # scratch instead of seeing "no change" (the controller resends from the indexes).
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

    def _plan_one(
        self,
        rid: str,
        completed: CompletedRule | None,
        result: BatchResult,
        *,
        forced: bool,
        desired: dict[Owner, list[Flow] | None],
        blame: dict[Owner, set[str]],
        touched_matches: set[MatchKey],
        touched_iso: set[MatchKey],
    ) -> None:
        """Plan one Kubernetes rule and diff it into this batch's owners (fails closed)."""
        plan = self._plan(rid, completed, result, forced=forced)
        cache_rule = completed.rule if completed is not None else None
        try:
            self._update_rule(
                rid,
                cache_rule,
                plan,
                desired=desired,
                blame=blame,
                touched_matches=touched_matches,
                touched_iso=touched_iso,
            )
        except Exception as exc:  # e.g. BandsExhausted: this rule only, isolation kept
            assert completed is not None and plan is not None
            _fail(result, rid, "plan", f"cannot link: {type(exc).__name__}: {exc}")
            log.warning("policy_rule_link_failed", rule=rid, error=str(exc))
            self._update_rule(
                rid,
                cache_rule,
                RulePlan({}, plan.isolated),
                desired=desired,
                blame=blame,
                touched_matches=touched_matches,
                touched_iso=touched_iso,
            )

    async def _send(
        self,
        desired: dict[Owner, list[Flow] | None],
        *,
        blame: dict[Owner, set[str]],
        touched_matches: set[MatchKey],
        touched_iso: set[MatchKey],
        batch: set[str],
        result: BatchResult,
    ) -> dict[Owner, Exception]:
        self._touched_owners(desired, blame, touched_matches, touched_iso, batch)
        for owner, rids in list(self._failed.items()):  # retry what the switch refused before
            if owner not in desired:
                desired[owner] = self._desired_of(owner)
            blame.setdefault(owner, set()).update(rids)

        failures = await self._submit(desired, result, bisect=False)
        if failures:
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
        scratch_desired: dict[Owner, list[Flow] | None] = {}
        scratch_blame: dict[Owner, set[str]] = {}
        touched: set[MatchKey] = set()
        for rid in rids:
            r = self.realized.get(rid)
            if r is None or not r.conjs:
                continue
            d = tables_for(r.rule.direction)
            for rc in r.conjs.values():
                self._drop_conj(
                    rid,
                    rc.conj_id,
                    [rc.clauses],
                    d=d,
                    desired=scratch_desired,
                    blame=scratch_blame,
                    touched=touched,
                )
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
            return plan_rule(completed, self.ofport_of)
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
        except Exception:
            log.exception("policy_rule_isolation_failed", rule=rid)
            old = self.realized.get(rid)
            iso = old.isolated if old is not None else frozenset()
        return RulePlan({}, iso)

    def _touched_owners(
        self,
        desired: dict[Owner, list[Flow] | None],
        blame: dict[Owner, set[str]],
        touched_matches: set[MatchKey],
        touched_iso: set[MatchKey],
        batch: set[str],
    ) -> None:
        for mk in touched_matches:
            owner: Owner = (PolicyOwner.MATCH, mk[0], mk[1])
            conjs = self._matches.get(mk)
            desired[owner] = self._match_flows(mk, conjs) if conjs else None
            users = {self.conj_rule[c] for c in (conjs or ()) if c in self.conj_rule}
            # A shared flow that changed in this batch is blamed on this batch's rules using
            # it, not on the rules that already had it installed.
            blame.setdefault(owner, set()).update((users & batch) or users)
        for mk in touched_iso:
            iso_owner: Owner = (PolicyOwner.ISOLATION, mk[0], mk[1])
            holders = self._isolation.get(mk)
            desired[iso_owner] = self._iso_flows(mk, holders)
            blame.setdefault(iso_owner, set()).update(holders or ())

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
        desired: dict[Owner, list[Flow] | None] = {}
        touched_matches: set[MatchKey] = set()
        touched_iso: set[MatchKey] = set()
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
            self._update_rule(
                rid,
                realized.rule,
                RulePlan({}, realized.isolated),
                desired=desired,
                blame=blame,
                touched_matches=touched_matches,
                touched_iso=touched_iso,
            )
        self._touched_owners(desired, blame, touched_matches, touched_iso, rids)
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
        *,
        desired: dict[Owner, list[Flow] | None],
        blame: dict[Owner, set[str]],
        touched_matches: set[MatchKey],
        touched_iso: set[MatchKey],
    ) -> None:
        old = self.realized.get(rid)
        gone = plan is None
        if plan is None:
            plan = RulePlan({}, frozenset())
        cache_rule = cache_rule or (old.rule if old else None)
        if cache_rule is None:
            return  # never realized, still gone
        d = tables_for(cache_rule.direction)
        logged = cache_rule.rule.enable_logging
        new = RealizedRule(cache_rule)
        old_conjs = old.conjs if old else {}
        created: list[tuple[int, Clauses]] = []
        try:
            for key in (
                old_conjs.keys() | plan.conjunctions.keys() if old_conjs else plan.conjunctions
            ):
                was = old_conjs.get(key)
                want = plan.conjunctions.get(key)
                if want is None:
                    assert was is not None
                    self._drop_conj(
                        rid,
                        was.conj_id,
                        [was.clauses],
                        d=d,
                        desired=desired,
                        blame=blame,
                        touched=touched_matches,
                    )
                    continue
                if was is None:
                    cid = self.ids.allocate()
                    self.conj_rule[cid] = rid
                    self._conj_dir[cid] = d
                    created.append((cid, want))
                    self._link(cid, want, d, touched_matches)
                    desired[(PolicyOwner.CONJUNCTION, cid)] = fb.conj_flows(
                        self.round_num, d, cid, log=logged
                    )
                    blame.setdefault((PolicyOwner.CONJUNCTION, cid), set()).add(rid)
                    new.conjs[key] = RealizedConj(cid, want)
                    continue
                if was.clauses != want:
                    self._relink(was.conj_id, was.clauses, want, d, touched_matches)
                new.conjs[key] = RealizedConj(was.conj_id, want)
        except Exception:
            # Leave the rule with no conjunction at all (never half-linked), its isolation as
            # it was; the caller falls back to an isolation-only plan.
            for key, was in old_conjs.items():
                sets = [was.clauses] + (
                    [plan.conjunctions[key]] if key in plan.conjunctions else []
                )
                self._drop_conj(
                    rid,
                    was.conj_id,
                    sets,
                    d=d,
                    desired=desired,
                    blame=blame,
                    touched=touched_matches,
                )
            for cid, want in created:
                self._drop_conj(
                    rid, cid, [want], d=d, desired=desired, blame=blame, touched=touched_matches
                )
            if old is not None:
                self.realized[rid] = RealizedRule(cache_rule, {}, old.isolated)
            raise
        old_iso = old.isolated if old else frozenset()
        for m in old_iso - plan.isolated:
            mk = (d.default_table, m)
            holders = self._isolation.get(mk)
            if holders is not None:
                holders.discard(rid)
                if not holders:
                    del self._isolation[mk]
            touched_iso.add(mk)
        for m in plan.isolated - old_iso:
            mk = (d.default_table, m)
            self._isolation.setdefault(mk, set()).add(rid)
            touched_iso.add(mk)
        new.isolated = plan.isolated
        if gone:
            self.realized.pop(rid, None)
            self._logged.discard(rid)
        else:
            self.realized[rid] = new
            if cache_rule.rule.enable_logging:
                self._logged.add(rid)
            else:
                self._logged.discard(rid)

    def _drop_conj(
        self,
        rid: str,
        cid: int,
        clause_sets: list[Clauses],
        *,
        d: DirectionTables,
        desired: dict[Owner, list[Flow] | None],
        blame: dict[Owner, set[str]],
        touched: set[MatchKey],
    ) -> None:
        for cl in clause_sets:
            self._unlink(cid, cl, d, touched)
        self.ids.release(cid)
        self._conj_dir.pop(cid, None)
        desired[(PolicyOwner.CONJUNCTION, cid)] = None
        blame.setdefault((PolicyOwner.CONJUNCTION, cid), set()).add(rid)

    def _match_flows(self, mk: MatchKey, conjs: dict[int, tuple[int, int]]) -> list[Flow]:
        """The clause flows of one match: one per band in use."""
        band_of = self._conj_band
        match = atom_match(mk[1])
        if not band_of or (len(conjs) == 1 and next(iter(conjs)) not in band_of):
            # every conjunction in band 0 (no clause match past the cap): one flow
            return [
                fb.match_flow(
                    self.round_num, mk[0], match, [(i, k, n) for i, (k, n) in conjs.items()]
                )
            ]
        by_band: dict[int, list[tuple[int, int, int]]] = {}
        for cid, (k, n) in conjs.items():
            by_band.setdefault(band_of.get(cid, 0), []).append((cid, k, n))
        return [
            fb.match_flow(self.round_num, mk[0], match, acts, band)
            for band, acts in sorted(by_band.items())
        ]

    def _choose_band(self, keys: Iterable[MatchKey], first: int = 0) -> int:
        """The first band from `first` where every match in `keys` has room for one more."""
        loads = [load for load in map(self._band_load.get, keys) if load is not None]
        cap = self.band_cap
        for band in range(first, MATCH_BANDS):
            if all(load.get(band, 0) < cap for load in loads):
                return band
        raise BandsExhausted(f"more than {MATCH_BANDS * cap} conjunctions share one clause match")

    def _add_member(self, mk: MatchKey, cid: int, k: int, n: int, band: int) -> None:
        entry = self._matches.setdefault(mk, {})
        if cid not in entry:
            load = self._band_load.setdefault(mk, {})
            load[band] = load.get(band, 0) + 1
        entry[cid] = (k, n)

    def _remove_member(self, mk: MatchKey, cid: int) -> None:
        entry = self._matches.get(mk)
        if entry is None or entry.pop(cid, None) is None:
            return
        if not entry:
            del self._matches[mk]
            self._band_load.pop(mk, None)
            return
        load = self._band_load[mk]
        band = self._conj_band.get(cid, 0)
        left = load.get(band, 0) - 1
        if left > 0:
            load[band] = left
        else:
            load.pop(band, None)

    def _link(self, cid: int, cl: Clauses, d: DirectionTables, touched: set[MatchKey]) -> None:
        n = cl.n_clauses
        table = d.rule_table
        members = [((table, m), k) for k, matches in cl.numbered() for m in matches]
        band = self._choose_band(mk for mk, _ in members)
        if band:
            self._conj_band[cid] = band
        for mk, k in members:
            self._add_member(mk, cid, k, n, band)
            touched.add(mk)

    def _unlink(self, cid: int, cl: Clauses, d: DirectionTables, touched: set[MatchKey]) -> None:
        for _, matches in cl.numbered():
            for m in matches:
                mk = (d.rule_table, m)
                self._remove_member(mk, cid)
                touched.add(mk)
        self._conj_band.pop(cid, None)

    def _relink(
        self, cid: int, was: Clauses, want: Clauses, d: DirectionTables, touched: set[MatchKey]
    ) -> None:
        old = {(k, m) for k, ms in was.numbered() for m in ms}
        new = {(k, m) for k, ms in want.numbered() for m in ms}
        before = {m for _, m in old}
        joining = [(d.rule_table, m) for _, m in new - old if m not in before]
        band = self._conj_band.get(cid, 0)
        if joining and self._choose_band(joining, band) != band:
            # no room in its band for a new match: move the whole conjunction (same bundle)
            self._unlink(cid, was, d, touched)
            self._link(cid, want, d, touched)
            return
        still = {m for _, m in new}
        n = want.n_clauses
        for _, m in old - new:
            mk = (d.rule_table, m)
            if m not in still:
                self._remove_member(mk, cid)
            touched.add(mk)
        for k, m in new - old:
            mk = (d.rule_table, m)
            self._add_member(mk, cid, k, n, band)
            touched.add(mk)

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
