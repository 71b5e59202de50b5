"""Node objects for the lab nodes, and the kubelet's heartbeat that keeps them Ready.

The objects are what a real kubelet would register, so they are valid for a real
kube-apiserver too: labels ``kubernetes.io/hostname``, ``kubernetes.io/os``,
``kubernetes.io/arch``, ``spec.podCIDR(s)`` (what the node IPAM controller would assign), and in
``status`` the InternalIP + Hostname addresses, capacity, nodeInfo and a Ready condition. Ready
is False with reason ``NetworkPluginNotReady`` until the node's CNI conf dir has a config.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import platform
from typing import Any

import structlog

from antrea.k8s.errors import KubeError
from antrea.testbed.lab.cniruntime import NoNetworkConfig, load_network
from antrea.testbed.lab.external import record_namespaces
from antrea.testbed.lab.kube import KubeClient, Obj
from antrea.testbed.lab.kubelet import now
from antrea.testbed.lab.state import NodeSpec

log = structlog.get_logger(__name__)

STATUS_SECONDS = 60.0  # a real kubelet: 5 min when nothing changes
LEASE_SECONDS = 10.0  # a real kubelet renews its Lease every 10 s (duration 40 s)
LEASE_DURATION = 40
LEASE_NAMESPACE = "kube-node-lease"
READINESS_POLL_SECONDS = 1.0


def node_object(node: NodeSpec) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": {
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "antrea.io/lab-node": "true",
            },
        },
        "spec": {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]},
    }


def network_ready(node: NodeSpec) -> bool:
    try:
        load_network(node.cni_conf_dir)
    except NoNetworkConfig:
        return False
    return True


def node_status(node: NodeSpec, *, ready: bool, transition: str) -> dict[str, Any]:
    ts = now()
    cond = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": "KubeletReady" if ready else "NetworkPluginNotReady",
        "message": "kubelet is posting ready status"
        if ready
        else "container runtime network not ready: no CNI configuration file",
        "lastHeartbeatTime": ts,
        "lastTransitionTime": transition,
    }
    resources = {"cpu": "2", "memory": "4Gi", "pods": "110"}
    return {
        "addresses": [
            {"type": "InternalIP", "address": node.underlay_ip},
            {"type": "Hostname", "address": node.name},
        ],
        "conditions": [cond],
        "capacity": resources,
        "allocatable": resources,
        "nodeInfo": {
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": platform.release(),
            "osImage": "antrea lab node",
            "containerRuntimeVersion": "lab://0.1",
            "kubeletVersion": "v1.32.0-lab",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


async def register(client: KubeClient, node: NodeSpec) -> None:
    """Create the Node (or bring an existing one's labels and podCIDR in line)."""
    body = node_object(node)
    try:
        await client.create("/api/v1/nodes", body)
    except KubeError as exc:
        if exc.status != 409:
            raise
        await client.merge_patch(f"/api/v1/nodes/{node.name}", {"metadata": body["metadata"]})
    await post_status(client, node, ready=network_ready(node), transition=now())
    log.info("node_registered", node=node.name, ip=node.underlay_ip, pod_cidr=node.pod_cidr)


async def post_status(client: KubeClient, node: NodeSpec, *, ready: bool, transition: str) -> None:
    status = node_status(node, ready=ready, transition=transition)
    await client.merge_patch(f"/api/v1/nodes/{node.name}/status", {"status": status})


def micro_now() -> str:
    """A MicroTime, as Lease renewTime wants it."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def renew_lease(client: KubeClient, node: NodeSpec) -> None:
    """The node heartbeat a real kubelet sends: its Lease in kube-node-lease."""
    path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
    spec = {
        "holderIdentity": node.name,
        "leaseDurationSeconds": LEASE_DURATION,
        "renewTime": micro_now(),
    }
    try:
        await client.merge_patch(f"{path}/{node.name}", {"spec": spec})
        return
    except KubeError as exc:
        if exc.status != 404:
            raise
    try:
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LEASE_NAMESPACE}}
        await client.create("/api/v1/namespaces", ns)
        record_namespaces(node.path.parent.parent, [LEASE_NAMESPACE])
    except KubeError as exc:
        if exc.status not in (403, 409):  # 403: a node identity may not create namespaces
            raise
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node.name, "namespace": LEASE_NAMESPACE},
        "spec": spec,
    }
    await client.create(path, lease)


async def heartbeat(client: KubeClient, node: NodeSpec) -> None:
    """Renew the node Lease every LEASE_SECONDS; post status every STATUS_SECONDS and at once
    when network readiness flips (status updates are watch events for every Node watcher, so
    they are kept rare, as a kubelet does)."""
    loop = asyncio.get_running_loop()
    ready = network_ready(node)
    transition = now()
    last_lease = -LEASE_SECONDS  # renew at once
    last_status = loop.time()  # `register` has just posted it
    while True:
        current = network_ready(node)
        try:
            if loop.time() - last_lease >= LEASE_SECONDS:
                await renew_lease(client, node)
                last_lease = loop.time()
            if current != ready or loop.time() - last_status >= STATUS_SECONDS:
                if current != ready:
                    ready, transition = current, now()
                await post_status(client, node, ready=ready, transition=transition)
                last_status = loop.time()
        except Exception as exc:  # API or connection trouble: retry on the next tick
            log.warning("node_heartbeat_failed", node=node.name, error=str(exc))
        await asyncio.sleep(READINESS_POLL_SECONDS)
