"""`antrea daemon` plumbing: a failing controller candidacy is restarted, never fatal."""

from __future__ import annotations

import asyncio

from antrea.util.supervisor import Backoff, keep_running


async def test_failed_role_is_restarted_until_it_returns() -> None:
    calls: list[int] = []

    async def flaky() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("boom")

    await asyncio.wait_for(keep_running("controller", flaky, Backoff(0.01, 0.01)), 5)
    assert len(calls) == 3


async def test_cancellation_is_not_swallowed() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.get_running_loop().create_task(keep_running("controller", forever))
    await started.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done and task.cancelled()
