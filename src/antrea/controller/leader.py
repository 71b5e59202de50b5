"""Lease-based leader election (coordination.k8s.io/v1), client-go semantics, our own small loop.

Why not ``kubernetes_asyncio.leaderelection``: it uses wall-clock time for expiry, applies no
per-call timeout (a hung PUT can outlive the renew deadline while we still believe we lead),
and never releases the Lease on shutdown (a successor waits out the full lease). This elector:

- judges expiry on the *local monotonic clock*, from when this process last saw the Lease record
  change (like client-go's ``observedTime``), never by comparing its clock to the holder's;
- bounds every API call by the time left before the renew deadline;
- renews every ``retry_period``; if no renewal succeeded for ``renew_deadline`` it steps down
  (calls ``on_stopped``) *before* the lease could expire for others
  (renew_deadline < lease_duration), then competes again;
- on cancellation, releases the Lease (empty holder, 1 s duration) so a standby takes over at its
  next retry instead of after 15 s.

Defaults are the conventional client-go/component-base timings: 15 s / 10 s / 2 s.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from antrea.k8s.resources import JSON, Conflict, KubeError, KubeResources, ns_path

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LeaseTimings:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    jitter: float = 1.2  # a candidate waits retry_period * (1 + U(0, jitter - 1))

    def __post_init__(self) -> None:
        if not (self.lease_duration > self.renew_deadline > self.retry_period > 0):
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")


def _micro_time(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Observed:
    record: tuple[Any, ...] | None = None
    at: float = 0.0  # monotonic time when `record` was first seen


class LeaderElector:
    """Competes for one Lease; calls ``on_started``/``on_stopped`` as leadership comes and goes."""

    def __init__(
        self,
        kube: KubeResources,
        *,
        identity: str,
        namespace: str = "kube-system",
        name: str = "antrea-controller",
        timings: LeaseTimings | None = None,
        on_started: Callable[[], Awaitable[None] | None] | None = None,
        on_stopped: Callable[[], Awaitable[None] | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.kube = kube
        self.identity = identity
        self.namespace = namespace
        self.name = name
        self.timings = timings or LeaseTimings()
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.clock = clock
        self.wall = wall
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.is_leader = False
        self.leader: str = ""  # last observed holder
        self.transitions = 0
        self._observed = _Observed()
        self._last_renew = 0.0
        self._lease: JSON | None = None
        self.path = ns_path("coordination.k8s.io/v1", namespace, "leases", name)

    # --- loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Compete forever (until cancelled; then release the Lease if we hold it)."""
        try:
            while True:
                await self._acquire()
                await self._notify(self.on_started)
                await self._renew_until_lost()
                await self._step_down("renew_deadline_exceeded")
        finally:
            if self.is_leader:
                await self._step_down("cancelled")
                await asyncio.shield(self._release())

    async def _acquire(self) -> None:
        t = self.timings
        while True:
            if await self._try_acquire_or_renew(t.retry_period * 2):
                self.is_leader = True
                self._last_renew = self.clock()
                log.info("leadership_acquired", identity=self.identity, lease=self.name)
                return
            await self.sleep(t.retry_period * (1 + self.rng.random() * (t.jitter - 1)))

    async def _renew_until_lost(self) -> None:
        t = self.timings
        while True:
            await self.sleep(t.retry_period)
            left = self._last_renew + t.renew_deadline - self.clock()
            if left > 0 and await self._try_acquire_or_renew(left):
                self._last_renew = self.clock()
                continue
            if self.clock() - self._last_renew >= t.renew_deadline:
                return

    async def _step_down(self, reason: str) -> None:
        if not self.is_leader:
            return
        self.is_leader = False
        log.warning("leadership_lost", identity=self.identity, reason=reason)
        await self._notify(self.on_stopped)

    @staticmethod
    async def _notify(cb: Callable[[], Awaitable[None] | None] | None) -> None:
        if cb is None:
            return
        out = cb()
        if out is not None:
            await out

    # --- one attempt ---------------------------------------------------------------------

    async def _try_acquire_or_renew(self, budget: float) -> bool:
        try:
            async with asyncio.timeout(max(budget, 0.001)):
                return await self._attempt()
        except (TimeoutError, KubeError) as exc:
            log.debug("lease_attempt_failed", identity=self.identity, error=str(exc))
            return False

    def _spec(self, acquire: str, transitions: int) -> JSON:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": round(self.timings.lease_duration),
            "acquireTime": acquire,
            "renewTime": _micro_time(self.wall()),
            "leaseTransitions": transitions,
        }

    async def _attempt(self) -> bool:
        now_s = _micro_time(self.wall())
        lease = await self.kube.get(self.path)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now_s, 0),
            }
            try:
                self._lease = await self.kube.create(
                    ns_path("coordination.k8s.io/v1", self.namespace, "leases"), body
                )
            except Conflict:
                return False
            self.leader = self.identity
            self._observe(self._lease)
            return True

        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        self._observe(lease)
        self.leader = holder
        duration = float(spec.get("leaseDurationSeconds") or self.timings.lease_duration)
        if holder and holder != self.identity and self._observed.at + duration > self.clock():
            return False  # held by someone else and not expired as far as we have seen

        if holder == self.identity:
            new_spec = self._spec(
                spec.get("acquireTime") or now_s, spec.get("leaseTransitions") or 0
            )
        else:
            new_spec = self._spec(now_s, (spec.get("leaseTransitions") or 0) + 1)
        body = dict(lease)
        body["spec"] = new_spec
        try:
            self._lease = await self.kube.replace(self.path, body)
        except Conflict:
            return False
        self.leader = self.identity
        self.transitions = new_spec["leaseTransitions"]
        self._observe(self._lease)
        return True

    def _observe(self, lease: JSON) -> None:
        spec = lease.get("spec") or {}
        record = (
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            spec.get("acquireTime"),
            spec.get("leaseTransitions"),
            spec.get("leaseDurationSeconds"),
        )
        if record != self._observed.record:
            self._observed = _Observed(record, self.clock())

    async def _release(self) -> None:
        """Give the Lease up so a standby need not wait for it to expire."""
        try:
            async with asyncio.timeout(self.timings.retry_period):
                lease = await self.kube.get(self.path)
                if (
                    lease is None
                    or (lease.get("spec") or {}).get("holderIdentity") != self.identity
                ):
                    return
                body = dict(lease)
                spec = dict(body.get("spec") or {})
                spec.update(
                    holderIdentity="", leaseDurationSeconds=1, renewTime=_micro_time(self.wall())
                )
                body["spec"] = spec
                await self.kube.replace(self.path, body)
                log.info("leadership_released", identity=self.identity)
        except (TimeoutError, KubeError) as exc:
            log.warning("lease_release_failed", identity=self.identity, error=str(exc))
