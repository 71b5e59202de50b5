"""Node objects for the lab nodes, and the kubelet's heartbeat that keeps them Ready.

The objects are what a real kubelet would register, so they are valid for a real
kube-apiserver too: labels ``kubernetes.io/hostname``, ``kubernetes.io/os``,
``kubernetes.io/arch``, ``spec.podCIDR(s)`` (what the node IPAM controller would assign), and in
``status`` the InternalIP + Hostname addresses, capacity, nodeInfo and a Ready condition. Ready
is False with reason ``NetworkPluginNotReady`` until the node's CNI conf dir has a config.
"""

from __future__ import annotations

import asyncio
import platform
from typing import Any

import structlog

from antrea.lab.cniruntime import NoNetworkConfig, load_network
from antrea.lab.kube import ApiError, KubeClient, Obj
from antrea.lab.kubelet import now
from antrea.lab.state import NodeSpec

log = structlog.get_logger(__name__)

HEARTBEAT_SECONDS = 20.0
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
    except ApiError as exc:
        if exc.status != 409:
            raise
        await client.merge_patch(f"/api/v1/nodes/{node.name}", {"metadata": body["metadata"]})
    await post_status(client, node, ready=network_ready(node), transition=now())
    log.info("node_registered", node=node.name, ip=node.underlay_ip, pod_cidr=node.pod_cidr)


async def post_status(client: KubeClient, node: NodeSpec, *, ready: bool, transition: str) -> None:
    status = node_status(node, ready=ready, transition=transition)
    await client.merge_patch(f"/api/v1/nodes/{node.name}/status", {"status": status})


async def heartbeat(client: KubeClient, node: NodeSpec) -> None:
    """Post status every HEARTBEAT_SECONDS, and at once when network readiness flips."""
    ready = network_ready(node)
    transition = now()
    last = asyncio.get_running_loop().time()
    while True:
        await asyncio.sleep(READINESS_POLL_SECONDS)
        current = network_ready(node)
        due = asyncio.get_running_loop().time() - last >= HEARTBEAT_SECONDS
        if current == ready and not due:
            continue
        if current != ready:
            ready, transition = current, now()
        try:
            await post_status(client, node, ready=ready, transition=transition)
            last = asyncio.get_running_loop().time()
        except (TimeoutError, ApiError, OSError) as exc:
            log.warning("node_heartbeat_failed", node=node.name, error=str(exc))
        except Exception as exc:  # aiohttp client errors
            log.warning("node_heartbeat_failed", node=node.name, error=str(exc))
