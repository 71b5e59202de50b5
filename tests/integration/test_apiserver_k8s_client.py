"""kubernetes-asyncio against the embedded API server: list, watch, resume, 410, leases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from antrea.testbed.apiserver.server import APIServer


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[APIServer, client.ApiClient]]:
    server = APIServer(port=0, history=10, bookmark_interval=0.2)
    await server.start()
    kc = tmp_path / "kubeconfig"
    server.write_kubeconfig(kc)
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(kc), client_configuration=cfg)
    api_client = client.ApiClient(configuration=cfg)
    try:
        yield server, api_client
    finally:
        await api_client.close()
        await server.stop()


def _cm(name: str, **labels: str) -> Any:  # a dict body (kubernetes-asyncio takes it as is)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}}


async def test_list_watch_resume_and_gone(api: tuple[APIServer, client.ApiClient]) -> None:
    """The list's resourceVersion resumes a watch exactly; a too-old one raises 410."""
    _, api_client = api
    core = client.CoreV1Api(api_client)
    await core.create_namespaced_config_map("default", _cm("a", app="x"))
    listed = await core.list_namespaced_config_map("default", label_selector="app=x")
    assert [c.metadata.name for c in listed.items] == ["a"]
    rv = listed.metadata.resource_version
    await core.create_namespaced_config_map("default", _cm("b", app="x"))
    await core.delete_namespaced_config_map("a", "default")
    seen: list[tuple[str, str]] = []
    w = watch.Watch()
    async with asyncio.timeout(10):
        async for event in w.stream(
            core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=5
        ):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 2:
                w.stop()
    assert seen == [("ADDED", "b"), ("DELETED", "a")]

    for i in range(15):  # push rv past the 10-event history
        await core.patch_namespaced_config_map("b", "default", {"data": {"i": str(i)}})
    with pytest.raises(ApiException) as exc:
        async with asyncio.timeout(10):
            async for _ in watch.Watch().stream(
                core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=5
            ):
                pass
    assert exc.value.status == 410
    # The re-list gives a fresh version to watch from.
    fresh = await core.list_namespaced_config_map("default")
    assert int(fresh.metadata.resource_version) > int(rv)


async def test_leases_and_conflicts(api: tuple[APIServer, client.ApiClient]) -> None:
    """Leader election's pattern: create, update with the read version; stale is 409."""
    _, api_client = api
    coord = client.CoordinationV1Api(api_client)
    lease: Any = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "antrea-controller"},
        "spec": {"holderIdentity": "node1", "leaseDurationSeconds": 15},
    }
    created = await coord.create_namespaced_lease("kube-system", lease)
    created.spec.holder_identity = "node2"
    updated = await coord.replace_namespaced_lease("antrea-controller", "kube-system", created)
    assert updated.spec.holder_identity == "node2"
    created.spec.holder_identity = "node3"
    with pytest.raises(ApiException) as exc:
        await coord.replace_namespaced_lease("antrea-controller", "kube-system", created)
    assert exc.value.status == 409


async def test_node_status_and_pod_binding(api: tuple[APIServer, client.ApiClient]) -> None:
    _, api_client = api
    core = client.CoreV1Api(api_client)
    node: Any = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "node1"},
        "spec": {"podCIDR": "10.244.1.0/24"},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.77.1"}]},
    }
    created = await core.create_node(node)
    assert created.status.addresses[0].address == "192.168.77.1"
    await core.patch_node_status(
        "node1", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    )
    got = await core.read_node("node1")
    assert got.status.conditions[0].type == "Ready" and got.spec.pod_cidr == "10.244.1.0/24"
    pod: Any = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }
    await core.create_namespaced_pod("default", pod)
    binding = client.V1Binding(
        metadata=client.V1ObjectMeta(name="p"),
        target=client.V1ObjectReference(kind="Node", name="node1"),
    )
    await core.create_namespaced_pod_binding("p", "default", binding, _preload_content=False)
    bound = await core.list_namespaced_pod("default", field_selector="spec.nodeName=node1")
    assert [p.metadata.name for p in bound.items] == ["p"]
