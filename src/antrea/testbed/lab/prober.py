"""A small prober for fault tests: TCP connects from pods, one attempt per path every 20 ms.

`Prober(paths).start()` runs its own event loop on a thread (so the caller may block: kubectl,
kill, sleep); every ``interval`` it opens, for every path, a new socket inside the source pod's
namespace and connects to the destination (``timeout`` each, attempts overlap). Each attempt is
recorded with its start and end (``time.monotonic()``, the caller's clock too) and whether the
handshake completed. `stop()` returns the attempts; `Series` answers the questions fault tests
ask: did a forbidden path ever connect, when was an allowed one back for good.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from antrea.testbed.lab import netns

INTERVAL = 0.02
TIMEOUT = 0.5  # below TCP's 1 s initial SYN retransmission: one attempt is one SYN


@dataclass(frozen=True, slots=True)
class Path:
    name: str  # e.g. "other->srv:81"
    netns_path: str  # the source pod's namespace
    ip: str
    port: int


@dataclass(frozen=True, slots=True)
class Attempt:
    start: float
    end: float
    ok: bool


@dataclass
class Series:
    """The attempts of one path, in start order."""

    attempts: list[Attempt] = field(default_factory=list)

    def successes(self, since: float = 0.0, until: float = float("inf")) -> list[Attempt]:
        return [a for a in self.attempts if a.ok and since <= a.start <= until]

    def failures(self, since: float = 0.0, until: float = float("inf")) -> list[Attempt]:
        return [a for a in self.attempts if not a.ok and since <= a.start <= until]

    def back_for_good(self) -> float | None:
        """Start of the first attempt after which every attempt succeeded (None: the last one
        failed, or there were none)."""
        t: float | None = None
        for a in self.attempts:
            if not a.ok:
                t = None
            elif t is None:
                t = a.start
        return t

    def outage(self) -> tuple[float, float] | None:
        """(first failure, first success after the last failure): the span with losses."""
        fails = [a for a in self.attempts if not a.ok]
        if not fails:
            return None
        back = self.back_for_good()
        return fails[0].start, back if back is not None else float("inf")


class Prober:
    def __init__(
        self, paths: Iterable[Path], *, interval: float = INTERVAL, timeout: float = TIMEOUT
    ) -> None:
        self.paths = list(paths)
        self.interval = interval
        self.timeout = timeout
        self.series: dict[str, Series] = {p.name: Series() for p in self.paths}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    def start(self) -> Prober:
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self) -> dict[str, Series]:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)
        for s in self.series.values():
            s.attempts.sort(key=lambda a: a.start)
        return self.series

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        pending: set[asyncio.Task[None]] = set()
        next_at = time.monotonic()
        while not self._stop.is_set():
            for p in self.paths:
                t = asyncio.create_task(self._attempt(p))
                pending.add(t)
                t.add_done_callback(pending.discard)
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a loaded machine): do not burst to catch up
                next_at, delay = time.monotonic(), 0
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except TimeoutError:
                pass
        await asyncio.gather(*pending, return_exceptions=True)

    async def _attempt(self, p: Path) -> None:
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        ok = False
        try:
            sock = await netns.socket_in(p.netns_path, socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            return  # the namespace is gone: not an attempt
        try:
            async with asyncio.timeout(self.timeout):
                await loop.sock_connect(sock, (p.ip, p.port))
            ok = True
        except (OSError, TimeoutError):
            ok = False
        finally:
            sock.close()
        self.series[p.name].attempts.append(Attempt(start, time.monotonic(), ok))
