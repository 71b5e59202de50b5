"""TokenReview caching, the shared CA bootstrap, Endpoints publishing, inputs batching, metrics."""

from __future__ import annotations

import asyncio
import base64
import copy
from typing import Any

import pytest
from cryptography import x509
from prometheus_client import generate_latest

from antrea.apis.controlplane.types import Kind
from antrea.controller import certs
from antrea.controller.config import ControllerConfig, config_from_dict
from antrea.controller.controller import ControllerCandidate, publish_endpoints
from antrea.controller.inputs import Inputs
from antrea.controller.networkpolicy import NetworkPolicyController
from antrea.k8s.resources import JSON, Conflict, KubeError
from antrea.k8s.reviews import TokenAuthenticator


class FakeKube:
    def __init__(self) -> None:
        self.objs: dict[str, JSON] = {}
        self.reviews: list[str] = []
        self.review_delay = 0.0
        self.rv = 0

    async def get(self, path: str) -> JSON | None:
        obj = self.objs.get(path)
        return copy.deepcopy(obj) if obj else None

    async def create(self, collection: str, body: JSON) -> JSON:
        if collection.endswith("tokenreviews"):
            token = body["spec"]["token"]
            self.reviews.append(token)
            await asyncio.sleep(self.review_delay)
            if token == "boom":
                raise KubeError(500, "internal")
            if token.startswith("sa-"):
                sa = {
                    "username": "system:serviceaccount:kube-system:antrea-agent",
                    "extra": {"authentication.kubernetes.io/node-name": [token[3:]]},
                }
                return {"status": {"authenticated": True, "user": sa}}
            ok = token.startswith("node-")
            user = {"username": f"system:node:{token[5:]}", "groups": ["system:nodes"]}
            return {"status": {"authenticated": ok, "user": user if ok else {}}}
        path = f"{collection}/{body['metadata']['name']}"
        if path in self.objs:
            raise Conflict(409, "exists")
        self.rv += 1
        self.objs[path] = copy.deepcopy(body) | {
            "metadata": body["metadata"] | {"resourceVersion": str(self.rv)}
        }
        return copy.deepcopy(self.objs[path])

    async def replace(self, path: str, body: JSON) -> JSON:
        self.rv += 1
        self.objs[path] = copy.deepcopy(body)
        return body


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_token_reviews_are_cached_and_shared() -> None:
    kube, clock = FakeKube(), Clock()
    auth = TokenAuthenticator(kube, ttl=10, negative_ttl=2, clock=clock)
    kube.review_delay = 0.01
    idents = await asyncio.gather(*(auth.authenticate("node-n1") for _ in range(20)))
    assert {i.node for i in idents if i} == {"n1"} and kube.reviews == ["node-n1"]
    assert (await auth.authenticate("node-n1")) == idents[0]
    assert await auth.authenticate("bad") is None
    assert await auth.authenticate("bad") is None
    assert kube.reviews == ["node-n1", "bad"]
    clock.now = 3  # negative entry expired, positive one not
    await auth.authenticate("bad")
    await auth.authenticate("node-n1")
    assert kube.reviews == ["node-n1", "bad", "bad"]
    clock.now = 11
    await auth.authenticate("node-n1")
    assert kube.reviews.count("node-n1") == 2
    sa = await auth.authenticate("sa-n7")  # bound ServiceAccount token of a pod on n7
    assert sa is not None and sa.node == "n7" and sa.may_act_for_node("n7")
    assert not sa.may_act_for_node("n1") and not sa.is_admin
    with pytest.raises(KubeError):
        await auth.authenticate("boom")  # API errors are not cached as "invalid"
    with pytest.raises(KubeError):
        await auth.authenticate("boom")
    assert kube.reviews.count("boom") == 2


