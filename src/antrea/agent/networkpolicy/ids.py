"""Conjunction ID allocation.

IDs are small integers shared by both directions (one allocator, like Antrea's).

A released ID is *unconfirmed* until the reconciler `confirm`s that the switch holds no flow
carrying it any more: it knows that after a batch in which the switch accepted every change and
nothing refused earlier is still waiting for a retry. Until then the ID is not handed out: a
clause flow of a deleted rule that the switch refused to delete (``nw_src=A ->
conjunction(1,1/2)``) would otherwise join a new rule that got ID 1 (``reg1=5 ->
conjunction(1,2/2)`` and its ``conj_id=1`` action flow) and let A reach pod 5, which no policy
allows. A confirmed ID still waits `delay` seconds: stats collected from flow dumps and traces
taken just before a rule went away can still be attributed to the rule that owned the ID.

Rounds never mix: a restarted agent installs its flows next to the previous round's until
those are deleted, and OVS combines clause flows by ``conj_id`` whatever their cookie. So the
IDs still installed (read back from the switch at start, `installed_conj_ids`) are *reserved*:
never handed out by this allocator. Otherwise an old clause flow ``nw_src=A ->
conjunction(1,1/2)`` and a new one ``reg1=5 -> conjunction(1,2/2)`` would allow A to pod 5,
which neither version of the policy allows.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Iterable

from antrea.ovs.ovsctl import DumpedFlow

MAX_CONJ_ID = 0xFFFFFFFF


def installed_conj_ids(flows: Iterable[DumpedFlow]) -> set[int]:
    """Every conjunction ID used by dumped flows (``conj_id`` matches, ``conjunction`` actions)."""
    out: set[int] = set()
    for f in flows:
        out |= f.conj_ids
    return out


class ConjIDAllocator:
    def __init__(self, *, delay: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.delay = delay
        self.clock = clock
        self._next = 1
        self._free: list[int] = []  # min-heap of reusable IDs
        self._cooling: deque[tuple[float, int]] = deque()
        self.in_use: set[int] = set()
        self.reserved: set[int] = set()  # still installed by a previous round: never handed out
        self.unconfirmed: set[int] = set()  # released; flows carrying it may still be installed

    def reserve(self, ids: Iterable[int]) -> None:
        """Never hand out these IDs (the previous round's, still in the switch)."""
        self.reserved.update(i for i in ids if i not in self.in_use)

    def allocate(self) -> int:
        cooling = self._cooling
        if cooling:  # (nothing cools down in an initial sync: no clock read per ID)
            now = self.clock()
            while cooling and cooling[0][0] <= now:
                heapq.heappush(self._free, cooling.popleft()[1])
        while True:
            if self._free:
                i = heapq.heappop(self._free)
            else:
                if self._next > MAX_CONJ_ID:
                    raise RuntimeError("conjunction IDs exhausted")
                i = self._next
                self._next += 1
            if i not in self.reserved:
                break
        self.in_use.add(i)
        return i

    def release(self, i: int) -> None:
        """The rule is done with `i`; it is reusable once `confirm`ed (and cooled down)."""
        if i in self.in_use:
            self.in_use.discard(i)
            self.unconfirmed.add(i)

    def confirm(self) -> None:
        """No flow carrying a released ID is left in the switch: start their cool-down."""
        if self.unconfirmed:
            until = self.clock() + self.delay
            self._cooling.extend((until, i) for i in sorted(self.unconfirmed))
            self.unconfirmed.clear()

    def cooling(self) -> set[int]:
        return {i for _, i in self._cooling}
