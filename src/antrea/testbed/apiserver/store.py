"""In-memory object storage with one global resourceVersion and a bounded event history.

Why this shape: the real API server keeps one etcd revision for everything, and clients only
ever compare resourceVersions for equality or resume a watch from one. A single monotonic
counter gives the same guarantees. Stored objects are never mutated in place (every write
stores a new dict), so a list, a watch event or the history can hand out the same dict
without copying.

Watch fan-out is synchronous and non-blocking: a write appends the event to each matching
watcher's deque and wakes it. A watcher that falls more than ``watch_queue`` events behind is
dropped (its stream ends and the client re-watches, exactly what a real client does when a
watch closes), so one slow reader never stalls writers or grows memory without bound.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from antrea.testbed.apiserver import errors
from antrea.testbed.apiserver.limits import encode_stored

JSON = dict[str, Any]
Key = tuple[str, str]  # (group, resource)
Predicate = Callable[[JSON], bool]

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"


@dataclass(slots=True)
class Event:
    """One committed change; ``old`` is the previous state for MODIFIED events."""

    type: str
    rv: int
    key: Key
    obj: JSON
    old: JSON | None = None
    _raw: bytes | None = field(default=None, repr=False)

    def raw(self) -> bytes:
        """The object serialized once, shared by every watcher that wants it unchanged."""
        if self._raw is None:
            self._raw = orjson.dumps(self.obj)
        return self._raw


def namespace_of(obj: JSON) -> str:
    ns: str = obj["metadata"].get("namespace") or ""
    return ns


def name_of(obj: JSON) -> str:
    name: str = obj["metadata"]["name"]
    return name


class Watcher:
    """One watch stream's filter and pending events."""

    __slots__ = (
        "_waiter",
        "closed",
        "key",
        "maxsize",
        "name",
        "namespace",
        "overflowed",
        "pending",
        "predicate",
    )

    def __init__(
        self,
        *,
        key: Key,
        namespace: str | None,
        name: str | None,
        predicate: Predicate | None,
        maxsize: int,
    ) -> None:
        self.key = key
        self.namespace = namespace
        self.name = name
        self.predicate = predicate
        self.maxsize = maxsize
        self.pending: deque[tuple[str, Event]] = deque()
        self.overflowed = False
        self.closed = False
        # Set while the stream waits for events (`wait`): woken directly, one loop step later.
        self._waiter: asyncio.Future[None] | None = None

    def translate(self, event: Event) -> str | None:
        """The event type this watcher sees for ``event``, or None if it sees nothing.

        With a selector, an object that starts matching arrives as ADDED and one that stops
        matching as DELETED, as upstream's cacher does.
        """
        obj = event.obj
        if self.namespace is not None and namespace_of(obj) != self.namespace:
            return None
        if self.name is not None and name_of(obj) != self.name:
            return None
        pred = self.predicate
        if pred is None:
            return event.type
        now = pred(obj)
        if event.type == MODIFIED:
            before = event.old is not None and pred(event.old)
            if now and before:
                return MODIFIED
            if now:
                return ADDED
            if before:
                return DELETED
            return None
        return event.type if now else None

    def offer(self, event: Event) -> None:
        if self.closed:
            return
        kind = self.translate(event)
        if kind is None:
            return
        if len(self.pending) >= self.maxsize:
            self.overflowed = True
            self.closed = True
            self.pending.clear()
        else:
            self.pending.append((kind, event))
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Wait until there is something to send (or ``timeout`` passes)."""
        if self.pending or self.closed:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(timeout, _release, waiter)
        self._waiter = waiter
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def close(self) -> None:
        self.closed = True
        self._wake()


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Store:
    """Objects by (group, resource) -> namespace -> name, plus history and watchers."""

    def __init__(self, *, history: int = 10000, watch_queue: int = 20000) -> None:
        self.rv = 0
        self._objects: dict[Key, dict[str, dict[str, JSON]]] = {}
        self._history: deque[Event] = deque(maxlen=history)
        # Events with rv <= compacted_rv may be missing from the history.
        self.compacted_rv = 0
        self._watchers: dict[Key, set[Watcher]] = {}
        self._watch_queue = watch_queue
        self.on_commit: list[Callable[[Event], None]] = []

    # -- reads ---------------------------------------------------------------------------

    def get(self, key: Key, namespace: str, name: str) -> JSON | None:
        return self._objects.get(key, {}).get(namespace, {}).get(name)

    def list(self, key: Key, namespace: str | None = None) -> list[JSON]:
        """Objects in etcd key order: by namespace, then name."""
        by_ns = self._objects.get(key)
        if not by_ns:
            return []
        if namespace is not None:
            names = by_ns.get(namespace)
            return [names[n] for n in sorted(names)] if names else []
        out: list[JSON] = []
        for ns in sorted(by_ns):
            names = by_ns[ns]
            out.extend(names[n] for n in sorted(names))
        return out

    def count(self, key: Key, namespace: str | None = None) -> int:
        by_ns = self._objects.get(key, {})
        if namespace is not None:
            return len(by_ns.get(namespace, {}))
        return sum(len(v) for v in by_ns.values())

    def resource_keys(self) -> Iterator[Key]:
        return iter(list(self._objects))

    # -- writes --------------------------------------------------------------------------

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, key: Key, obj: JSON, *, old: JSON | None) -> Event:
        """Store ``obj`` (a fresh dict) as a create (old is None) or an update.

        The object is encoded before anything changes: one that cannot be served back (or is
        over `limits.MAX_OBJECT_BYTES`) raises an `errors.APIError` and is not stored.
        """
        rv = self.rv + 1
        obj["metadata"]["resourceVersion"] = str(rv)
        raw = encode_stored(obj)
        self.rv = rv
        ns, name = namespace_of(obj), name_of(obj)
        self._objects.setdefault(key, {}).setdefault(ns, {})[name] = obj
        event = Event(ADDED if old is None else MODIFIED, rv, key, obj, old, raw)
        self._publish(event)
        return event

    def remove(self, key: Key, obj: JSON) -> Event:
        """Delete the stored object; ``obj`` (a fresh dict) is its final state."""
        rv = self._next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        ns, name = namespace_of(obj), name_of(obj)
        names = self._objects.get(key, {}).get(ns)
        if names is not None:
            names.pop(name, None)
            if not names:
                del self._objects[key][ns]
        event = Event(DELETED, rv, key, obj)
        self._publish(event)
        return event

    def load(self, key: Key, obj: JSON) -> None:
        """Insert without an event (start-up from the data directory)."""
        self._objects.setdefault(key, {}).setdefault(namespace_of(obj), {})[name_of(obj)] = obj

    def drop_resource(self, key: Key) -> None:
        self._objects.pop(key, None)

    def _publish(self, event: Event) -> None:
        if len(self._history) == self._history.maxlen:
            self.compacted_rv = self._history[0].rv
        self._history.append(event)
        for watcher in self._watchers.get(event.key, ()):
            watcher.offer(event)
        for hook in self.on_commit:
            hook(event)

    # -- watch ---------------------------------------------------------------------------

    def watch(
        self,
        key: Key,
        *,
        namespace: str | None,
        name: str | None,
        predicate: Predicate | None,
        since: int | None,
    ) -> Watcher:
        """Register a watcher.

        ``since=None`` means "current state, then changes": the existing objects arrive first
        as synthetic ADDED events (what upstream does for an unset or ``0`` resourceVersion).
        Otherwise every change after ``since`` is replayed from the history, or 410 Gone if
        the history no longer reaches back that far.
        """
        watcher = Watcher(
            key=key, namespace=namespace, name=name, predicate=predicate, maxsize=self._watch_queue
        )
        if since is None:
            for obj in self.list(key, namespace):
                if name is not None and name_of(obj) != name:
                    continue
                if predicate is not None and not predicate(obj):
                    continue
                watcher.pending.append((ADDED, Event(ADDED, self.rv, key, obj)))
        else:
            if since < self.compacted_rv:
                raise errors.gone(f"too old resource version: {since} ({self.compacted_rv})")
            if since > self.rv:
                # A version this server never issued (it lost its state): make the client
                # re-list instead of silently waiting for the counter to catch up.
                raise errors.gone(f"too large resource version: {since}, current: {self.rv}")
            replay: list[Event] = []
            for event in reversed(self._history):
                if event.rv <= since:
                    break
                if event.key == key:
                    replay.append(event)
            for event in reversed(replay):
                kind = watcher.translate(event)
                if kind is not None:
                    watcher.pending.append((kind, event))
        # The initial burst does not count against the watcher's lag allowance.
        watcher.maxsize += len(watcher.pending)
        self._watchers.setdefault(key, set()).add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        watcher.close()
        watchers = self._watchers.get(watcher.key)
        if watchers is not None:
            watchers.discard(watcher)

    def close_watchers(self, key: Key | None = None) -> None:
        """End watch streams (all, or one resource's, e.g. when its CRD goes away)."""
        keys = [key] if key is not None else list(self._watchers)
        for k in keys:
            for watcher in self._watchers.pop(k, set()):
                watcher.close()

    def watcher_count(self) -> int:
        return sum(len(w) for w in self._watchers.values())
