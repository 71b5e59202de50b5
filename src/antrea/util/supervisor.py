"""One task supervisor for both roles: named background tasks, logged, restarted, cancelled.

A `Supervisor` owns the background tasks of one role (the agent, a controller candidate, the
daemon's roles):

* ``spawn(name, coro)`` runs a one-shot task: a failure is logged (``task_failed``, with the
  traceback) and reported by `failed()` (the ``background-tasks`` health check); a task that
  returns is simply done;
* ``spawn(name, factory, restart=Backoff(...))`` runs ``factory()`` again whenever it raises,
  after a delay that doubles from ``initial`` up to ``maximum`` (``task_failed_restarting``); a
  run that lasted ``reset_after`` seconds starts the delay over. It ends when a run returns;
* cancellation is never swallowed; ``stop()`` cancels every task and waits for them;
* `dump_tasks` prints every task of the loop with its stack (``antctl supportbundle``).

Process supervision (the lab's ovsdb-server, ovs-vswitchd and agents) is a different job and
lives with the test bed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 1.0
    maximum: float = 60.0
    reset_after: float = 60.0

    def next(self, delay: float) -> float:
        return min(delay * 2, self.maximum)


async def keep_running(
    name: str,
    factory: Callable[[], Awaitable[object]],
    backoff: Backoff = Backoff(),
    *,
    role: str = "",
) -> None:
    """Run ``factory()`` until one run returns; restart it after a backoff when it raises."""
    delay = backoff.initial
    while True:
        started = time.monotonic()
        try:
            await factory()
            return
        except Exception:
            if time.monotonic() - started >= backoff.reset_after:
                delay = backoff.initial
            log.exception("task_failed_restarting", task=name, role=role or None, delay=delay)
            await asyncio.sleep(delay)
            delay = backoff.next(delay)


class Supervisor:
    def __init__(self, role: str) -> None:
        self.role = role
        self._tasks: list[asyncio.Task[Any]] = []

    def spawn(
        self,
        name: str,
        work: Coroutine[Any, Any, Any] | Callable[[], Awaitable[object]],
        *,
        restart: Backoff | None = None,
    ) -> asyncio.Task[Any]:
        """Start `work` (a coroutine, or with `restart` a factory of them) as task `name`."""
        if restart is not None:
            if asyncio.iscoroutine(work):
                work.close()
                raise TypeError("a restarted task needs a factory, not a coroutine")
            assert callable(work)
            coro: Coroutine[Any, Any, Any] = keep_running(name, work, restart, role=self.role)
        elif asyncio.iscoroutine(work):
            coro = work
        else:
            assert callable(work)
            coro = _call(work)
        task = asyncio.create_task(self._guard(coro, name), name=name)
        self._tasks = [t for t in self._tasks if not _finished_well(t)]
        self._tasks.append(task)
        return task

    async def _guard(self, coro: Coroutine[Any, Any, Any], name: str) -> Any:
        try:
            return await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task_failed", task=name, role=self.role)
            raise

    def failed(self) -> list[str]:
        """Names of the tasks that ended with an error (returned one-shot tasks are fine)."""
        return [
            t.get_name()
            for t in self._tasks
            if t.done() and not t.cancelled() and t.exception() is not None
        ]

    def tasks(self) -> list[asyncio.Task[Any]]:
        return list(self._tasks)

    async def stop(self) -> None:
        """Cancel every task and wait for them to end."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


async def _call(factory: Callable[[], Awaitable[object]]) -> object:
    return await factory()


def _finished_well(task: asyncio.Task[Any]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is None)


def dump_tasks() -> str:
    """Every asyncio task of the process with its stack: the Python counterpart of a goroutine
    dump. Call from the event loop's thread."""
    out = io.StringIO()
    current = asyncio.all_tasks()
    out.write(f"{len(current)} tasks\n")
    for task in sorted(current, key=lambda t: t.get_name()):
        out.write(f"\n--- {task.get_name()} {task!r}\n")
        task.print_stack(file=out)
    return out.getvalue()
