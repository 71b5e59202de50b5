"""The leader's EndpointSlice ``kube-system/antrea`` (written through the strict embedded API
server, which checks the object as kube-apiserver would)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from antrea.controller.controller import publish_endpoints
from antrea.controller.endpointslice import (
    MANAGED_BY,
    SKIP_MIRROR_LABEL,
    publish_endpointslice,
)
from antrea.k8s.resources import ApiClientResources, load_api_client, ns_path
from antrea.testbed.apiserver.server import APIServer

NS = "kube-system"
SLICE = ns_path("discovery.k8s.io/v1", NS, "endpointslices", "antrea")


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[ApiClientResources]:
    server = APIServer(port=0)
    await server.start()
    server.write_kubeconfig(tmp_path / "admin.kubeconfig")
    client = await load_api_client(str(tmp_path / "admin.kubeconfig"))
    try:
        yield ApiClientResources(client)
    finally:
        await client.close()
        await server.stop()


async def test_the_slice_points_at_the_leader_and_is_selected_by_its_service(
    kube: ApiClientResources,
) -> None:
    assert await publish_endpointslice(kube, NS, "10.0.0.1", 10349, "node1")
    assert not await publish_endpointslice(kube, NS, "10.0.0.1", 10349, "node1")
    assert await publish_endpointslice(kube, NS, "10.0.0.2", 10349, "node2")  # a new leader
    found = await kube.get(
        "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices",
        query=[("labelSelector", "kubernetes.io/service-name=antrea")],
    )
    assert found is not None
    [sl] = found["items"]
    assert sl["metadata"]["name"] == "antrea"
    assert sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == MANAGED_BY
    assert sl["addressType"] == "IPv4"
    assert [(e["addresses"], e["nodeName"], e["conditions"]["ready"]) for e in sl["endpoints"]] == [
        (["10.0.0.2"], "node2", True)
    ]
    assert sl["ports"] == [{"name": "https", "port": 10349, "protocol": "TCP"}]


async def test_a_stale_slice_is_put_right(kube: ApiClientResources) -> None:
    """Someone else's slice under our name (no managed-by label, no endpoint) is replaced."""
    await kube.create(
        ns_path("discovery.k8s.io/v1", NS, "endpointslices"),
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "antrea", "namespace": NS, "labels": {"other": "x"}},
         "addressType": "IPv4", "endpoints": [], "ports": []},
    )  # fmt: skip
    assert await publish_endpointslice(kube, NS, "10.0.0.1", 10349, "node1")
    sl = await kube.get(SLICE)
    assert sl is not None
    assert sl["metadata"]["labels"]["other"] == "x"  # kept
    assert sl["metadata"]["labels"]["kubernetes.io/service-name"] == "antrea"
    assert sl["endpoints"][0]["addresses"] == ["10.0.0.1"]


async def test_endpoints_are_not_mirrored(kube: ApiClientResources) -> None:
    """Endpoints antrea carry skip-mirror: kube-controller-manager adds no second slice."""
    await kube.create(
        ns_path("v1", NS, "endpoints"),
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "antrea", "namespace": NS},
         "subsets": [{"addresses": [{"ip": "10.0.0.1", "nodeName": "node1"}],
                      "ports": [{"name": "https", "port": 10349, "protocol": "TCP"}]}]},
    )  # fmt: skip
    # Same address, but written before the label existed: labelled now.
    assert await publish_endpoints(kube, NS, "10.0.0.1", 10349, "node1")
    ep = await kube.get(ns_path("v1", NS, "endpoints", "antrea"))
    assert ep is not None and ep["metadata"]["labels"][SKIP_MIRROR_LABEL] == "true"
    assert not await publish_endpoints(kube, NS, "10.0.0.1", 10349, "node1")


async def test_the_leader_names_its_pod_as_kube_apiserver_requires(
    kube: ApiClientResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """services/proxy skips an Endpoints address without a targetRef to the Pod holding it."""
    monkeypatch.setenv("POD_NAME", "antrea-controller-abc")
    monkeypatch.setenv("POD_NAMESPACE", NS)
    assert await publish_endpoints(kube, NS, "10.0.0.1", 10349, "node1")
    assert await publish_endpointslice(kube, NS, "10.0.0.1", 10349, "node1")
    ref = {"kind": "Pod", "namespace": NS, "name": "antrea-controller-abc"}
    ep = await kube.get(ns_path("v1", NS, "endpoints", "antrea"))
    assert ep is not None and ep["subsets"][0]["addresses"][0]["targetRef"] == ref
    sl = await kube.get(SLICE)
    assert sl is not None and sl["endpoints"][0]["targetRef"] == ref
    monkeypatch.setenv("POD_NAMESPACE", "elsewhere")  # not the Service's namespace: no ref
    assert await publish_endpoints(kube, NS, "10.0.0.1", 10349, "node1")
    ep = await kube.get(ns_path("v1", NS, "endpoints", "antrea"))
    assert ep is not None and "targetRef" not in ep["subsets"][0]["addresses"][0]
