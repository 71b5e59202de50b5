"""One coalescing batcher: what is submitted while a batch is in flight goes into the next one.

Several expensive operations cost about the same for one item as for many: a flow bundle, an
``ovs-vsctl`` transaction (every port change makes ovs-vswitchd reconfigure the bridge), a veth
deletion (one RCU grace period under the RTNL lock). A `Batcher` runs ``apply`` on everything
submitted since the previous call, in submission order, and answers each submitter with the
outcome of its own item:

* ``submit`` returns once the item was applied, or raises its error;
* an item submitted with a ``key`` replaces a still-pending item of the same key (last state
  wins, in the position of the first); every submitter of that key gets the result;
* if ``apply`` fails on a batch of several items and ``split(exc)`` says so, the items are
  applied again one by one (Felix's split-and-retry) so that only the faulty one fails and the
  others still land; ``apply`` must be atomic (a failed call changed nothing) for this to be
  exactly-once. Otherwise the error reaches every submitter of the batch.
* a submitter that is cancelled while waiting does not withdraw its item.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from antrea.util.aio import settle

T = TypeVar("T")


def always(exc: BaseException) -> bool:
    return True


@dataclass(slots=True)
class _Entry(Generic[T]):
    item: T
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class Batcher(Generic[T]):
    def __init__(
        self,
        apply: Callable[[list[T]], Awaitable[object]],
        *,
        split: Callable[[BaseException], bool] = always,
    ) -> None:
        self._apply = apply
        self._split = split
        self._pending: dict[Hashable, _Entry[T]] = {}
        self._task: asyncio.Task[None] | None = None
        self.calls = 0  # invocations of `apply` (batches and split retries)
        self.applied = 0  # successful invocations of `apply`

    def __len__(self) -> int:
        """Items waiting for the next batch."""
        return len(self._pending)

    async def submit(self, item: T, *, key: Hashable | None = None) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slot: Hashable = object() if key is None else key
        entry = self._pending.get(slot)
        if entry is None:
            self._pending[slot] = entry = _Entry(item)
        else:
            entry.item = item
        entry.waiters.append(fut)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="batcher_drain")
        await fut

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = list(self._pending.values()), {}
            try:
                await self._run(batch)
            except BaseException:
                # cancelled (the loop is closing): nobody is going to answer these submitters
                for entry in batch + list(self._pending.values()):
                    for fut in entry.waiters:
                        fut.cancel()
                self._pending = {}
                raise

    async def _call(self, items: list[T]) -> None:
        self.calls += 1
        await self._apply(items)
        self.applied += 1

    async def _run(self, batch: list[_Entry[T]]) -> None:
        try:
            await self._call([e.item for e in batch])
        except Exception as exc:
            if len(batch) == 1 or not self._split(exc):
                for entry in batch:
                    _answer(entry, exc)
                return
        else:
            for entry in batch:
                _answer(entry, None)
            return
        for entry in batch:
            try:
                await self._call([entry.item])
            except Exception as exc:
                _answer(entry, exc)
            else:
                _answer(entry, None)


def _answer(entry: _Entry[T], exc: BaseException | None) -> None:
    for fut in entry.waiters:
        settle(fut, exc)
