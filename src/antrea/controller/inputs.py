"""The controller's inputs: Pods, Namespaces, Nodes and NetworkPolicies, fed to the compiler.

Each resource has a reflector: LIST, then WATCH from the list's resourceVersion with bookmarks;
a watch that ends is resumed from the last seen resourceVersion; ``410 Gone`` or a broken
stream triggers a re-LIST whose result is *diffed* against the local cache (adds, updates of
changed resourceVersions, deletes of vanished keys), so a re-list neither loses nor duplicates
state. Events of all reflectors go through one FIFO consumed by a single task, which calls the
synchronous compiler and times each call (``..._processing_duration_seconds``). `Inputs.synced`
is set once every reflector has listed and everything listed has been processed: the snapshot an
agent gets before that would be incomplete, so the server refuses streams until then.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from antrea.controller.metrics import ControllerMetrics

log = structlog.get_logger(__name__)

JSON = dict[str, Any]

WATCH_TIMEOUT_SECONDS = 290


@dataclass(frozen=True)
class Resource:
    name: str  # "pod", "namespace", ...: compiler methods are add_<name>, update_<name>, ...
    path: str


RESOURCES = (
    Resource("namespace", "/api/v1/namespaces"),
    Resource("node", "/api/v1/nodes"),
    Resource("pod", "/api/v1/pods"),
    Resource("network_policy", "/apis/networking.k8s.io/v1/networkpolicies"),
)


class Gone(Exception):
    """410: the resourceVersion is too old; re-list."""


def _key(obj: JSON) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _rv(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


Emit = Callable[[str, JSON | None, JSON | None], None]


class Reflector:
    """List + watch one resource into a cache, emitting (resource, old, new) for every change."""

    def __init__(
        self, api_client: Any, resource: Resource, emit: Emit, *, backoff_max: float = 10.0
    ) -> None:
        self.api_client = api_client
        self.resource = resource
        self.emit = emit
        self.backoff_max = backoff_max
        self.cache: dict[str, JSON] = {}
        self.synced = asyncio.Event()
        self.rv = ""
        self.relists = 0

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self._list()
                self.synced.set()
                backoff = 0.5
                while True:
                    await self._watch()
            except Gone:
                log.info("watch_expired_relisting", resource=self.resource.name)
                self.relists += 1
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reflector_failed", resource=self.resource.name, error=repr(exc))
                self.relists += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)

    async def _request(self, query: list[tuple[str, str]], timeout: float | None) -> Any:
        return await self.api_client.call_api(
            self.resource.path,
            "GET",
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )

    async def _list(self) -> None:
        resp = await self._request([], 60)
        try:
            if resp.status != 200:
                raise RuntimeError(f"list {self.resource.path}: HTTP {resp.status}")
            body = json.loads(await resp.read())
        finally:
            resp.release()
        items = body.get("items") or []
        fresh = {_key(o): o for o in items}
        for k, old in list(self.cache.items()):
            if k not in fresh:
                del self.cache[k]
                self.emit(self.resource.name, old, None)
        for k, new in fresh.items():
            prev = self.cache.get(k)
            if prev is not None and _rv(prev) == _rv(new):
                continue
            self.cache[k] = new
            self.emit(self.resource.name, prev, new)
        self.rv = str((body.get("metadata") or {}).get("resourceVersion", ""))
        log.debug("resource_listed", resource=self.resource.name, items=len(items), rv=self.rv)

    async def _watch(self) -> None:
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(WATCH_TIMEOUT_SECONDS)),
        ]
        if self.rv:
            query.append(("resourceVersion", self.rv))
        resp = await self._request(query, WATCH_TIMEOUT_SECONDS + 30)
        try:
            if resp.status == 410:
                raise Gone()
            if resp.status != 200:
                raise RuntimeError(f"watch {self.resource.path}: HTTP {resp.status}")
            buf = b""
            while chunk := await resp.content.readany():
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._on_event(json.loads(line))
        finally:
            resp.release()

    def _on_event(self, ev: JSON) -> None:
        etype, obj = ev.get("type"), ev.get("object") or {}
        if etype == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise RuntimeError(f"watch error: {obj.get('message')}")
        rv = _rv(obj)
        if rv:
            self.rv = rv
        if etype == "BOOKMARK":
            return
        k = _key(obj)
        old = self.cache.get(k)
        if etype == "DELETED":
            if old is not None:
                del self.cache[k]
                self.emit(self.resource.name, old, None)
            return
        if old is not None and _rv(old) == rv:
            return
        self.cache[k] = obj
        self.emit(self.resource.name, old, obj)


class Inputs:
    """All reflectors, one ordered event queue, one consumer calling the compiler."""

    def __init__(
        self,
        compiler: Any,
        api_client: Any,
        metrics: ControllerMetrics | None = None,
        resources: tuple[Resource, ...] = RESOURCES,
    ) -> None:
        self.compiler = compiler
        self.api_client = api_client
        self.metrics = metrics
        self.queue: asyncio.Queue[tuple[str, JSON | None, JSON | None] | asyncio.Event] = (
            asyncio.Queue()
        )
        # only what the compiler consumes (it may not care about Nodes, for instance)
        self.reflectors = [
            Reflector(api_client, r, self._enqueue)
            for r in resources
            if hasattr(compiler, f"add_{r.name}")
        ]
        self.synced = asyncio.Event()
        self.processed = 0
        self.errors = 0

    def queue_length(self) -> int:
        return self.queue.qsize()

    def _enqueue(self, resource: str, old: JSON | None, new: JSON | None) -> None:
        self.queue.put_nowait((resource, old, new))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._consume())
            for r in self.reflectors:
                tg.create_task(r.run())
            await asyncio.gather(*(r.synced.wait() for r in self.reflectors))
            marker = asyncio.Event()
            self.queue.put_nowait(marker)
            await marker.wait()
            self.synced.set()
            log.info("inputs_synced", events=self.processed)

    async def _consume(self) -> None:
        """Apply events in order; what queued up meanwhile is applied as one compiler batch."""
        batch = getattr(self.compiler, "batch", None)
        while True:
            items = [await self.queue.get()]
            while not self.queue.empty() and len(items) < 10_000:
                items.append(self.queue.get_nowait())
            if len(items) == 1 or batch is None:
                self._apply_all(items)
                continue
            start = time.perf_counter()
            with batch():
                self._apply_all(items)
            if self.metrics is not None:
                self.metrics.batch.observe(time.perf_counter() - start)
            await asyncio.sleep(0)  # let the streams write between large batches

    def _apply_all(self, items: list[tuple[str, JSON | None, JSON | None] | asyncio.Event]) -> None:
        for item in items:
            if isinstance(item, asyncio.Event):
                item.set()
            else:
                self.apply(*item)

    def apply(self, resource: str, old: JSON | None, new: JSON | None) -> None:
        """Feed one change to the compiler (add/update/delete by what is present)."""
        c = self.compiler
        start = time.perf_counter()
        try:
            if old is None and new is not None:
                getattr(c, f"add_{resource}")(new)
            elif new is None and old is not None:
                getattr(c, f"delete_{resource}")(old)
            elif old is not None and new is not None:
                update = getattr(c, f"update_{resource}", None)
                if update is not None:  # (nodes: only their existence matters)
                    update(old, new)
        except Exception:
            self.errors += 1
            log.exception("compiler_event_failed", resource=resource, key=_key(new or old or {}))
        finally:
            self.processed += 1
            if self.metrics is not None:
                self.metrics.processing.labels(resource).observe(time.perf_counter() - start)
