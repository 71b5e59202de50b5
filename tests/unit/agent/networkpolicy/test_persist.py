"""The persisted policy state is written after a change, but not in the middle of a batch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from antrea.agent.networkpolicy.cache import RuleCache
from antrea.agent.networkpolicy.persist import StateWriter, load_events


async def _until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.005)


async def test_the_snapshot_waits_for_the_worker_to_be_idle(tmp_path: Path) -> None:
    idle = asyncio.Event()
    path = tmp_path / "state.msgpack"
    writer = StateWriter(path, RuleCache(), interval=0.01, idle=idle.wait, max_defer=30)
    task = asyncio.create_task(writer.run())
    try:
        writer.changed()
        await asyncio.sleep(0.2)
        assert not path.exists()  # a batch is in flight: not written yet
        idle.set()
        await _until(path.exists)
        events = load_events(path)
        assert events is not None and len(events) == 1  # an empty cache: BOOKMARK only
    finally:
        task.cancel()


async def test_a_busy_worker_defers_the_snapshot_only_so_long(tmp_path: Path) -> None:
    never = asyncio.Event()
    path = tmp_path / "state.msgpack"
    writer = StateWriter(path, RuleCache(), interval=0.01, idle=never.wait, max_defer=0.1)
    task = asyncio.create_task(writer.run())
    try:
        writer.changed()
        await _until(path.exists)
    finally:
        task.cancel()
