"""Per-node distribution of computed objects: the watch-stream side of the controller.

The compiler (`antrea.controller.networkpolicy`) keeps every internal object with its *span*
(the nodes that need it) and reports each change once, with the old and new object and span.
This module turns that single change stream into one frame stream per connected agent:

- an object entering a node's span is ``ADDED`` for that node, one leaving it is ``DELETED``, one
  staying is ``MODIFIED`` (and nothing is sent when only the span changed);
- an AppliedToGroup carries only the members on the watcher's node (so a node never learns which
  pods of other nodes a policy applies to, and does not churn when they change);
- an AddressGroup modification is sent as the compiler's patch (added/removed members), encoded
  once and shared by every watcher.

Frames are encoded here (bytes), once per change and shared, except the per-node AppliedToGroup
frames. Each watcher has a bounded queue: a watcher whose queue overflows is closed instead of
stalling the compiler or the other watchers; the agent reconnects and gets a full state again.

Consistency on (re)connect: `Dispatcher.register` takes the node's snapshot and enrolls the
watcher in the same synchronous step. The compiler runs on the same event loop and only calls
back synchronously, so no change can fall between the snapshot and the first delta.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from antrea.apis.controlplane.codec import WIRE_VERSION, EventType, WatchEvent, encode_event
from antrea.apis.controlplane.names import HEARTBEAT_MESSAGE
from antrea.apis.controlplane.types import (
    AddressGroup,
    AddressGroupPatch,
    AppliedToGroup,
    ControlPlaneObject,
    Kind,
)

log = structlog.get_logger(__name__)

DEFAULT_MAX_QUEUE = 1000
"""Frames a watcher may have pending before it is dropped (Antrea's per-watcher buffer)."""

FRAME_CACHE_IDLE = 30.0
"""Seconds without a new watcher after which the shared snapshot-frame cache is dropped."""

BURST_FACTOR = 50
"""With a burst grace, a queue may briefly hold up to this many times ``max_queue`` frames."""

KIND_ORDER = (Kind.ADDRESS_GROUP, Kind.APPLIED_TO_GROUP, Kind.NETWORK_POLICY)
"""Snapshot order: groups before the policies that reference them."""


class ChangeLike(Protocol):
    """What the compiler reports (``antrea.controller.networkpolicy`` ``Change``)."""

    @property
    def kind(self) -> Kind: ...
    @property
    def name(self) -> str: ...
    @property
    def old(self) -> Any: ...
    @property
    def new(self) -> Any: ...
    @property
    def old_span(self) -> frozenset[str]: ...
    @property
    def new_span(self) -> frozenset[str]: ...
    @property
    def patch(self) -> AddressGroupPatch | None: ...


class StoreLike(Protocol):
    """The compiler's computed store: objects with their span."""

    def get(self, kind: Kind, name: str) -> tuple[Any, frozenset[str]] | None: ...
    def list(self, kind: Kind) -> Any: ...


def iter_store(store: StoreLike, kind: Kind) -> Iterator[tuple[ControlPlaneObject, frozenset[str]]]:
    """(object, span) pairs of one kind, whatever shape the store's ``list`` yields.

    ``list`` may yield ``(object, span)`` pairs or bare objects (then ``get`` gives the span).
    """
    for item in store.list(kind):
        if isinstance(item, tuple):
            obj, span = item
            yield obj, frozenset(span)
            continue
        got = store.get(kind, item.name)
        if got is not None:
            yield got[0], frozenset(got[1])


def members_on(group: AppliedToGroup, node: str) -> AppliedToGroup:
    """The AppliedToGroup as one node sees it: only the members hosted there."""
    return AppliedToGroup(group.name, frozenset(m for m in group.members if m.node == node))


@dataclass(eq=False)
class Watcher:
    """One connected agent stream: a bounded queue of encoded frames.

    ``max_queue`` is the bound a watcher must keep up with. With ``burst_grace`` > 0 a queue
    may exceed it for that long (one compiler batch can emit thousands of frames before any
    writer runs; that is not a slow agent), up to ``BURST_FACTOR * max_queue``; a watcher
    still above the bound when the grace period ends is dropped. With 0, exceeding it drops.
    """

    node: str
    identity: str
    max_queue: int = DEFAULT_MAX_QUEUE
    id: int = 0
    wire: int = WIRE_VERSION  # the stream's wire version (codec; chosen by the client's Accept)
    burst_grace: float = 0.0
    queue: deque[bytes] = field(default_factory=deque)
    closed: bool = False
    close_reason: str = ""
    frames_sent: int = 0
    over_since: float | None = None  # clock time when the queue first went over max_queue
    clock: Callable[[], float] = time.monotonic
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, frame: bytes) -> bool:
        """Queue one frame; False (and the watcher is closed) when it cannot keep up."""
        if self.closed:
            return False
        n = len(self.queue)
        if n >= self.max_queue:
            if self.burst_grace <= 0 or n >= self.max_queue * BURST_FACTOR:
                self.close("slow")
                return False
            if self.over_since is None:
                self.over_since = self.clock()
        self.queue.append(frame)
        self._wake.set()
        return True

    def overdue(self, now: float) -> bool:
        """Still over the bound after the grace period (the writer is not keeping up)."""
        if self.over_since is None:
            return False
        if len(self.queue) < self.max_queue:
            self.over_since = None
            return False
        return now - self.over_since >= self.burst_grace

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            self.queue.clear()
        self._wake.set()

    async def next_frames(self, timeout: float | None = None) -> list[bytes]:
        """Wait for frames (at most ``timeout`` s) and take them all; [] on timeout or close."""
        if not self.queue and not self.closed:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return []
        frames = list(self.queue)
        self.queue.clear()
        self.over_since = None
        self.frames_sent += len(frames)
        return frames


