"""The last policy state received, kept on disk as a fallback for the next start.

Like upstream (v1.15, PR #5777): a restarted agent whose controller is unreachable would
otherwise delete the previous round's flows (after ``policyReadyTimeout``) with no policy
installed, leaving isolated pods open. The cache's objects are written (debounced, atomically:
temp file + rename) as the wire frames the controller sends (ADDED per object, then BOOKMARK),
to ``<stateDir>/networkpolicy/state.msgpack``. At start, if no stream event arrived within
``fallback_after`` seconds, the file is replayed as the initial state; the real stream, when
it comes, is then handled as a resync, so nothing stale survives it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from antrea.agent.networkpolicy.cache import RuleCache
from antrea.apis.controlplane.codec import (
    DecodeError,
    EventType,
    FrameDecoder,
    WatchEvent,
    encode_event,
)
from antrea.apis.controlplane.types import AddressGroup, AppliedToGroup, Kind

log = structlog.get_logger(__name__)


def snapshot_bytes(cache: RuleCache) -> bytes:
    parts = [
        encode_event(WatchEvent(EventType.ADDED, Kind.ADDRESS_GROUP, AddressGroup(n, frozenset(m))))
        for n, m in sorted(cache.address_groups.items())
    ]
    parts += [
        encode_event(
            WatchEvent(EventType.ADDED, Kind.APPLIED_TO_GROUP, AppliedToGroup(n, frozenset(m)))
        )
        for n, m in sorted(cache.applied_to_groups.items())
    ]
    parts += [
        encode_event(WatchEvent(EventType.ADDED, Kind.NETWORK_POLICY, p))
        for _, p in sorted(cache.policies.items())
    ]
    parts.append(encode_event(WatchEvent(EventType.BOOKMARK)))
    return b"".join(parts)


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_events(path: Path) -> list[WatchEvent] | None:
    """The persisted frames (ending with BOOKMARK), or None if absent or unreadable."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        events = list(FrameDecoder().feed(data))
    except DecodeError as exc:
        log.warning("persisted_policy_state_unreadable", path=str(path), error=str(exc))
        return None
    if not events or events[-1].type is not EventType.BOOKMARK:
        return None
    return events


class StateWriter:
    """Writes the cache at most every `interval` seconds after it changed.

    The snapshot encodes the whole cache on the event loop (40-60 ms for 15,000 rules), so it
    waits for `idle` (the policy worker has nothing in flight) rather than landing in the middle
    of a realization; at most `max_defer` seconds, so a steady stream of changes cannot keep
    the file stale forever."""

    def __init__(
        self,
        path: Path,
        cache: RuleCache,
        *,
        interval: float = 1.0,
        idle: Callable[[], Awaitable[object]] | None = None,
        max_defer: float = 10.0,
    ) -> None:
        self.path = path
        self.cache = cache
        self.interval = interval
        self.idle = idle
        self.max_defer = max_defer
        self._dirty = asyncio.Event()

    def changed(self) -> None:
        self._dirty.set()

    async def run(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.interval)
            if self.idle is not None:
                try:
                    await asyncio.wait_for(self.idle(), self.max_defer)
                except TimeoutError:
                    pass  # busy for that long: write what there is
            self._dirty.clear()
            data = snapshot_bytes(self.cache)
            try:
                await asyncio.to_thread(write_atomic, self.path, data)
            except OSError as exc:
                log.warning("policy_state_persist_failed", path=str(self.path), error=str(exc))
