"""The upstream NetworkPolicy e2e model, built in a lab: namespaces x, y, z x pods a, b, c.

Namespaces carry ``ns=<name>`` (and ``kubernetes.io/metadata.name``, which a real API server
adds by itself); pods carry ``pod=<name>`` and serve TCP and UDP on 80 and 81, one container
per port and protocol with ports named ``serve-<port>-<proto>`` as upstream's model does. Pods
are spread over the nodes round-robin in (namespace, pod) order and pinned with
``spec.nodeName``, so a test knows which pairs cross nodes.

Used by `antrea lab demo`, the lab's e2e tests and the conformance suite.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from antrea.k8s.errors import KubeError
from antrea.testbed.lab.kube import KubeClient, Obj

NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
PORTS = (80, 81)
PROTOCOLS = ("TCP", "UDP")
IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.43"


@dataclass(slots=True)
class Model:
    namespaces: Sequence[str] = NAMESPACES
    pods: Sequence[str] = PODS
    ports: Sequence[int] = PORTS
    protocols: Sequence[str] = PROTOCOLS
    nodes: Sequence[str] = ("node1", "node2")
    placement: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.placement:
            i = 0
            for ns in self.namespaces:
                for pod in self.pods:
                    self.placement[f"{ns}/{pod}"] = self.nodes[i % len(self.nodes)]
                    i += 1

    @property
    def keys(self) -> list[str]:
        return sorted(self.placement)

    def namespace_object(self, ns: str) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"ns": ns, "kubernetes.io/metadata.name": ns}},
        }

    def pod_object(self, ns: str, pod: str) -> Obj:
        containers = [
            {
                "name": f"cont-{port}-{proto.lower()}",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/agnhost", "serve-hostname"],
                "args": [f"--{proto.lower()}", "--http=false", f"--port={port}"],
                "ports": [
                    {
                        "containerPort": port,
                        "name": f"serve-{port}-{proto.lower()}",
                        "protocol": proto,
                    }
                ],
            }
            for port in self.ports
            for proto in self.protocols
        ]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod, "namespace": ns, "labels": {"pod": pod}},
            "spec": {
                "nodeName": self.placement[f"{ns}/{pod}"],
                "containers": containers,
                "terminationGracePeriodSeconds": 0,
            },
        }

    def all_connected(self) -> dict[str, dict[str, bool]]:
        """The expected matrix with no policy: everything connected."""
        return {s: dict.fromkeys(self.keys, True) for s in self.keys}


async def create(client: KubeClient, model: Model) -> list[str]:
    """Create the namespaces and pods (existing ones are kept); returns the namespaces created."""
    created: list[str] = []
    for ns in model.namespaces:
        try:
            await client.create("/api/v1/namespaces", model.namespace_object(ns))
            created.append(ns)
        except KubeError as exc:
            if exc.status != 409:
                raise
    for key in model.keys:
        ns, pod = key.split("/")
        try:
            await client.create(f"/api/v1/namespaces/{ns}/pods", model.pod_object(ns, pod))
        except KubeError as exc:
            if exc.status != 409:
                raise
    return created


async def wait_running(
    client: KubeClient, keys: Sequence[str], *, timeout: float = 60.0
) -> dict[str, Obj]:
    """Wait until every pod in ``keys`` is Running with a podIP; returns them by key."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pods = (await client.list("/api/v1/pods")).get("items") or []
        ready: dict[str, Obj] = {}
        for p in pods:
            md, st = p["metadata"], p.get("status") or {}
            key = f"{md['namespace']}/{md['name']}"
            if key in keys and st.get("phase") == "Running" and st.get("podIP"):
                ready[key] = p
        if len(ready) == len(set(keys)):
            return ready
        if loop.time() > deadline:
            missing = sorted(set(keys) - set(ready))
            raise TimeoutError(f"pods not running after {timeout:.0f}s: {', '.join(missing)}")
        await asyncio.sleep(0.2)


async def delete(client: KubeClient, model: Model, *, timeout: float = 60.0) -> None:
    """Delete the model's pods (waiting until they are gone) and then its namespaces."""
    for key in model.keys:
        ns, pod = key.split("/")
        await client.delete(f"/api/v1/namespaces/{ns}/pods/{pod}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        items = (await client.list("/api/v1/pods")).get("items") or []
        left = [p for p in items if p["metadata"]["namespace"] in model.namespaces]
        if not left:
            break
        if loop.time() > deadline:
            raise TimeoutError(f"{len(left)} model pods still present after {timeout:.0f}s")
        await asyncio.sleep(0.2)
    for ns in model.namespaces:
        await client.delete(f"/api/v1/namespaces/{ns}")
