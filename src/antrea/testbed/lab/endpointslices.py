"""The lab's EndpointSlice controller, as kube-controller-manager runs it.

For every Service with a selector it keeps ``discovery.k8s.io/v1`` EndpointSlices of the pods the
selector picks that have an IP: one slice per distinct set of resolved ports (a named
``targetPort`` may resolve to a different number in each pod, as upstream groups them), endpoint
``conditions`` ``ready`` / ``serving`` / ``terminating`` from the pod's Ready condition and
deletion timestamp, ``nodeName`` and ``targetRef``. Slices carry the labels
``kubernetes.io/service-name`` and ``endpointslice.kubernetes.io/managed-by`` and an owner
reference to the Service; slices of ours that are no longer wanted are deleted. Services without
a selector (``default/kubernetes``) are left alone.

`desired_slices` is the pure part; `EndpointSliceController` feeds it from the pod and Service
watches and writes the differences (level-triggered, one reconcile per dirty Service).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import structlog

from antrea.k8s.errors import KubeError
from antrea.k8s.informer import object_key
from antrea.testbed.lab.kube import KubeClient, Obj

log = structlog.get_logger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _resolve(port: dict[str, Any], pod: Obj) -> int | None:
    """The number a Service port's targetPort means in this pod (None: the pod lacks it)."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    proto = port.get("protocol", "TCP")
    for c in (pod.get("spec") or {}).get("containers") or ():
        for cp in c.get("ports") or ():
            if cp.get("name") == target and cp.get("protocol", "TCP") == proto:
                n = cp.get("containerPort")
                return n if isinstance(n, int) else None
    return None


def _ready(pod: Obj) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _endpoint(pod: Obj) -> Obj:
    md = pod["metadata"]
    terminating = bool(md.get("deletionTimestamp"))
    ready = _ready(pod)
    ep: Obj = {
        "addresses": [pod["status"]["podIP"]],
        "conditions": {
            "ready": ready and not terminating,
            "serving": ready,
            "terminating": terminating,
        },
        "targetRef": {
            "kind": "Pod",
            "namespace": md["namespace"],
            "name": md["name"],
            "uid": md.get("uid", ""),
        },
    }
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        ep["nodeName"] = node
    return ep


def desired_slices(service: Obj, pods: list[Obj]) -> dict[str, Obj]:
    """Name -> EndpointSlice for the Service (empty when it has no selector)."""
    md = service["metadata"]
    spec = service.get("spec") or {}
    selector = spec.get("selector") or {}
    if not selector:
        return {}
    svc_ports = [p for p in spec.get("ports") or () if isinstance(p, dict)]
    groups: dict[tuple[tuple[str, int, str], ...], list[Obj]] = {}
    for pod in sorted(pods, key=object_key):
        pmd = pod.get("metadata") or {}
        if pmd.get("namespace") != md["namespace"]:
            continue
        if not _selects(selector, pmd.get("labels") or {}):
            continue
        if not (pod.get("status") or {}).get("podIP"):
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        resolved = []
        for p in svc_ports:
            n = _resolve(p, pod)
            if n is not None:
                resolved.append((str(p.get("name") or ""), n, str(p.get("protocol", "TCP"))))
        groups.setdefault(tuple(resolved), []).append(_endpoint(pod))
    if not groups:
        groups[()] = []  # a Service without endpoints still has (an empty) slice, as upstream
    out: dict[str, Obj] = {}
    for ports, endpoints in groups.items():
        digest = hashlib.sha256(repr(ports).encode()).hexdigest()[:5]
        name = f"{md['name']}-{digest}"
        out[name] = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "namespace": md["namespace"],
                "labels": {SERVICE_NAME_LABEL: md["name"], MANAGED_BY_LABEL: CONTROLLER_NAME},
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "name": md["name"],
                        "uid": md.get("uid", ""),
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": n, "port": num, "protocol": proto} for n, num, proto in ports],
        }
    return out


def _content(s: Obj) -> tuple[Any, ...]:
    return (s.get("endpoints") or [], s.get("ports") or [], s["metadata"].get("labels") or {})


class EndpointSliceController:
    def __init__(self, *, client: KubeClient) -> None:
        self.client = client
        self.services: dict[str, Obj] = {}
        self.pods: dict[str, Obj] = {}
        self.slices: dict[str, dict[str, Obj]] = {}  # service key -> name -> slice (ours)
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()

    def _mark(self, key: str) -> None:
        self._dirty.add(key)
        self._wake.set()

    async def on_service(self, kind: str, svc: Obj) -> None:
        key = object_key(svc)
        if kind == "DELETED":
            self.services.pop(key, None)
        else:
            self.services[key] = svc
        self._mark(key)

    async def on_pod(self, kind: str, pod: Obj) -> None:
        key = object_key(pod)
        old = self.pods.pop(key, None)
        if kind != "DELETED":
            self.pods[key] = pod
        ns = (pod.get("metadata") or {}).get("namespace")
        for skey, svc in self.services.items():
            if svc["metadata"].get("namespace") != ns:
                continue
            selector = (svc.get("spec") or {}).get("selector") or {}
            if not selector:
                continue
            for p in (old, pod):
                if p is not None and _selects(
                    selector, (p.get("metadata") or {}).get("labels") or {}
                ):
                    self._mark(skey)
                    break

    async def on_slice(self, kind: str, s: Obj) -> None:
        labels = s["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != CONTROLLER_NAME:
            return
        skey = f"{s['metadata']['namespace']}/{labels.get(SERVICE_NAME_LABEL, '')}"
        mine = self.slices.setdefault(skey, {})
        if kind == "DELETED":
            mine.pop(s["metadata"]["name"], None)
        else:
            mine[s["metadata"]["name"]] = s
        self._mark(skey)

    async def run(self) -> None:
        """Reconcile dirty Services until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0.02)  # let a burst of pod events settle into one write
            dirty, self._dirty = self._dirty, set()
            for key in sorted(dirty):
                try:
                    await self.reconcile(key)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("endpointslice_sync_failed", service=key, error=str(exc))
                    self._dirty.add(key)
                    await asyncio.sleep(0.5)
                    self._wake.set()

    async def reconcile(self, key: str) -> None:
        ns = key.split("/", 1)[0]
        svc = self.services.get(key)
        want = desired_slices(svc, list(self.pods.values())) if svc is not None else {}
        have = self.slices.get(key, {})
        base = f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
        for name, obj in want.items():
            cur = have.get(name)
            if cur is None:
                try:
                    await self.client.create(base, obj)
                except KubeError as exc:
                    if exc.status != 409:
                        raise
                    await self.client.merge_patch(f"{base}/{name}", _patch_of(obj))
            elif _content(cur) != _content(obj):
                await self.client.merge_patch(f"{base}/{name}", _patch_of(obj))
        for name in [n for n in have if n not in want]:
            try:
                await self.client.delete(f"{base}/{name}")
            except KubeError as exc:
                if exc.status != 404:
                    raise


def _patch_of(obj: Obj) -> Obj:
    return {
        "metadata": {"labels": obj["metadata"]["labels"]},
        "endpoints": obj["endpoints"],
        "ports": obj["ports"],
    }
