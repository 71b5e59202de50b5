"""A list+watch informer for kubernetes-asyncio, which has none (client-go's reflector + store).

The informer lists a resource, delivers every object to ``on_add``, sets `has_synced`, then
watches from the list's resourceVersion with bookmarks. When a watch ends (server timeout) or
breaks (connection reset, read timeout, server error) it resumes from the last resourceVersion
it saw, so nothing is missed and nothing is replayed. When the server says that version is gone
(``410 Gone``, as an HTTP status or as an ``ERROR`` watch event), it lists again and diffs the
new list against its cache, synthesizing exactly the add, update and delete callbacks that the
lost events would have produced. Handlers therefore see each change once, in order.

Objects are plain dicts decoded from the wire (``_preload_content=False``): kubernetes-asyncio's
model deserialization costs ~11x more than JSON decoding (see docs/design/informer.md); at
the controller's 100k-pod scale that is the difference between seconds and minutes.

Handlers run on the informer's task, one event at a time (sync or async functions); an
exception in a handler is logged and does not stop the informer. Add handlers before `start`.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog

from antrea.k8s.errors import KubeError, WatchExpired, status_error
from antrea.util import gcpause

try:
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - orjson is optional
    import json

    _loads = json.loads

log = structlog.get_logger(__name__)

# A watch event at least this large (a policy of thousands of rules) is decoded with the cyclic
# GC paused (util/gcpause.py): its objects are long-lived and acyclic.
LARGE_EVENT_BYTES = 64 * 1024


def _decode(line: bytes) -> Any:
    if len(line) < LARGE_EVENT_BYTES:
        return _loads(line)
    with gcpause.paused():
        return _loads(line)


JSON = dict[str, Any]
ListFunc = Callable[..., Awaitable[Any]]
AddHandler = Callable[[JSON], Any]
UpdateHandler = Callable[[JSON, JSON], Any]
DeleteHandler = Callable[[JSON], Any]
SyncHandler = Callable[[list[JSON]], Any]
EventHandler = Callable[[str, JSON], Any]


def object_key(obj: JSON) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects (client-go's key format)."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name', '')}" if ns else str(meta.get("name", ""))


def strip_managed_fields(obj: JSON) -> JSON:
    """A transform dropping ``metadata.managedFields`` (large, never needed by our roles)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def _rv(obj: JSON) -> str | None:
    meta = obj.get("metadata")
    return meta.get("resourceVersion") if isinstance(meta, dict) else None


def _same_version(a: JSON, b: JSON) -> bool:
    return _uid(a) == _uid(b) and _rv(a) == _rv(b)


def _uid(obj: JSON) -> str | None:
    meta = obj.get("metadata")
    return meta.get("uid") if isinstance(meta, dict) else None


@dataclass
class InformerStats:
    """Counters for tests, logs and metrics."""

    lists: int = 0
    relists: int = 0
    watches: int = 0
    events: int = 0
    errors: int = 0


@dataclass
class _Handler:
    on_add: AddHandler | None
    on_update: UpdateHandler | None
    on_delete: DeleteHandler | None
    on_sync: SyncHandler | None
    is_async: dict[str, bool] = field(default_factory=dict)


