"""The agent's NetworkPolicy controller: stream events in, realized rules and status out.

    events() --> RuleCache --(dirty rule IDs)--> worker --> PolicyReconciler --> FlowClient
                                                   \\--> status reports (per policy generation)

* Nothing is realized before the stream's first BOOKMARK: the initial state is then realized as
  ONE bundle (base flows included) and `ready` is set (the agent deletes the previous round's
  flows only after that, so pods are never left without their policy).
* Afterwards a single worker drains the dirty set whenever it is woken: everything that arrived
  while the previous bundle was in flight lands in the next one (coalescing comes for free from
  draining a set; there is no per-rule task).
* ``ERROR "stream-restart"`` starts a resync: events are applied to the cache but nothing is
  realized until the next BOOKMARK, where objects that were not re-sent are dropped; only rules
  that actually changed are then diffed into flows.
* Rules whose flows the switch rejected are reported (log + policy status with the rule) and
  retried with backoff; others are unaffected.

The consumer takes any ``AsyncIterator[WatchEvent]``, so tests feed events directly.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import structlog

from antrea.agent.networkpolicy.cache import CacheRule, CompletedRule, RuleCache
from antrea.agent.networkpolicy.reconciler import Absorb, BatchResult, PolicyReconciler
from antrea.apis.controlplane.codec import EventType, WatchEvent
from antrea.apis.controlplane.types import NetworkPolicy, NetworkPolicyNodeStatus, PodReference

log = structlog.get_logger(__name__)

STREAM_RESTART = "stream-restart"
RETRY_MIN_S = 1.0
RETRY_MAX_S = 60.0
GC_PAUSE_RULES = 1000
# A batch absorbs the rules made dirty while it is planned (one bundle for a burst), for at
# most this many rounds and seconds: a steady trickle of changes cannot hold a batch back.
ABSORB_MAX_ROUNDS = 16
ABSORB_MAX_S = 5.0

StatusSink = Callable[[NetworkPolicyNodeStatus], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PolicyState:
    policy: NetworkPolicy
    realized: bool
    realized_generation: int | None
    message: str
    failed: bool = False  # a rule could not be realized: its pods are kept isolated

    @property
    def phase(self) -> str:
        return "Failed" if self.failed else "Realized" if self.realized else "Realizing"


class NetworkPolicyController:
    def __init__(
        self,
        *,
        node_name: str,
        reconciler: PolicyReconciler,
        report_status: StatusSink | None = None,
        on_batch: Callable[[BatchResult], None] | None = None,
    ) -> None:
        self.node_name = node_name
        self.reconciler = reconciler
        self.cache = RuleCache()
        self.report_status = report_status
        self.on_batch = on_batch
        self.ready = asyncio.Event()  # initial policy set realized
        self.rule_errors: dict[str, str] = {}
        self.realized_generation: dict[str, int] = {}
        self.last_batch: BatchResult | None = None
        self.initial_sync_seconds: float | None = None
        self._bookmarked = False
        self._resyncing = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._status_dirty: set[str] = set()
        self._reported: dict[str, tuple[int, bool, str]] = {}
        self._announced: set[str] = set()  # policies logged as realized at least once
        self._retry_delay: dict[str, float] = {}
        self._status_tasks: set[asyncio.Task[None]] = set()
        self._first_event_at: float | None = None
        self._inflight: set[str] = set()  # taken from the dirty set, bundle not confirmed yet
        # A batch whose successor is already waiting leaves the datapath wait (and so its
        # status reports, which mean "enforced") to that successor: back-to-back batches do
        # not each pay for it.
        reconciler.defer_settle = lambda: bool(self.cache.dirty)

    # -- stream ---------------------------------------------------------------------------
    async def run(self, events: AsyncIterator[WatchEvent]) -> None:
        """Consume the stream until it ends or the task is cancelled."""
        worker = asyncio.create_task(self._worker(), name="networkpolicy-worker")
        try:
            async for ev in events:
                self.handle(ev)
            await self.wait_idle()
        finally:
            worker.cancel()
            try:
                await worker
            except asyncio.CancelledError:
                pass

    def handle(self, ev: WatchEvent) -> None:
        if self._first_event_at is None:
            self._first_event_at = time.perf_counter()
        if ev.type is EventType.ERROR:
            if ev.message == STREAM_RESTART:
                log.info("policy_stream_resync_started")
                self.cache.begin_resync()
                self._resyncing = True
            else:
                log.warning("policy_stream_error", message=ev.message)
            return
        if ev.type is EventType.BOOKMARK:
            if self._resyncing:
                gone = self.cache.end_resync()
                self._resyncing = False
                log.info("policy_stream_resynced", objects_gone=gone, dirty=len(self.cache.dirty))
            if not self._bookmarked:
                self._bookmarked = True
                log.info(
                    "policy_initial_state_received",
                    policies=len(self.cache.policies),
                    rules=len(self.cache.rules),
                )
            self._kick()
            return
        if isinstance(ev.object, NetworkPolicy):
            self._status_dirty.add(ev.object.name)
            if not self.ready.is_set():
                # The initial state is a burst of long-lived objects without cycles: each
                # collection while it arrives would traverse them again (a young collection
                # every 700 allocations, full ones over all of it). Freezing what exists
                # (O(1): it moves the generation lists, and resets the allocation count)
                # before each policy keeps the decoded event and what came before out of
                # every later collection, as after the initial sync.
                gc.freeze()
        self.cache.apply(ev)
        if self._bookmarked and not self._resyncing:
            self._kick()

    def pod_changed(self, pod: PodReference) -> None:
        """A local pod's OVS port appeared or vanished (interface store notification)."""
        self.cache.pod_changed(pod)
        if self._bookmarked and not self._resyncing:
            self._kick()

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    async def wait_idle(self) -> None:
        """Until everything marked dirty so far has been realized (tests, benchmarks)."""
        while True:
            await self._idle.wait()
            if not self._wake.is_set():
                return
            await asyncio.sleep(0)

    # -- worker ---------------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._bookmarked or self._resyncing:
                if not self._wake.is_set():
                    self._idle.set()
                continue
            try:
                await self.realize_dirty()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("policy_realization_crashed")
                await asyncio.sleep(RETRY_MIN_S)
                self._wake.set()
            if self.reconciler.unsettled and not self._wake.is_set():
                await self.reconciler.settle_now()
                self._update_status()
            if not self._wake.is_set() and not self.cache.dirty:
                self._idle.set()

    async def realize_dirty(self) -> BatchResult:
        first = not self.ready.is_set()
        dirty = self.cache.take_dirty()
        self._inflight = dirty
        batch: dict[str, CompletedRule | None] = {}
        # A large batch allocates hundreds of thousands of long-lived objects and no cycles:
        # the cyclic GC would traverse them again and again (it more than doubles the time of
        # a 15,000-rule initial sync). Pause it for the batch (flattening included); after the
        # initial sync, freeze what exists so later collections skip it.
        paused = False

        def pause_gc() -> None:
            nonlocal paused
            if not paused and len(dirty) >= GC_PAUSE_RULES and gc.isenabled():
                gc.disable()
                paused = True

        started = time.perf_counter()
        rounds = 0

        def absorb() -> dict[str, CompletedRule | None]:
            """Rules made dirty while this batch was planned: into the same bundle."""
            nonlocal rounds
            rounds += 1
            if (
                self._resyncing
                or not self.cache.dirty
                or rounds > ABSORB_MAX_ROUNDS
                or time.perf_counter() - started > ABSORB_MAX_S
            ):
                return {}
            more = self.cache.take_dirty()
            dirty.update(more)  # the same set as self._inflight
            added = self._add_to_batch(more, batch)
            pause_gc()
            return added

        pause_gc()
        try:
            self._add_to_batch(dirty, batch)
            result = await self._reconcile_contained(batch, first, absorb)
        except BaseException:
            self.cache.dirty |= dirty  # not realized: keep them for the next attempt
            self._inflight = set()
            raise
        finally:
            if paused:
                gc.enable()
        if first and paused:
            gc.freeze()
        self.last_batch = result
        self._inflight = set()
        failed, rule_errors, retry_delay = result.failed, self.rule_errors, self._retry_delay
        if failed or rule_errors or retry_delay:  # else nothing to record or forget
            for rid in batch:
                if rid in failed:
                    rule_errors[rid] = failed[rid]
                    self._schedule_retry(rid)
                else:
                    rule_errors.pop(rid, None)
                    retry_delay.pop(rid, None)
        rules = self.cache.rules
        self._status_dirty.update({cr.policy for rid in batch if (cr := rules.get(rid))})
        if first:
            self.ready.set()
            if self._first_event_at is not None:
                self.initial_sync_seconds = time.perf_counter() - self._first_event_at
            log.info(
                "policy_initial_realization_done",
                rules=len(batch),
                flows=result.flows_added,
                seconds=round(result.seconds, 3),
            )
        elif batch:
            log.debug(
                "policy_rules_realized",
                rules=len(batch),
                adds=result.flows_added,
                mods=result.flows_modified,
                dels=result.flows_deleted,
                ms=round(result.seconds * 1000, 2),
            )
        if self.on_batch is not None:
            self.on_batch(result)
        if not self.reconciler.unsettled:
            if first:
                # The statuses are decided now, but logged and sent after `ready`'s waiters
                # (the agent deleting the previous round's flows) had their turn: reporting
                # thousands of policies is no part of enforcing them.
                changes = self._status_changes()
                try:
                    await asyncio.sleep(0)
                finally:
                    self._emit_status(changes)
            else:
                self._update_status()
        return result

    def _add_to_batch(
        self, rids: set[str], batch: dict[str, CompletedRule | None]
    ) -> dict[str, CompletedRule | None]:
        """Put `rids` (taken from the dirty set) into `batch`: None for a rule gone, its
        completed form otherwise; incomplete rules wait for their groups. Returns what was
        put in."""
        # incomplete rules are left out: their groups will mark them dirty on arrival
        added = self.cache.batch_of(rids)
        rule_errors = self.rule_errors
        if rule_errors:
            for rid, completed in added.items():
                if completed is None:  # gone
                    rule_errors.pop(rid, None)
        batch.update(added)
        return added

    async def _reconcile_contained(
        self, batch: dict[str, CompletedRule | None], first: bool, absorb: Absorb | None = None
    ) -> BatchResult:
        """Reconcile `batch`; a crash is narrowed down to the rules causing it.

        The reconciler already contains planning and switch failures per rule; this is the
        last line for anything else: the batch is split in halves until the crashing rules
        are alone, those get their isolation flows only (and are reported failed), and every
        other rule is realized. One bad rule never stops the node's realization.
        """
        try:
            result = await self.reconciler.reconcile(batch, with_base=first, absorb=absorb)
        except Exception as exc:
            if len(batch) <= 1:
                return await self._isolate_crashed(batch, first, exc)
            log.exception("policy_batch_crashed", rules=len(batch))
        else:
            await self.reconciler.lift_last_resort(batch)  # (`absorb` adds to `batch`)
            return result
        items = list(batch.items())
        mid = len(items) // 2
        a = await self._reconcile_contained(dict(items[:mid]), first)
        b = await self._reconcile_contained(dict(items[mid:]), False)
        # The crashed attempt may have updated the indexes of rules it never sent: resend.
        return _merge(_merge(a, b), await self.reconciler.resync())

    async def _isolate_crashed(
        self, batch: dict[str, CompletedRule | None], first: bool, exc: Exception
    ) -> BatchResult:
        rid = next(iter(batch), None)
        log.error("policy_rule_realization_crashed", rule=rid, exc_info=exc)
        if not batch:
            raise exc
        reason = f"realization crashed: {type(exc).__name__}: {exc}"
        try:
            result = await self.reconciler.reconcile(
                batch, with_base=first, isolate_only=frozenset(batch)
            )
        except Exception:
            log.exception("policy_rule_isolation_crashed", rule=rid)
            result = BatchResult(rules=len(batch))
            # Nothing may isolate its pods now: drops built from their ofports / IPs alone.
            try:
                await self.reconciler.last_resort(batch)
                if first:  # (the base flows came with this half of the initial batch)
                    await self.reconciler.reconcile({}, with_base=True)
            except Exception:
                log.exception("policy_rule_last_resort_failed", rule=rid)
        else:
            await self.reconciler.lift_last_resort(batch)
        for r in batch:
            result.failed[r] = reason
            result.failed_stage[r] = "crash"
        return _merge(result, await self.reconciler.resync())

    def _schedule_retry(self, rid: str) -> None:
        delay = min(self._retry_delay.get(rid, RETRY_MIN_S / 2) * 2, RETRY_MAX_S)
        self._retry_delay[rid] = delay

        def again() -> None:
            if rid in self.cache.rules and rid in self.rule_errors:
                self.cache.dirty.add(rid)
                self._kick()

        asyncio.get_running_loop().call_later(delay, again)

    # -- status ---------------------------------------------------------------------------
    def policy_state(self, name: str) -> PolicyState | None:
        policy = self.cache.policies.get(name)
        if policy is None:
            return None
        errors: list[CacheRule] = []
        pending = waiting = False
        # Realized means enforced: not before the datapath wait covering the last bundle
        # returned (a batch may leave that wait to its successor: `unsettled` until then).
        unsettled = self.reconciler.unsettled
        rule_errors, inflight, dirty = self.rule_errors, self._inflight, self.cache.dirty
        is_realized = self.reconciler.is_realized
        rules = self.cache.rules
        for rid in self.cache.rule_ids_of(name):
            cr = rules.get(rid)
            if cr is None:
                continue
            if rid in rule_errors:
                errors.append(cr)
            elif rid in inflight or rid in dirty or unsettled:
                pending = True
            elif not is_realized(rid):
                waiting = True
        ok = not (errors or pending or waiting)
        if ok:
            self.realized_generation[name] = policy.generation
        if errors:
            errors.sort(key=lambda cr: cr.index)
            msg = "; ".join(f"rule {cr.index} ({cr.id}): {rule_errors[cr.id]}" for cr in errors)
        else:
            msg = "realizing" if pending else "waiting for groups" if waiting else ""
        return PolicyState(policy, ok, self.realized_generation.get(name), msg, bool(errors))

    def _update_status(self) -> None:
        self._emit_status(self._status_changes())

    def _status_changes(self) -> list[tuple[str, PolicyState | None, bool]]:
        """The policies whose state changed since it was last reported: (name, state or None
        when deleted, announced before). Marks them reported."""
        names, self._status_dirty = self._status_dirty, set()
        changes: list[tuple[str, PolicyState | None, bool]] = []
        for name in names:
            st = self.policy_state(name)
            if st is None:
                if self._reported.pop(name, None) is not None:
                    changes.append((name, None, False))
                self._announced.discard(name)
                self.realized_generation.pop(name, None)
                continue
            key = (st.policy.generation, st.realized, st.message)
            if not st.realized and not st.message:
                continue  # incomplete: nothing to say yet
            previous = self._reported.get(name)
            if previous == key:
                continue
            self._reported[name] = key
            changes.append((name, st, name in self._announced))
            if st.realized:
                self._announced.add(name)
        return changes

    def _emit_status(self, changes: list[tuple[str, PolicyState | None, bool]]) -> None:
        """Log and report each change (see `_status_changes`)."""
        for name, st, announced in changes:
            if st is None:
                log.info("policy_deleted", policy=name, node=self.node_name)
                continue
            _log_policy_event(st, announced, self.node_name)
            status = NetworkPolicyNodeStatus(
                policy=name,
                node=self.node_name,
                generation=st.policy.generation,
                realized=st.realized,
                message=st.message,
            )
            if self.report_status is not None:
                task = asyncio.create_task(self._send_status(status))
                self._status_tasks.add(task)
                task.add_done_callback(self._status_tasks.discard)

    async def _send_status(self, status: NetworkPolicyNodeStatus) -> None:
        assert self.report_status is not None
        try:
            await self.report_status(status)
        except Exception as exc:  # the client re-sends all statuses after reconnecting
            log.warning("policy_status_report_failed", policy=status.policy, error=str(exc))


def _merge(a: BatchResult, b: BatchResult) -> BatchResult:
    return BatchResult(
        rules=a.rules + b.rules,
        flows_added=a.flows_added + b.flows_added,
        flows_modified=a.flows_modified + b.flows_modified,
        flows_deleted=a.flows_deleted + b.flows_deleted,
        bundles=a.bundles + b.bundles,
        seconds=a.seconds + b.seconds,
        failed={**a.failed, **b.failed},
        failed_stage={**a.failed_stage, **b.failed_stage},
    )


def _log_policy_event(st: PolicyState, announced: bool, node: str) -> None:
    """One structured event per policy outcome on this node: realized (first time), changed
    (realized at a new generation), failed (a rule cannot be realized: its pods stay isolated),
    or still in progress (debug)."""
    ref = st.policy.source_ref
    fields = {
        "policy": st.policy.name,
        "source": f"{ref.type}:{ref.namespace + '/' if ref.namespace else ''}{ref.name}",
        "generation": st.policy.generation,
        "node": node,
    }
    if st.realized:
        log.info("policy_changed" if announced else "policy_realized", **fields)
    elif st.failed:
        log.warning("policy_failed", message=st.message, **fields)
    else:
        log.debug("policy_pending", message=st.message, **fields)