async def test_all_candidates_share_one_ca() -> None:
    kube = FakeKube()
    results = await asyncio.gather(*(certs.ensure_ca(kube) for _ in range(3)))
    assert len(set(results)) == 1
    ca_cert, ca_key = results[0]
    secret = kube.objs["/api/v1/namespaces/kube-system/secrets/antrea-controller-ca"]
    assert base64.b64decode(secret["data"]["ca.crt"]) == ca_cert
    await certs.publish_ca(kube, ca_cert)
    assert await certs.read_ca(kube) == ca_cert
    cert, _ = certs.issue_serving_cert(ca_cert, ca_key, ["192.168.77.2", "antrea.kube-system.svc"])
    parsed = x509.load_pem_x509_certificate(cert)
    sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["192.168.77.2"]
    assert parsed.issuer == x509.load_pem_x509_certificate(ca_cert).subject


async def test_endpoints_point_at_the_leader() -> None:
    kube = FakeKube()
    assert await publish_endpoints(kube, "kube-system", "10.0.0.1", 10349, "node1")
    assert not await publish_endpoints(kube, "kube-system", "10.0.0.1", 10349, "node1")
    assert await publish_endpoints(kube, "kube-system", "10.0.0.2", 10349, "node2")
    ep = kube.objs["/api/v1/namespaces/kube-system/endpoints/antrea"]
    assert ep["subsets"] == [
        {
            "addresses": [{"ip": "10.0.0.2", "nodeName": "node2"}],
            "ports": [{"name": "https", "port": 10349, "protocol": "TCP"}],
        }
    ]


def test_config_reads_the_shared_agent_format() -> None:
    cfg = config_from_dict(
        {
            "nodeName": "node3",
            "controllerAPIPort": 1234,
            "ovsBridge": "x",
            "leaseNamespace": "ns",
            "retryPeriodSeconds": 1,
        }
    )
    assert cfg == ControllerConfig(
        node_name="node3", controller_api_port=1234, lease_namespace="ns", retry_period=1.0
    )


def ns(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"ns": name}, "resourceVersion": "1"}}


def pod(name: str, node: str, ip: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "x", "name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": node},
        "status": {"phase": "Running", "podIP": ip},
    }


NP = {
    "metadata": {"namespace": "x", "name": "np", "uid": "uid-np", "generation": 1},
    "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]},
}


async def test_candidate_inputs_batch_and_metrics() -> None:
    kube = FakeKube()
    cand = ControllerCandidate(ControllerConfig(node_name="node1"), kube, api_client=None)
    assert isinstance(cand.compiler, NetworkPolicyController)
    inputs: Inputs = cand.inputs
    consumer = asyncio.get_running_loop().create_task(inputs._consume())
    try:
        inputs._enqueue("namespace", None, ns("x"))
        inputs._enqueue("network_policy", None, NP)
        for i in range(5):
            inputs._enqueue("pod", None, pod(f"p{i}", f"node{i % 2}", f"10.0.0.{i + 1}"))
        for _ in range(100):
            if inputs.queue_length() == 0 and inputs.processed == 7:
                break
            await asyncio.sleep(0.01)
        assert inputs.processed == 7 and inputs.errors == 0
        got = cand.store.get(Kind.NETWORK_POLICY, "uid-np")
        assert got is not None and got[1] == frozenset({"node0", "node1"})
        text = generate_latest(cand.metrics.registry).decode()
        for line in (
            "antrea_controller_network_policies 1.0",
            "antrea_controller_applied_to_groups 1.0",
            "antrea_controller_connected_agents 0.0",
            "antrea_controller_input_queue_length 0.0",
            "antrea_controller_is_leader 0.0",
            "antrea_controller_network_policy_processed_total 1.0",
        ):
            assert line in text
        assert (
            'antrea_controller_network_policy_processing_duration_seconds_count{resource="pod"}'
            in text
        )
        assert "antrea_controller_network_policy_batch_duration_seconds_count 1.0" in text
        assert cand.serving() is not None  # not leader, not synced
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
