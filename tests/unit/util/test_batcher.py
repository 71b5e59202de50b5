"""antrea.util.batcher: exactly once, in order, errors to their submitters, coalescing by key."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antrea.util.batcher import Batcher


class Bad(Exception):
    pass


class Target:
    """An atomic store: a call either applies every item or none (raises on a bad item)."""

    def __init__(self, *, hang: asyncio.Event | None = None) -> None:
        self.applied: list[tuple[int, int]] = []
        self.calls: list[list[tuple[int, int]]] = []
        self.hang = hang

    async def apply(self, items: list[tuple[int, int]]) -> None:
        self.calls.append(list(items))
        await asyncio.sleep(0)  # let more submissions arrive while this batch is in flight
        if self.hang is not None:
            await self.hang.wait()
        if any(value < 0 for _, value in items):
            raise Bad(items)
        self.applied.extend(items)


# A submission: (key or None, value); a negative value is one the target rejects.
submissions = st.lists(
    st.tuples(st.none() | st.integers(0, 3), st.integers(-1, 20)), min_size=1, max_size=30
)


@settings(max_examples=150, deadline=None)
@given(subs=submissions, pauses=st.lists(st.booleans(), min_size=30, max_size=30))
def test_every_item_applied_exactly_once_in_order_and_errors_reach_their_submitters(
    subs: list[tuple[int | None, int]], pauses: list[bool]
) -> None:
    async def run() -> None:
        target = Target()
        batcher: Batcher[tuple[int, int]] = Batcher(target.apply)
        tasks = []
        for i, (key, value) in enumerate(subs):
            tasks.append(asyncio.create_task(batcher.submit((i, value), key=key)))
            if pauses[i]:
                await asyncio.sleep(0)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert len(batcher) == 0
        applied_ids = [i for i, _ in target.applied]
        assert len(applied_ids) == len(set(applied_ids)), "an item was applied twice"
        # in submission order; a keyed item replacing a pending one takes that one's place
        places = [
            min(i for i in range(len(subs)) if _slot_winner(i, subs, target) == w)
            if subs[w][0] is not None
            else w
            for w in applied_ids
        ]
        assert places == sorted(places), "items were applied out of order"
        for i, ((key, value), result) in enumerate(zip(subs, results, strict=True)):
            if key is None:
                # unkeyed: its own fate, exactly
                if value < 0:
                    assert isinstance(result, Bad)
                    assert i not in applied_ids
                else:
                    assert result is None
                    assert i in applied_ids
            else:
                # keyed: the submitter gets the fate of the item that replaced it (or its own)
                winner = _slot_winner(i, subs, target)
                if subs[winner][1] < 0:
                    assert isinstance(result, Bad)
                else:
                    assert result is None, result
                    assert winner in applied_ids
        # every keyed item's last submission is the state that was applied last for that key
        for key in {k for k, _ in subs if k is not None}:
            last = max(i for i, (k, _) in enumerate(subs) if k == key)
            if subs[last][1] >= 0:
                assert last in applied_ids

    asyncio.run(run())


def _slot_winner(i: int, subs: list[tuple[int | None, int]], target: Target) -> int:
    """The submission applied in place of keyed submission `i`: the first of `i` and the later
    submissions of its key to reach the target (the ones in between were replaced)."""
    if subs[i][0] is None:
        return i
    same_key = {j for j in range(i, len(subs)) if subs[j][0] == subs[i][0]}
    for call in target.calls:
        for j, _ in call:
            if j in same_key:
                return j
    raise AssertionError(f"submission {i} never reached the target")


async def test_concurrent_submissions_share_a_call() -> None:
    target = Target()
    batcher: Batcher[tuple[int, int]] = Batcher(target.apply)
    await asyncio.gather(*(batcher.submit((i, i)) for i in range(10)))
    assert target.applied == [(i, i) for i in range(10)]
    assert len(target.calls) <= 2  # the first alone, the other nine merged
    assert batcher.calls == batcher.applied == len(target.calls)


async def test_a_bad_item_is_isolated_by_split_and_retry() -> None:
    target = Target()
    batcher: Batcher[tuple[int, int]] = Batcher(target.apply)
    results = await asyncio.gather(
        batcher.submit((0, 0)),
        batcher.submit((1, 1)),
        batcher.submit((2, -1)),
        batcher.submit((3, 3)),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [type(None), type(None), Bad, type(None)]
    assert target.applied == [(0, 0), (1, 1), (3, 3)]


async def test_without_split_the_error_reaches_every_submitter_of_the_batch() -> None:
    target = Target()
    batcher: Batcher[tuple[int, int]] = Batcher(target.apply, split=lambda exc: False)
    gate = asyncio.Event()
    first = asyncio.create_task(batcher.submit((0, 0)))
    await asyncio.sleep(0)
    target.hang = gate
    rest = [asyncio.create_task(batcher.submit((i, -1 if i == 2 else i))) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    gate.set()
    await first
    results = await asyncio.gather(*rest, return_exceptions=True)
    assert all(isinstance(r, Bad) for r in results)
    assert target.applied == [(0, 0)]


async def test_a_later_state_of_a_key_replaces_the_pending_one() -> None:
    gate = asyncio.Event()
    target = Target(hang=gate)
    batcher: Batcher[tuple[int, int]] = Batcher(target.apply)
    first = asyncio.create_task(batcher.submit((0, 0), key="a"))
    await asyncio.sleep(0)  # in flight
    queued = [asyncio.create_task(batcher.submit((i, i), key="b")) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    assert len(batcher) == 1
    gate.set()
    await asyncio.gather(first, *queued)
    assert target.applied == [(0, 0), (3, 3)]


async def test_a_cancelled_submitter_does_not_withdraw_its_item() -> None:
    gate = asyncio.Event()
    target = Target(hang=gate)
    batcher: Batcher[tuple[int, int]] = Batcher(target.apply)
    task = asyncio.create_task(batcher.submit((0, 0)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    await batcher.submit((1, 1))
    assert target.applied == [(0, 0), (1, 1)]
