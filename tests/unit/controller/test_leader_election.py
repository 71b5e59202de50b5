"""LeaderElector against a fake Lease API and a virtual clock (client-go 15/10/2 s timings)."""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
import random
from typing import Any

from antrea.controller.leader import LeaderElector, LeaseTimings
from antrea.k8s.resources import JSON, Conflict, KubeError

LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/antrea-controller"


class Backend:
    """A single object store with resourceVersion optimistic concurrency."""

    def __init__(self) -> None:
        self.objs: dict[str, JSON] = {}
        self.rv = itertools.count(1)
        self.writes: list[tuple[float, str]] = []


class FakeKube:
    """One candidate's view of the API; ``down`` makes every call fail, ``hang`` never return."""

    def __init__(self, backend: Backend, clock: Any) -> None:
        self.b = backend
        self.clock = clock
        self.down = False
        self.hang = False

    async def _check(self) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if self.down:
            raise KubeError(0, "unreachable")

    async def get(self, path: str) -> JSON | None:
        await self._check()
        obj = self.b.objs.get(path)
        return copy.deepcopy(obj) if obj else None

    async def create(self, collection: str, body: JSON) -> JSON:
        await self._check()
        path = f"{collection}/{body['metadata']['name']}"
        if path in self.b.objs:
            raise Conflict(409, "exists")
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(next(self.b.rv))
        self.b.objs[path] = body
        self.b.writes.append((self.clock(), body["spec"]["holderIdentity"]))
        return copy.deepcopy(body)

    async def replace(self, path: str, body: JSON) -> JSON:
        await self._check()
        cur = self.b.objs.get(path)
        if cur is None or cur["metadata"]["resourceVersion"] != body["metadata"].get(
            "resourceVersion"
        ):
            raise Conflict(409, "stale")
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(next(self.b.rv))
        self.b.objs[path] = body
        self.b.writes.append((self.clock(), body["spec"]["holderIdentity"]))
        return copy.deepcopy(body)


class FakeTime:
    """Virtual time: ``sleep`` parks until `advance` moves the clock past its deadline."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, d: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + d, next(self._seq), fut))
        await fut

    @staticmethod
    async def settle() -> None:
        for _ in range(30):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        until = self.now + seconds
        while True:
            await self.settle()
            if not self._timers or self._timers[0][0] > until:
                break
            when, _, fut = heapq.heappop(self._timers)
            self.now = when
            if not fut.done():
                fut.set_result(None)
        self.now = until
        await self.settle()


class Candidate:
    def __init__(
        self, name: str, backend: Backend, t: FakeTime, timings: LeaseTimings | None = None
    ) -> None:
        self.kube = FakeKube(backend, t.clock)
        self.events: list[tuple[float, str]] = []
        self.elector = LeaderElector(
            self.kube,
            identity=name,
            timings=timings,
            on_started=lambda: self.events.append((t.now, "started")),
            on_stopped=lambda: self.events.append((t.now, "stopped")),
            clock=t.clock,
            sleep=t.sleep,
            rng=random.Random(1),
        )
        self.task = asyncio.get_running_loop().create_task(self.elector.run())

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def holder(b: Backend) -> str:
    return str(b.objs[LEASE]["spec"]["holderIdentity"])


async def test_single_candidate_acquires_and_renews() -> None:
    b, t = Backend(), FakeTime()
    c = Candidate("n1", b, t)
    try:
        await t.advance(0.1)
        assert c.elector.is_leader and c.events == [(0.0, "started")]
        spec = b.objs[LEASE]["spec"]
        assert spec["holderIdentity"] == "n1" and spec["leaseDurationSeconds"] == 15
        assert spec["leaseTransitions"] == 0
        await t.advance(10)
        renewals = [w for w in b.writes if w[1] == "n1"]
        assert len(renewals) == 6  # create + one renewal every 2 s
    finally:
        await c.stop()


async def test_standby_does_not_take_a_renewed_lease() -> None:
    b, t = Backend(), FakeTime()
    c1 = Candidate("n1", b, t)
    await t.advance(0.1)
    c2 = Candidate("n2", b, t)
    try:
        await t.advance(60)
        assert c1.elector.is_leader and not c2.elector.is_leader
        assert c2.elector.leader == "n1" and c2.events == []
    finally:
        await c1.stop()
        await c2.stop()


async def test_partitioned_leader_steps_down_before_standby_takes_over() -> None:
    b, t = Backend(), FakeTime()
    c1 = Candidate("n1", b, t)
    await t.advance(0.1)
    c2 = Candidate("n2", b, t)
    try:
        await t.advance(5)
        last_renew = max(w[0] for w in b.writes if w[1] == "n1")
        c1.kube.down = True
        await t.advance(30)
        stopped = [e[0] for e in c1.events if e[1] == "stopped"]
        started2 = [e[0] for e in c2.events if e[1] == "started"]
        assert stopped and started2
        assert stopped[0] - last_renew <= 10.0 + 2.0  # renew deadline (checked every retry)
        assert started2[0] >= last_renew + 15.0  # the standby waited for the lease to expire
        assert stopped[0] < started2[0]  # never two leaders
        assert holder(b) == "n2" and b.objs[LEASE]["spec"]["leaseTransitions"] == 1
        # the old leader comes back as a standby
        c1.kube.down = False
        await t.advance(20)
        assert not c1.elector.is_leader and c2.elector.is_leader
    finally:
        await c1.stop()
        await c2.stop()


async def test_graceful_stop_releases_the_lease() -> None:
    b, t = Backend(), FakeTime()
    c1 = Candidate("n1", b, t)
    await t.advance(0.1)
    c2 = Candidate("n2", b, t)
    await t.advance(3)
    await c1.stop()
    assert holder(b) == "" and c1.events[-1][1] == "stopped"
    released = t.now
    try:
        await t.advance(5)
        started2 = [e[0] for e in c2.events if e[1] == "started"]
        assert started2 and started2[0] - released <= 2.0 * 1.2 + 0.01  # one retry period
    finally:
        await c2.stop()


async def test_hung_api_call_is_bounded_by_the_renew_deadline() -> None:
    """Real clock, short timings: a PUT that never returns must not keep us 'leader'."""
    b = Backend()
    loop = asyncio.get_running_loop()
    kube = FakeKube(b, loop.time)
    events: list[str] = []
    elector = LeaderElector(
        kube,
        identity="n1",
        timings=LeaseTimings(0.6, 0.4, 0.1),
        on_started=lambda: events.append("started"),
        on_stopped=lambda: events.append("stopped"),
    )
    task = loop.create_task(elector.run())
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if events:
                break
        assert events == ["started"]
        kube.hang = True
        for _ in range(200):
            await asyncio.sleep(0.01)
            if "stopped" in events:
                break
        assert events == ["started", "stopped"] and not elector.is_leader
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_timings_must_be_ordered() -> None:
    import pytest

    with pytest.raises(ValueError, match="lease_duration"):
        LeaseTimings(10, 10, 2)
