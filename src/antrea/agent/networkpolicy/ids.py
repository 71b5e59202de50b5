"""Conjunction ID allocation.

IDs are small integers shared by both directions (one allocator, like Antrea's). A released ID
is not reused for `delay` seconds: stats collected from flow dumps and traces taken just before
a rule went away can still be attributed to the rule that owned the ID.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable

MAX_CONJ_ID = 0xFFFFFFFF


class ConjIDAllocator:
    def __init__(self, *, delay: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.delay = delay
        self.clock = clock
        self._next = 1
        self._free: list[int] = []  # min-heap of reusable IDs
        self._cooling: deque[tuple[float, int]] = deque()
        self.in_use: set[int] = set()

    def allocate(self) -> int:
        now = self.clock()
        while self._cooling and self._cooling[0][0] <= now:
            heapq.heappush(self._free, self._cooling.popleft()[1])
        if self._free:
            i = heapq.heappop(self._free)
        else:
            if self._next > MAX_CONJ_ID:
                raise RuntimeError("conjunction IDs exhausted")
            i = self._next
            self._next += 1
        self.in_use.add(i)
        return i

    def release(self, i: int) -> None:
        if i in self.in_use:
            self.in_use.discard(i)
            self._cooling.append((self.clock() + self.delay, i))

    def cooling(self) -> set[int]:
        return {i for _, i in self._cooling}