@dataclass
class DispatcherStats:
    changes: int = 0
    frames_queued: int = 0
    watchers_dropped: int = 0


class Dispatcher:
    """Fans the compiler's changes out to per-node watchers. Synchronous except `Watcher` waits."""

    def __init__(
        self,
        store: StoreLike,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        burst_grace: float = 0.0,
        on_drop: Callable[[Watcher], None] | None = None,
    ) -> None:
        self.store = store
        self.max_queue = max_queue
        self.burst_grace = burst_grace
        self.on_drop = on_drop
        self.rv = 0
        self.stats = DispatcherStats()
        self._by_node: dict[str, set[Watcher]] = {}
        self._ids = itertools.count(1)
        # node -> kind -> names in its span: snapshots cost O(objects of the node), not O(all)
        # (a failover reconnects every agent at once). Built on first use, then kept by on_change.
        self._span_index: dict[str, dict[Kind, set[str]]] | None = None
        # Encoded snapshot frames of node-independent objects (policies, AddressGroups), shared
        # by the snapshots of a reconnect storm; dropped when no one connected for a while.
        self._frames: dict[tuple[Kind, str, int], tuple[Any, bytes]] = {}
        self._frames_used = 0.0
        self.clock = time.monotonic

    # --- watchers ------------------------------------------------------------------------

    @property
    def watchers(self) -> list[Watcher]:
        return [w for ws in self._by_node.values() for w in ws]

    def connected_nodes(self) -> list[str]:
        return sorted(n for n, ws in self._by_node.items() if ws)

    def register(
        self, node: str, identity: str = "", wire: int = WIRE_VERSION
    ) -> tuple[Watcher, list[bytes]]:
        """Enroll a watcher for ``node``: (watcher, initial frames = snapshot + BOOKMARK), its
        frames in wire version ``wire``."""
        w = Watcher(
            node=node,
            identity=identity,
            max_queue=self.max_queue,
            id=next(self._ids),
            burst_grace=self.burst_grace,
            clock=self.clock,
            wire=wire,
        )
        initial = list(self.snapshot_frames(node, wire))
        self._by_node.setdefault(node, set()).add(w)
        log.info("watcher_registered", node=node, watcher=w.id, objects=len(initial) - 1)
        return w, initial

    def unregister(self, w: Watcher) -> None:
        ws = self._by_node.get(w.node)
        if ws is not None:
            ws.discard(w)
            if not ws:
                del self._by_node[w.node]
        w.close(w.close_reason or "unregistered")

    def close_all(self, reason: str) -> None:
        """Close every stream (e.g. leadership lost); agents reconnect to the new leader."""
        for w in self.watchers:
            w.close(reason)
            self.unregister(w)

    def _index(self) -> dict[str, dict[Kind, set[str]]]:
        if self._span_index is None:
            index: dict[str, dict[Kind, set[str]]] = {}
            for kind in KIND_ORDER:
                for obj, span in iter_store(self.store, kind):
                    for n in span:
                        index.setdefault(n, {}).setdefault(kind, set()).add(obj.name)
            self._span_index = index
        return self._span_index

    def _reindex(self, ch: ChangeLike, old_span: frozenset[str], new_span: frozenset[str]) -> None:
        index = self._span_index
        if index is None or old_span == new_span:
            return
        for n in old_span - new_span:
            names = index.get(n, {}).get(ch.kind)
            if names is not None:
                names.discard(ch.name)
        for n in new_span - old_span:
            index.setdefault(n, {}).setdefault(ch.kind, set()).add(ch.name)

    def snapshot_frames(self, node: str, wire: int = WIRE_VERSION) -> Iterator[bytes]:
        now = self.clock()
        if now - self._frames_used > FRAME_CACHE_IDLE:
            self._frames.clear()
        self._frames_used = now
        per_kind = self._index().get(node, {})
        for kind in KIND_ORDER:
            for name in sorted(per_kind.get(kind, ())):
                got = self.store.get(kind, name)
                if got is None or node not in got[1]:
                    continue
                obj = got[0]
                if isinstance(obj, AppliedToGroup):
                    yield encode_event(
                        WatchEvent(EventType.ADDED, kind, members_on(obj, node), rv=self.rv),
                        wire,
                    )
                    continue
                cached = self._frames.get((kind, name, wire))
                if cached is None or cached[0] is not obj:
                    ev = WatchEvent(EventType.ADDED, kind, obj, rv=self.rv)
                    cached = (obj, encode_event(ev, wire))
                    self._frames[(kind, name, wire)] = cached
                yield cached[1]
        yield encode_event(WatchEvent(EventType.BOOKMARK, rv=self.rv), wire)

    def heartbeat_frame(self, wire: int = WIRE_VERSION) -> bytes:
        ev = WatchEvent(EventType.BOOKMARK, rv=self.rv, message=HEARTBEAT_MESSAGE)
        return encode_event(ev, wire)

    # --- changes -------------------------------------------------------------------------

    def on_change(self, change: ChangeLike) -> None:
        """Compiler listener: translate one change for every watcher whose node it concerns."""
        self.rv += 1
        self.stats.changes += 1
        old_span, new_span = change.old_span or frozenset(), change.new_span or frozenset()
        self._reindex(change, old_span, new_span)
        candidates: frozenset[str] | set[str] = old_span | new_span
        patch = change.patch
        if (
            change.kind is Kind.APPLIED_TO_GROUP
            and patch is not None
            and change.old is not None
            and change.new is not None
        ):
            # only nodes whose own members changed, or that enter/leave the span, hear about it
            touched = {m.node for m in patch.added} | {m.node for m in patch.removed}
            candidates = (touched & candidates) | (old_span ^ new_span)
        nodes = [n for n in candidates if n in self._by_node]
        if not nodes:
            return
        # Frames shared by every node (policies, AddressGroups), per event type and version
        shared: dict[tuple[EventType, int], bytes | None] = {}
        for node in nodes:
            frames: dict[int, bytes | None] = {}  # this node's, per wire version
            for w in list(self._by_node.get(node, ())):
                wire = w.wire
                if wire in frames:
                    frame = frames[wire]
                else:
                    frame = frames[wire] = self._frame_for(
                        change, node, node in old_span, node in new_span, shared, wire=wire
                    )
                if frame is None:
                    continue
                self.stats.frames_queued += 1
                if not w.push(frame):
                    self._drop(w)
                elif w.over_since is not None and w.overdue(self.clock()):
                    w.close("slow")
                    self._drop(w)

    def _drop(self, w: Watcher) -> None:
        self.stats.watchers_dropped += 1
        log.warning("watcher_dropped", node=w.node, watcher=w.id, reason=w.close_reason)
        self.unregister(w)
        if self.on_drop is not None:
            self.on_drop(w)

    def _frame_for(
        self,
        ch: ChangeLike,
        node: str,
        was_in: bool,
        is_in: bool,
        shared: dict[tuple[EventType, int], bytes | None],
        *,
        wire: int = WIRE_VERSION,
    ) -> bytes | None:
        kind = ch.kind
        if kind is Kind.APPLIED_TO_GROUP:
            return self._atg_frame(ch, node, was_in, is_in, wire)
        if was_in and is_in:
            etype = EventType.MODIFIED
        elif is_in:
            etype = EventType.ADDED
        elif was_in:
            etype = EventType.DELETED
        else:
            return None
        key = (etype, wire)
        if key not in shared:
            shared[key] = self._shared_frame(ch, etype, wire)
        return shared[key]

    def _shared_frame(
        self, ch: ChangeLike, etype: EventType, wire: int = WIRE_VERSION
    ) -> bytes | None:
        kind = ch.kind
        if etype is EventType.ADDED:
            if ch.new is None:
                return None
            return encode_event(WatchEvent(etype, kind, ch.new, rv=self.rv), wire)
        if etype is EventType.DELETED:
            obj = ch.old if ch.old is not None else ch.new
            if obj is None:
                return None
            if isinstance(obj, AddressGroup):
                obj = AddressGroup(obj.name, frozenset())
            return encode_event(WatchEvent(etype, kind, obj, rv=self.rv), wire)
        # MODIFIED while staying in span
        if ch.new is None:
            return None
        if kind is Kind.ADDRESS_GROUP and ch.patch is not None:
            if not ch.patch.added and not ch.patch.removed:
                return None
            return encode_event(WatchEvent(etype, kind, None, ch.patch, rv=self.rv), wire)
        if ch.old == ch.new:
            return None  # only the span changed
        return encode_event(WatchEvent(etype, kind, ch.new, rv=self.rv), wire)

    def _atg_frame(
        self, ch: ChangeLike, node: str, was_in: bool, is_in: bool, wire: int = WIRE_VERSION
    ) -> bytes | None:
        kind = Kind.APPLIED_TO_GROUP
        if is_in and ch.new is not None:
            mine = members_on(ch.new, node)
            if was_in and ch.old is not None:
                if members_on(ch.old, node) == mine:
                    return None  # other nodes' members changed: nothing for this node
                return encode_event(WatchEvent(EventType.MODIFIED, kind, mine, rv=self.rv), wire)
            return encode_event(WatchEvent(EventType.ADDED, kind, mine, rv=self.rv), wire)
        if was_in:
            return encode_event(
                WatchEvent(
                    EventType.DELETED, kind, AppliedToGroup(ch.name, frozenset()), rv=self.rv
                ),
                wire,
            )
        return None


def object_counts(store: StoreLike) -> dict[Kind, int]:
    count = getattr(store, "count", None)  # O(1) on the compiler's store
    if count is not None:
        return {kind: int(count(kind)) for kind in KIND_ORDER}
    return {kind: sum(1 for _ in iter_store(store, kind)) for kind in KIND_ORDER}


def span_of(store: StoreLike, kind: Kind, name: str) -> frozenset[str]:
    got = store.get(kind, name)
    return frozenset(got[1]) if got is not None else frozenset()


def names(objs: Iterable[ControlPlaneObject]) -> list[str]:
    return sorted(o.name for o in objs)
