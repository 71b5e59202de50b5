"""antrea.util.supervisor: restart with backoff, failures reported, cancellation kept."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from antrea.util import supervisor
from antrea.util.supervisor import Backoff, Supervisor, keep_running


async def test_restarts_with_a_doubling_capped_delay_until_a_run_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(asyncio, "sleep", sleep)  # the supervisor waits with asyncio.sleep
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 6:
            raise RuntimeError("boom")

    with capture_logs() as logs:
        await keep_running("x", flaky, Backoff(initial=1, maximum=5), role="test")
    assert len(runs) == 6
    assert slept == [1, 2, 4, 5, 5]
    assert [e["event"] for e in logs] == ["task_failed_restarting"] * 5


async def test_a_failed_one_shot_task_is_logged_and_reported_a_returned_one_is_not() -> None:
    sup = Supervisor("agent")

    async def boom() -> None:
        raise RuntimeError("stream lost")

    async def once() -> None:
        return None

    with capture_logs() as logs:
        sup.spawn("stream", boom())
        sup.spawn("cleanup", once())
        await asyncio.sleep(0.01)
    assert sup.failed() == ["stream"]
    assert [(e["event"], e["task"], e["role"]) for e in logs] == [
        ("task_failed", "stream", "agent")
    ]
    await sup.stop()


async def test_a_restarted_task_is_not_failed_while_it_retries() -> None:
    sup = Supervisor("controller")
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("boom")
        await asyncio.Event().wait()

    sup.spawn("role", flaky, restart=Backoff(initial=0.001, maximum=0.001))
    while len(runs) < 3:
        await asyncio.sleep(0.001)
    assert sup.failed() == []
    with pytest.raises(TypeError):
        sup.spawn("bad", flaky(), restart=Backoff())
    await sup.stop()


async def test_stop_cancels_everything_and_cancellation_is_not_swallowed() -> None:
    sup = Supervisor("agent")
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    one_shot = sup.spawn("watch", forever())
    restarted = sup.spawn("role", forever, restart=Backoff())
    await started.wait()
    await sup.stop()
    assert one_shot.cancelled() and restarted.cancelled()
    assert sup.tasks() == []

    task = asyncio.create_task(keep_running("controller", forever))
    await asyncio.sleep(0.01)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done and task.cancelled()


def test_dump_tasks_lists_every_task() -> None:
    async def main() -> str:
        sup = Supervisor("agent")
        sup.spawn("sleeper", asyncio.sleep(10))
        await asyncio.sleep(0)
        text = supervisor.dump_tasks()
        await sup.stop()
        return text

    text = asyncio.run(main())
    assert "--- sleeper" in text
