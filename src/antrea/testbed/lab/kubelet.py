"""The lab kubelet: turns pods bound to one lab node into namespaces, CNI attachments, servers.

For a pod bound to its node it: creates the sandbox (network namespace, loopback up), waits
for the node network (a CNI config in the node's conf dir, like a real kubelet's "network
plugin not ready"), runs CNI ADD, starts the pod workload and reports ``status`` (podIP(s),
hostIP(s), phase Running, conditions, containerStatuses). When a pod is deleted (object gone,
or ``deletionTimestamp`` set) it stops the workload, runs CNI DEL, removes the namespace and
then deletes the object with ``gracePeriodSeconds=0`` as a kubelet does.

Each pod is handled by at most one task at a time, which always works on the newest version
of the object, so a quick create/delete/create sequence cannot interleave.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import structlog

from antrea.k8s.errors import KubeError
from antrea.k8s.informer import object_key
from antrea.testbed.lab import netns, workload
from antrea.testbed.lab.cniruntime import (
    Attachment,
    CniError,
    CniRuntime,
    NoNetworkConfig,
    first_ipv4,
)
from antrea.testbed.lab.kube import KubeClient, Obj
from antrea.testbed.lab.sandbox import Sandbox, load_dir
from antrea.testbed.lab.state import LabSpec, NodeSpec
from antrea.util.ethtool import disable_tx_checksum

log = structlog.get_logger(__name__)

RETRY_SECONDS = 1.0
DEL_TRIES = 3
REFERENCE_CNI_DIR = "/usr/lib/cni"


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def attachment(sb: Sandbox) -> Attachment:
    return Attachment(
        container_id=sb.container_id,
        netns=sb.netns_path,
        ifname="eth0",
        args=[
            ("IgnoreUnknown", "1"),
            ("K8S_POD_NAMESPACE", sb.namespace),
            ("K8S_POD_NAME", sb.name),
            ("K8S_POD_INFRA_CONTAINER_ID", sb.container_id),
            ("K8S_POD_UID", sb.uid),
        ],
    )


class Kubelet:
    def __init__(self, *, spec: LabSpec, node: NodeSpec, client: KubeClient) -> None:
        self.spec = spec
        self.node = node
        self.client = client
        self.cni = CniRuntime(
            node_netns=node.netns,
            conf_dir=node.cni_conf_dir,
            bin_dirs=[node.cni_bin_dir, Path(REFERENCE_CNI_DIR)],
            cache_dir=node.cni_cache_dir,
        )
        self.sandboxes: dict[str, Sandbox] = {}
        self.workloads: dict[str, workload.Workload] = {}
        self._latest: dict[str, Obj | None] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._retry: dict[str, asyncio.TimerHandle] = {}
        self._last_error: dict[str, str] = {}
        for sb in load_dir(node.sandbox_dir):  # after a supervisor restart
            self.sandboxes[sb.key] = sb

    # --- event intake ---------------------------------------------------------------------
    def observe(self, kind: str, pod: Obj) -> None:
        """Record the newest state of a pod bound to this node and make sure a worker runs."""
        key = object_key(pod)
        self._latest[key] = None if kind == "DELETED" else pod
        self._kick(key)

    def forget_missing(self, present: set[str]) -> None:
        """After the initial list: sandboxes whose pod no longer exists are torn down."""
        for key in list(self.sandboxes):
            if key not in present and key not in self._latest:
                self._latest[key] = None
                self._kick(key)

    def _kick(self, key: str) -> None:
        handle = self._retry.pop(key, None)
        if handle is not None:
            handle.cancel()
        task = self._workers.get(key)
        if task is None or task.done():
            self._workers[key] = asyncio.create_task(self._work(key), name=f"kubelet:{key}")

    async def _work(self, key: str) -> None:
        while key in self._latest:
            pod = self._latest.pop(key)
            try:
                await self._reconcile(key, pod)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one pod's failure must not stop the node
                await self._failed(key, pod, exc)
                if key not in self._latest:
                    loop = asyncio.get_running_loop()
                    self._retry[key] = loop.call_later(RETRY_SECONDS, self._requeue, key, pod)
        self._workers.pop(key, None)

    async def _failed(self, key: str, pod: Obj | None, exc: Exception) -> None:
        """Log a sync failure and, once per distinct message, record a Warning Event.

        The Event is what `kubectl describe pod` shows, as for a real kubelet's
        ``FailedCreatePodSandBox``; retries with the same error stay quiet.
        """
        message = str(exc)
        if self._last_error.get(key) == message:
            return
        self._last_error[key] = message
        log.warning("pod_sync_failed", node=self.node.name, pod=key, error=message)
        if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp"):
            return
        await self._event(pod, "Warning", "FailedCreatePodSandBox", message)

    async def _event(self, pod: Obj, type_: str, reason: str, message: str) -> None:
        """Record an Event about ``pod`` as a kubelet does (source kubelet/<node>)."""
        md = pod["metadata"]
        ts = now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            # Named like client-go's recorder does: <object>.<unique hex>.
            "metadata": {"name": f"{md['name']}.{time.time_ns():x}", "namespace": md["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": md["name"],
                "namespace": md["namespace"],
                "uid": md.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": "kubelet", "host": self.node.name},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node.name,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }
        try:
            await self.client.create(f"/api/v1/namespaces/{md['namespace']}/events", event)
        except Exception as err:
            log.debug("event_not_recorded", pod=f"{md['namespace']}/{md['name']}", error=str(err))

    def _requeue(self, key: str, pod: Obj | None) -> None:
        self._retry.pop(key, None)
        if key not in self._latest:
            self._latest[key] = pod
            self._kick(key)

    async def shutdown(self) -> None:
        """Stop workers and serving (keeps sandboxes: `down` or a restart deals with them)."""
        for handle in self._retry.values():
            handle.cancel()
        for task in list(self._workers.values()):
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        for wl in self.workloads.values():
            await wl.stop()

    # --- reconcile ----------------------------------------------------------------------
    async def _reconcile(self, key: str, pod: Obj | None) -> None:
        sb = self.sandboxes.get(key)
        md = (pod or {}).get("metadata") or {}
        if pod is None or md.get("deletionTimestamp"):
            if sb is not None:
                await self._teardown(sb)
            if pod is not None:
                await self.client.delete(_pod_path(pod), grace_seconds=0, uid=md.get("uid"))
            self._last_error.pop(key, None)
            return
        if sb is not None and sb.uid != md.get("uid"):
            await self._teardown(sb)  # same name, new pod
            sb = None
        phase = (pod.get("status") or {}).get("phase")
        if sb is None and phase in ("Succeeded", "Failed"):
            return
        if sb is None:
            sb = await self._setup(pod)
        elif key not in self.workloads:
            await self._start_workload(sb, pod)
        if not _status_matches(pod, sb, self.node.underlay_ip):
            await self._report(pod, sb)
        self._last_error.pop(key, None)

    async def _setup(self, pod: Obj) -> Sandbox:
        md = pod["metadata"]
        host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
        if not host_network:
            try:
                self.cni.load_network_ok()
            except NoNetworkConfig as exc:
                raise RuntimeError(f"network not ready: {exc}") from None
        sb = Sandbox.new(
            lab=self.spec.name, namespace=md["namespace"], name=md["name"], uid=md["uid"],
            node=self.node.name,
        )  # fmt: skip
        if host_network:
            sb.netns, sb.host_network, sb.ip = self.node.netns, True, self.node.underlay_ip
            sb.save(self.node.sandbox_dir)
        else:
            sb.save(self.node.sandbox_dir)  # first, so a crash cannot leak the namespace
            try:
                await asyncio.to_thread(netns.add, sb.netns)
                await asyncio.to_thread(
                    netns.run, ["ip", "-n", sb.netns, "link", "set", "lo", "up"]
                )
                result = await self.cni.add(attachment(sb))
                ip = first_ipv4(result)
                if not ip:
                    raise CniError("-", "ADD", code=999, msg=f"no IPv4 address in result {result}")
                sb.ip = ip
                sb.save(self.node.sandbox_dir)
                if self.spec.cni == "antrea":
                    await netns.run_in(sb.netns_path, lambda: _full_checksums("eth0"))
            except BaseException:
                await self._teardown(sb)
                raise
        self.sandboxes[sb.key] = sb
        await self._start_workload(sb, pod)
        log.info("pod_started", node=self.node.name, pod=sb.key, ip=sb.ip)
        for c in (pod.get("spec") or {}).get("containers") or []:
            await self._event(pod, "Normal", "Started", f"Started container {c.get('name')}")
        return sb

    async def _start_workload(self, sb: Sandbox, pod: Obj) -> None:
        wl = workload.Workload(pod=sb.key, netns_path=sb.netns_path)
        await wl.start(workload.ports_of(pod))
        self.workloads[sb.key] = wl

    async def _teardown(self, sb: Sandbox) -> None:
        wl = self.workloads.pop(sb.key, None)
        if wl is not None:
            await wl.stop()
        if not sb.host_network:
            for attempt in range(DEL_TRIES):
                try:
                    await self.cni.delete(attachment(sb))
                    break
                except (CniError, NoNetworkConfig, OSError, ValueError) as exc:
                    log.warning("cni_del_failed", pod=sb.key, attempt=attempt + 1, error=str(exc))
                    await asyncio.sleep(RETRY_SECONDS)
            await asyncio.to_thread(netns.delete, sb.netns)
        sb.remove(self.node.sandbox_dir)
        if self.sandboxes.get(sb.key) is sb:
            del self.sandboxes[sb.key]
        log.info("pod_stopped", node=self.node.name, pod=sb.key)

    async def check(self, key: str) -> None:
        """CNI CHECK for a running pod (raises CniError)."""
        sb = self.sandboxes.get(key)
        if sb is None or sb.host_network:
            raise CniError(
                "-", "CHECK", code=999, msg=f"no CNI sandbox for {key} on {self.node.name}"
            )
        await self.cni.check(attachment(sb))

    async def _report(self, pod: Obj, sb: Sandbox) -> None:
        started = (pod.get("status") or {}).get("startTime") or now()
        ts = now()
        containers = (pod.get("spec") or {}).get("containers") or []
        conditions = [
            {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": ts}
            for t in (
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled",
            )
        ]
        status: dict[str, Any] = {
            "phase": "Running",
            "hostIP": self.node.underlay_ip,
            "hostIPs": [{"ip": self.node.underlay_ip}],
            "podIP": sb.ip,
            "podIPs": [{"ip": sb.ip}],
            "startTime": started,
            "conditions": conditions,
            "containerStatuses": [
                {
                    "name": c.get("name", "main"),
                    "image": c.get("image", "lab"),
                    "imageID": "",
                    "containerID": f"lab://{sb.container_id}",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": started}},
                }
                for c in containers
            ],
        }
        try:
            await self.client.merge_patch(_pod_path(pod) + "/status", {"status": status})
        except KubeError as exc:
            if exc.status != 404:
                raise


def _full_checksums(ifname: str) -> None:
    """Lab-only safety net for the userspace datapath (see antrea.util.ethtool).

    The agent is expected to do this itself (``disableTXChecksumOffload``); doing it again
    here is harmless and keeps the lab usable with an agent that does not.
    """
    try:
        disable_tx_checksum(ifname)
    except OSError as exc:
        log.warning("tx_checksum_not_disabled", ifname=ifname, error=str(exc))


def _pod_path(pod: Obj) -> str:
    md = pod["metadata"]
    return f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}"


def _status_matches(pod: Obj, sb: Sandbox, host_ip: str) -> bool:
    st = pod.get("status") or {}
    return bool(
        st.get("phase") == "Running"
        and st.get("podIP") == sb.ip
        and st.get("hostIP") == host_ip
        and any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in st.get("conditions") or []
        )
    )