class _Backoff:
    """Exponential backoff with jitter, reset after a successful step."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.current = initial

    def reset(self) -> None:
        self.current = self.initial

    def next(self) -> float:
        delay = self.current * (0.5 + random.random() / 2)
        self.current = min(self.current * 2, self.maximum)
        return delay


class Informer:
    """List+watch one resource into a local cache and notify handlers of every change.

    Args:
        list_func: a kubernetes-asyncio list method, e.g.
            ``CoreV1Api(c).list_pod_for_all_namespaces`` or, with ``namespace``,
            ``CoreV1Api(c).list_namespaced_pod``; any callable taking the same keyword
            arguments and honouring ``_preload_content=False`` works (see `path_list_func`).
        name: for logs ("pods", ...).
        namespace: passed as the first positional argument of ``list_func`` when set.
        label_selector, field_selector: server-side filtering.
        resync: every ``resync`` seconds, call ``on_update(obj, obj)`` for every cached object.
        page_size: list in pages of this many objects (0: one request).
        watch_timeout: server-side watch duration (seconds) before a clean reconnect.
        transform: applied to every object before it is cached and delivered.
        relist_after_failures: after this many consecutive failed watches (broken streams,
            errors), list again instead of resuming.
    """

    def __init__(
        self,
        list_func: ListFunc,
        *,
        name: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resync: float | None = None,
        page_size: int = 500,
        watch_timeout: int = 300,
        backoff_initial: float = 0.2,
        backoff_max: float = 30.0,
        transform: Callable[[JSON], JSON] | None = None,
        relist_after_failures: int = 3,
    ) -> None:
        self._list_func = list_func
        self.name = name
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync = resync
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self._transform = transform
        self._backoff = _Backoff(backoff_initial, backoff_max)
        self._items: dict[str, JSON] = {}
        self._handlers: list[_Handler] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._paging_ok = True
        self._watch_failures = 0
        self.relist_after_failures = relist_after_failures
        self.has_synced = asyncio.Event()
        self.resource_version: str | None = None
        self.stats = InformerStats()
        self._log = log.bind(informer=name)

    # --- handlers and store ------------------------------------------------------------

    def add_handler(
        self,
        *,
        on_add: AddHandler | None = None,
        on_update: UpdateHandler | None = None,
        on_delete: DeleteHandler | None = None,
        on_sync: SyncHandler | None = None,
    ) -> None:
        """Register callbacks (plain functions or coroutine functions); before `start`.

        ``on_sync(objects)`` runs after every list (the first and each re-list) has been
        delivered, with every cached object: the place for a full reconcile.
        """
        if self._task is not None:
            raise RuntimeError("add handlers before starting the informer")
        h = _Handler(on_add, on_update, on_delete, on_sync)
        fns = (("add", on_add), ("update", on_update), ("delete", on_delete), ("sync", on_sync))
        for kind, fn in fns:
            h.is_async[kind] = fn is not None and inspect.iscoroutinefunction(fn)
        self._handlers.append(h)

    def get(self, namespace: str | None, name: str) -> JSON | None:
        """The cached object (do not mutate it)."""
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def get_by_key(self, key: str) -> JSON | None:
        return self._items.get(key)

    def list(self) -> builtins.list[JSON]:
        """A snapshot of every cached object."""
        return [*self._items.values()]

    def keys(self) -> builtins.list[str]:
        return [*self._items]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[JSON]:
        return iter(self.list())

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Run in a background task (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"informer-{self.name}")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait until the initial list has been delivered to the handlers."""
        async with asyncio.timeout(timeout):
            await self.has_synced.wait()

    async def run(self) -> None:
        """List, then watch forever; returns only when cancelled."""
        resync_task = None
        if self.resync:
            resync_task = asyncio.create_task(self._resync_loop(self.resync))
        need_list = True
        try:
            while True:
                try:
                    if need_list:
                        await self._list_and_sync()
                        need_list = False
                        self._watch_failures = 0
                        self._backoff.reset()
                    await self._watch()
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    expired = isinstance(e, WatchExpired) or getattr(e, "status", None) == 410
                    if expired:
                        self._log.info("watch_expired", resource_version=self.resource_version)
                    elif not need_list:
                        # A broken stream resumes from the last version seen; a server that
                        # keeps failing to resume gets a fresh (diffed) list instead.
                        self._watch_failures += 1
                    if expired or self._watch_failures >= self.relist_after_failures:
                        if not need_list:
                            self.stats.relists += 1
                        need_list = True
                        if expired:
                            continue
                    self.stats.errors += 1
                    delay = self._backoff.next()
                    self._log.warning(
                        "informer_retrying",
                        error=repr(e),
                        relist=need_list,
                        delay=round(delay, 2),
                        resource_version=self.resource_version,
                    )
                    await asyncio.sleep(delay)
        finally:
            if resync_task is not None:
                resync_task.cancel()

    # --- list ----------------------------------------------------------------------------

    async def _call(self, **kwargs: Any) -> Any:
        if self.label_selector:
            kwargs["label_selector"] = self.label_selector
        if self.field_selector:
            kwargs["field_selector"] = self.field_selector
        kwargs["_preload_content"] = False
        if self.namespace is not None:
            return await self._list_func(self.namespace, **kwargs)
        return await self._list_func(**kwargs)

    async def _get_json(self, **kwargs: Any) -> JSON:
        resp = await self._call(
            _request_timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60),
            **kwargs,
        )
        try:
            body = await resp.read()
            _check_status(resp.status, body)
        finally:
            resp.release()
        out = _loads(body)
        if not isinstance(out, dict):
            raise ValueError("list response is not an object")
        return out

    async def _list(self) -> tuple[dict[str, JSON], str]:
        items: dict[str, JSON] = {}
        cont: str | None = None
        rv = ""
        paging = self.page_size > 0 and self._paging_ok
        while True:
            kwargs: dict[str, Any] = {}
            if paging:
                kwargs["limit"] = self.page_size
            if cont:
                kwargs["_continue"] = cont
            try:
                body = await self._get_json(**kwargs)
            except WatchExpired:
                if cont is not None:
                    # The continue token expired mid-way: the next list is one request.
                    self._paging_ok = False
                raise
            kind = str(body.get("kind") or "")
            item_kind = kind[:-4] if kind.endswith("List") else ""
            api_version = body.get("apiVersion")
            transform = self._transform
            for raw in body.get("items") or ():
                if item_kind and "kind" not in raw:
                    raw["kind"] = item_kind
                    raw["apiVersion"] = api_version
                obj = transform(raw) if transform is not None else raw
                items[object_key(obj)] = obj
            meta = body.get("metadata") or {}
            rv = str(meta.get("resourceVersion") or "")
            cont = meta.get("continue") or None
            if not cont:
                break
        self._paging_ok = True
        return items, rv

    async def _list_and_sync(self) -> None:
        items, rv = await self._list()
        self.stats.lists += 1
        async with self._lock:
            old, self._items = self._items, items
            first = not self.has_synced.is_set()
            if first:
                for obj in items.values():
                    await self._emit_add(obj)
            else:
                # Re-list: deliver exactly what the missed events would have.
                for key, gone in old.items():
                    if key not in items:
                        await self._emit_delete(gone)
                for key, obj in items.items():
                    prev = old.get(key)
                    if prev is not None and _same_version(prev, obj):
                        items[key] = prev  # unchanged: handlers keep seeing the same object
                    else:
                        await self._deliver(prev, obj)
            self.resource_version = rv
            await self._emit_sync()
        self._log.info("informer_listed", objects=len(items), resource_version=rv, relist=not first)
        self.has_synced.set()

    async def _deliver(self, prev: JSON | None, obj: JSON) -> None:
        """Notify the change from ``prev`` (cached) to ``obj`` (current): add, update or none."""
        if prev is None:
            await self._emit_add(obj)
        elif _uid(prev) != _uid(obj):
            # Deleted and re-created under the same name while we were not watching.
            await self._emit_delete(prev)
            await self._emit_add(obj)
        elif _rv(prev) != _rv(obj):
            await self._emit_update(prev, obj)

    # --- watch ---------------------------------------------------------------------------

    async def _watch(self) -> None:
        """One watch request from `resource_version`; returns when the server ends it."""
        timeout = self.watch_timeout
        resp = await self._call(
            watch=True,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _request_timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=10, sock_read=timeout + 30
            ),
        )
        self.stats.watches += 1
        started = asyncio.get_running_loop().time()
        events_before = self.stats.events
        try:
            if resp.status >= 300:
                _check_status(resp.status, await resp.read())
            pending = b""
            async for chunk in resp.content.iter_any():
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if line.strip():
                        await self._handle_event(_decode(line))
            if pending.strip():
                await self._handle_event(_decode(pending))
        finally:
            resp.release()
        quick = asyncio.get_running_loop().time() - started < 1.0
        if quick and self.stats.events == events_before:
            # A server that ends watches at once must not make us spin.
            await asyncio.sleep(self._backoff.next())

    async def _handle_event(self, event: Any) -> None:
        if not isinstance(event, dict):
            raise ValueError(f"malformed watch event: {event!r}")
        etype = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            raise ValueError(f"watch event without object: {event!r}")
        if etype == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise WatchExpired(message=str(obj.get("message", "Gone")))
            reason = str(obj.get("reason") or "")
            raise KubeError(int(code or 500), str(obj.get("message", "")), reason)
        rv = _rv(obj)
        if etype == "BOOKMARK":
            if rv:
                self.resource_version = rv
            return
        if self._transform is not None:
            obj = self._transform(obj)
        self.stats.events += 1
        self._watch_failures = 0
        self._backoff.reset()
        key = object_key(obj)
        async with self._lock:
            if etype in ("ADDED", "MODIFIED"):
                prev = self._items.get(key)
                if prev is None or not _same_version(prev, obj):  # else a replay: ignore
                    self._items[key] = obj
                    await self._deliver(prev, obj)
            elif etype == "DELETED":
                prev = self._items.pop(key, None)
                if prev is not None:
                    await self._emit_delete(obj)
            else:
                raise ValueError(f"unknown watch event type {etype!r}")
            if rv:
                self.resource_version = rv

    # --- resync and dispatch -------------------------------------------------------------

    async def _resync_loop(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            if not self.has_synced.is_set():
                continue
            async with self._lock:
                for obj in list(self._items.values()):
                    await self._emit_update(obj, obj)

    async def _emit_add(self, obj: JSON) -> None:
        for h in self._handlers:
            if h.on_add is not None:
                await self._call_handler("add", h.is_async["add"], h.on_add, obj)

    async def _emit_update(self, old: JSON, new: JSON) -> None:
        for h in self._handlers:
            if h.on_update is not None:
                await self._call_handler("update", h.is_async["update"], h.on_update, old, new)

    async def _emit_delete(self, obj: JSON) -> None:
        for h in self._handlers:
            if h.on_delete is not None:
                await self._call_handler("delete", h.is_async["delete"], h.on_delete, obj)

    async def _emit_sync(self) -> None:
        for h in self._handlers:
            if h.on_sync is not None:
                objs = [*self._items.values()]
                await self._call_handler("sync", h.is_async["sync"], h.on_sync, objs)

    async def _call_handler(
        self, kind: str, is_async: bool, fn: Callable[..., Any], *args: Any
    ) -> None:
        try:
            out = fn(*args)
            if is_async or inspect.isawaitable(out):  # also callables returning awaitables
                await out
        except asyncio.CancelledError:
            raise
        except Exception:
            key = object_key(args[-1]) if isinstance(args[-1], dict) else None
            self._log.exception("informer_handler_failed", handler=kind, key=key)


def add_event_handler(
    informer: Informer, handler: EventHandler, *, synced: asyncio.Event | None = None
) -> None:
    """Deliver the informer's changes as watch-style ``handler(type, object)`` calls.

    ``type`` is ``ADDED``, ``MODIFIED`` or ``DELETED`` (a re-list's diff arrives the same way);
    ``handler`` may be a plain or an async callable. ``synced`` is set after the first list.
    """
    informer.add_handler(  # the informer awaits what an async ``handler`` returns
        on_add=lambda obj: handler("ADDED", obj),
        on_update=lambda old, new: handler("MODIFIED", new),
        on_delete=lambda obj: handler("DELETED", obj),
    )
    if synced is not None:
        informer.add_handler(on_sync=lambda objs: synced.set())


def _check_status(status: int, body: bytes) -> None:
    if not 200 <= status < 300:
        raise status_error(status, body)


_QUERY_NAMES = {
    "label_selector": "labelSelector",
    "field_selector": "fieldSelector",
    "resource_version": "resourceVersion",
    "allow_watch_bookmarks": "allowWatchBookmarks",
    "timeout_seconds": "timeoutSeconds",
    "watch": "watch",
    "limit": "limit",
    "_continue": "continue",
}


def _query(kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """The list/watch query of a ``list_func`` call's kubernetes-asyncio keyword arguments."""
    query = []
    for key, value in kwargs.items():
        if key in _QUERY_NAMES and value is not None:
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            query.append((_QUERY_NAMES[key], text))
    return query


def path_list_func(api_client: Any, path: str) -> ListFunc:
    """A ``list_func`` for any collection path (custom resources, ``/apis/g/v/plural``) over a
    kubernetes-asyncio ``ApiClient``.

    With an informer ``namespace``, ``path`` may contain ``{namespace}``.
    """

    async def list_func(*args: str, **kwargs: Any) -> Any:
        url = path.format(namespace=args[0]) if args else path
        return await api_client.call_api(
            url,
            "GET",
            query_params=_query(kwargs),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=kwargs.get("_request_timeout"),
        )

    return list_func


def session_list_func(
    session: aiohttp.ClientSession, url: str, *, server_hostname: str | None = None
) -> ListFunc:
    """A ``list_func`` for the collection at ``url`` over a plain aiohttp session (which holds
    the credentials and TLS settings); ``url`` may contain ``{namespace}``."""

    async def list_func(*args: str, **kwargs: Any) -> Any:
        return await session.get(
            url.format(namespace=args[0]) if args else url,
            params=_query(kwargs),
            headers={"Accept": "application/json"},
            timeout=kwargs.get("_request_timeout"),
            server_hostname=server_hostname,
        )

    return list_func
