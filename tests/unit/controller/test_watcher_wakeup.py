"""A watch stream's writer takes frames pushed by a compiler batch before the next batch runs.

`Inputs._consume` yields once (``sleep(0)``) between compiler batches so that the streams write
what a batch queued: the writer waiting in `Watcher.next_frames` must be resumed within that one
loop iteration, or the agent gets nothing until the compiler has worked through everything
queued (a burst of large policies, each compiled and encoded in turn)."""

from __future__ import annotations

import asyncio

from antrea.controller.distribution import Watcher


async def test_a_pushed_frame_is_taken_before_the_next_batch() -> None:
    w = Watcher(node="n1", identity="")
    taken: list[list[bytes]] = []

    async def writer() -> None:
        while True:
            taken.append(await w.next_frames(30.0))

    task = asyncio.create_task(writer())
    await asyncio.sleep(0)  # the writer waits for frames
    seen_by_next_batch = []
    for batch in range(3):  # the consumer: a batch pushes, yields once, the next batch runs
        w.push(b"frame-%d" % batch)
        await asyncio.sleep(0)
        seen_by_next_batch.append(sum(len(t) for t in taken))
    task.cancel()
    assert seen_by_next_batch == [1, 2, 3]


async def test_next_frames_times_out_empty_and_returns_at_close() -> None:
    w = Watcher(node="n1", identity="")
    assert await w.next_frames(0.01) == []
    waiting = asyncio.create_task(w.next_frames(30.0))
    await asyncio.sleep(0)
    w.close("test")
    assert await waiting == []
