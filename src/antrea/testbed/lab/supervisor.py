"""The lab supervisor: one long-lived process per lab, started by `antrea lab up`.

It hosts the API endpoint (embedded server or forwarder), registers the Node objects and keeps
them Ready, and runs the scheduler and one kubelet per node, fed by a single pod watch. Pod
workloads are served from this process too. Like a DaemonSet, it keeps each node's
ovsdb-server, ovs-vswitchd and agent running: one that dies is started again with backoff
(`antrea.testbed.lab.daemons`); agents are first started by `antrea lab up`.

Readiness is signalled by writing ``<lab>/ready``; SIGTERM stops it cleanly (sandboxes stay:
`antrea lab down` removes namespaces wholesale, and a restarted supervisor adopts them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import structlog

from antrea.testbed.lab import apihost, daemons, nodes
from antrea.testbed.lab.endpointslices import EndpointSliceController
from antrea.testbed.lab.kube import KubeClient, Obj, list_watch
from antrea.testbed.lab.kubelet import Kubelet
from antrea.testbed.lab.podio import LabPodRuntime
from antrea.testbed.lab.scheduler import Scheduler
from antrea.testbed.lab.state import LabSpec

log = structlog.get_logger(__name__)


class Dispatcher:
    """Routes events of the one all-pods watch to the scheduler and the node kubelets."""

    def __init__(
        self,
        scheduler: Scheduler,
        kubelets: dict[str, Kubelet],
        endpointslices: EndpointSliceController | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.endpointslices = endpointslices
        self.kubelets = kubelets
        self.node_of: dict[str, str] = {}
        self.present: set[str] = set()

    async def __call__(self, kind: str, pod: Obj) -> None:
        md = pod.get("metadata") or {}
        key = f"{md.get('namespace')}/{md.get('name')}"
        node = (pod.get("spec") or {}).get("nodeName") or ""
        self.scheduler.observe(kind, pod)
        if self.endpointslices is not None:
            await self.endpointslices.on_pod(kind, pod)
        if kind == "DELETED":
            self.present.discard(key)
            node = node or self.node_of.pop(key, "")
        else:
            self.present.add(key)
            if node:
                self.node_of[key] = node
        kubelet = self.kubelets.get(node)
        if kubelet is not None:
            kubelet.observe(kind, pod)


def _guard(task: asyncio.Task[None]) -> None:
    """Long-lived tasks never end on their own: log loudly if one does."""
    if task.cancelled():
        return
    exc = task.exception()
    log.error("lab_task_ended", task=task.get_name(), error=repr(exc) if exc else None)


async def run(spec: LabSpec) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    pod_io = LabPodRuntime()  # kubectl logs/exec, once the kubelets exist
    if spec.external_kubeconfig:
        stop_api = await apihost.start_forwarder(spec)
    else:
        stop_api = await apihost.start_embedded(spec, pod_runtime=pod_io)
    spec.save()  # records the API port chosen
    tasks: list[asyncio.Task[None]] = []
    try:
        async with contextlib.AsyncExitStack() as clients:
            client = await clients.enter_async_context(KubeClient.from_kubeconfig(spec.kubeconfig))
            # Each node's kubelet and heartbeat act as the node (system:node:<n>, confined by
            # the Node authorizer) on the embedded server; the scheduler and the shared pod
            # watch are control plane (admin). On an external server: its credentials.
            node_client = {n.name: client for n in spec.nodes}
            if not spec.external_kubeconfig:
                for n in spec.nodes:
                    node_client[n.name] = await clients.enter_async_context(
                        KubeClient.from_kubeconfig(n.kubelet_kubeconfig)
                    )
            for node in spec.nodes:
                await nodes.register(node_client[node.name], node)
            kubelets = {
                n.name: Kubelet(spec=spec, node=n, client=node_client[n.name]) for n in spec.nodes
            }
            pod_io.kubelets = kubelets
            scheduler = Scheduler(client=client, nodes=spec.nodes)
            # A real cluster's kube-controller-manager keeps EndpointSlices; the embedded
            # server needs ours.
            eps = None if spec.external_kubeconfig else EndpointSliceController(client=client)
            dispatch = Dispatcher(scheduler, kubelets, eps)
            if eps is not None:
                tasks += [
                    asyncio.create_task(eps.run(), name="endpointslices"),
                    asyncio.create_task(
                        list_watch(client, "/api/v1/services", eps.on_service), name="services"
                    ),
                    asyncio.create_task(
                        list_watch(
                            client, "/apis/discovery.k8s.io/v1/endpointslices", eps.on_slice
                        ),
                        name="endpointslice-watch",
                    ),
                ]
            synced = asyncio.Event()
            watch = list_watch(client, "/api/v1/pods", dispatch, synced=synced)
            tasks.append(asyncio.create_task(watch, name="pods"))
            tasks.extend(
                asyncio.create_task(
                    nodes.heartbeat(node_client[n.name], n), name=f"heartbeat:{n.name}"
                )
                for n in spec.nodes
            )
            tasks.append(asyncio.create_task(daemons.supervise(spec), name="daemons"))
            for t in tasks:
                t.add_done_callback(_guard)
            await synced.wait()
            for kubelet in kubelets.values():
                kubelet.forget_missing(dispatch.present)
            spec.ready_file.write_text(f"{os.getpid()}\n")
            log.info(
                "lab_ready", lab=spec.name, nodes=len(spec.nodes), kubeconfig=str(spec.kubeconfig)
            )
            await stopping.wait()
            log.info("lab_supervisor_stopping", lab=spec.name)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await scheduler.shutdown()
            for kubelet in kubelets.values():
                await kubelet.shutdown()
    finally:
        for t in tasks:
            t.cancel()
        with contextlib.suppress(Exception):
            await stop_api()
