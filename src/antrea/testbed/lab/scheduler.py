"""The lab scheduler: binds pods without ``spec.nodeName`` to the least-loaded lab node.

It honours ``spec.nodeSelector`` against the lab nodes' labels (``kubernetes.io/hostname`` and
friends) and binds through the ``pods/binding`` subresource, as kube-scheduler does; an API
server without that subresource gets a merge patch of ``spec.nodeName`` instead.
"""

from __future__ import annotations

import asyncio

import structlog

from antrea.k8s.errors import KubeError
from antrea.k8s.informer import object_key
from antrea.testbed.lab.kube import KubeClient, Obj
from antrea.testbed.lab.nodes import node_object
from antrea.testbed.lab.state import NodeSpec

log = structlog.get_logger(__name__)


def pick_node(pod: Obj, nodes: list[NodeSpec], load: dict[str, int]) -> NodeSpec | None:
    """Least-loaded node whose labels satisfy the pod's nodeSelector (ties: lowest index)."""
    selector: dict[str, str] = (pod.get("spec") or {}).get("nodeSelector") or {}
    fits = [
        n
        for n in nodes
        if all(node_object(n)["metadata"]["labels"].get(k) == v for k, v in selector.items())
    ]
    if not fits:
        return None
    return min(fits, key=lambda n: (load.get(n.name, 0), n.index))


class Scheduler:
    def __init__(self, *, client: KubeClient, nodes: list[NodeSpec]) -> None:
        self.client = client
        self.nodes = nodes
        self.bound: dict[str, str] = {}  # pod key -> node
        self._pending: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def observe(self, kind: str, pod: Obj) -> None:
        key = object_key(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        if kind == "DELETED":
            self.bound.pop(key, None)
            return
        if node:
            self.bound[key] = node
            return
        if (pod.get("metadata") or {}).get("deletionTimestamp") or key in self._pending:
            return
        name = (pod.get("spec") or {}).get("schedulerName") or "default-scheduler"
        if name != "default-scheduler":
            return
        self._pending.add(key)
        task = asyncio.create_task(self._bind(key, pod))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def load(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.bound.values():
            counts[node] = counts.get(node, 0) + 1
        return counts

    async def _bind(self, key: str, pod: Obj) -> None:
        try:
            node = pick_node(pod, self.nodes, self.load())
            if node is None:
                log.warning("pod_unschedulable", pod=key)
                return
            self.bound[key] = node.name
            md = pod["metadata"]
            path = f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}"
            binding = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {
                    "name": md["name"],
                    "namespace": md["namespace"],
                    "uid": md.get("uid"),
                },
                "target": {"apiVersion": "v1", "kind": "Node", "name": node.name},
            }
            try:
                await self.client.create(path + "/binding", binding)
            except KubeError as exc:
                if exc.status not in (404, 405):
                    raise
                await self.client.merge_patch(path, {"spec": {"nodeName": node.name}})
            log.info("pod_bound", pod=key, node=node.name)
        except Exception as exc:
            self.bound.pop(key, None)
            log.warning("pod_bind_failed", pod=key, error=str(exc))
        finally:
            self._pending.discard(key)

    async def shutdown(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
