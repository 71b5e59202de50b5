"""The controller's inputs: Pods, Namespaces, Nodes and NetworkPolicies, fed to the compiler.

Each resource has an `antrea.k8s.informer.Informer`: LIST, then WATCH from the list's
resourceVersion with bookmarks, resumed after a broken stream, and a re-LIST *diffed* against
its cache on ``410 Gone``, so the compiler sees each change once. Events of all informers go
through one FIFO consumed by a single task, which calls the synchronous compiler and times each
call (``..._processing_duration_seconds``); what queued up while the compiler was busy is
applied as one compiler batch. `Inputs.synced` is set once every informer has listed and
everything listed has been processed: a snapshot taken before that would be incomplete (and an
agent would delete flows for objects not yet computed), so the server refuses streams until then.
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass
from typing import Any

import structlog

from antrea.controller.metrics import ControllerMetrics
from antrea.k8s.informer import Informer, object_key, path_list_func, strip_managed_fields

log = structlog.get_logger(__name__)

JSON = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    name: str  # "pod", "namespace", ...: compiler methods are add_<name>, update_<name>, ...
    path: str


RESOURCES = (
    Resource("namespace", "/api/v1/namespaces"),
    Resource("node", "/api/v1/nodes"),
    Resource("pod", "/api/v1/pods"),
    Resource("network_policy", "/apis/networking.k8s.io/v1/networkpolicies"),
    # Antrea-native policies (crd.antrea.io, deploy/antrea.yml) and what they reference.
    Resource("tier", "/apis/crd.antrea.io/v1beta1/tiers"),
    Resource("cluster_group", "/apis/crd.antrea.io/v1beta1/clustergroups"),
    Resource("group", "/apis/crd.antrea.io/v1beta1/groups"),
    Resource("cluster_network_policy", "/apis/crd.antrea.io/v1beta1/clusternetworkpolicies"),
    Resource("antrea_network_policy", "/apis/crd.antrea.io/v1beta1/networkpolicies"),
)


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
        self.informers = [
            self._informer(r) for r in resources if hasattr(compiler, f"add_{r.name}")
        ]
        self.synced = asyncio.Event()
        self.processed = 0
        self.errors = 0

    def _informer(self, r: Resource) -> Informer:
        inf = Informer(
            path_list_func(self.api_client, r.path), name=r.name, transform=strip_managed_fields
        )
        name = r.name
        inf.add_handler(
            on_add=lambda new: self._enqueue(name, None, new),
            on_update=lambda old, new: self._enqueue(name, old, new),
            on_delete=lambda old: self._enqueue(name, old, None),
        )
        return inf

    def queue_length(self) -> int:
        return self.queue.qsize()

    def _enqueue(self, resource: str, old: JSON | None, new: JSON | None) -> None:
        self.queue.put_nowait((resource, old, new))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._consume())
            for inf in self.informers:
                tg.create_task(inf.run())
            await asyncio.gather(*(inf.has_synced.wait() for inf in self.informers))
            marker = asyncio.Event()
            self.queue.put_nowait(marker)
            await marker.wait()
            # The initial state is long-lived: move it out of the collector's way so later
            # full collections do not traverse it (GC pauses were the p99 of pod updates).
            gc.freeze()
            self.synced.set()
            log.info("inputs_synced", events=self.processed)

    async def _consume(self) -> None:
        """Apply events in order; what queued up meanwhile is applied as one compiler batch."""
        batch = getattr(self.compiler, "batch", None)
        while True:
            items = [await self.queue.get()]
            while not self.queue.empty() and len(items) < 10_000:
                items.append(self.queue.get_nowait())
            if batch is None:
                self._apply_all(items)
                continue
            # A single event is a batch too: one policy of thousands of rules allocates as
            # much as a burst of small ones (the batch pauses the collector for it).
            start = time.perf_counter()
            with batch():
                self._apply_all(items)
            if self.metrics is not None and len(items) > 1:
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
            log.exception(
                "compiler_event_failed", resource=resource, key=object_key(new or old or {})
            )
        finally:
            self.processed += 1
            if self.metrics is not None:
                self.metrics.processing.labels(resource).observe(time.perf_counter() - start)
