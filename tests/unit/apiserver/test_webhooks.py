"""Dynamic admission: the embedded API server calling the controller's admission webhooks.

A real HTTPS webhook server (the controller's `AdmissionHandlers`, serving certificate from its
own CA) registered through Validating/MutatingWebhookConfigurations, reached both by ``url``
and through a Service + Endpoints, exactly as deploy/antrea.yml registers it.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from antrea.controller import certs
from antrea.controller.admission.webhook import AdmissionHandlers, KubeLookup
from antrea.testbed.apiserver.server import APIServer

from .test_server_api import Client, _client

JSON = dict[str, Any]
CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
GV = "/apis/crd.antrea.io/v1beta1"
VWC = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
MWC = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


def crd(plural: str, kind: str, short: str, *, namespaced: bool = False) -> JSON:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.crd.antrea.io"},
        "spec": {
            "group": "crd.antrea.io",
            "scope": "Namespaced" if namespaced else "Cluster",
            "names": {
                "plural": plural,
                "kind": kind,
                "singular": kind.lower(),
                "shortNames": [short],
            },
            "versions": [
                {
                    "name": "v1beta1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


class _StoreGetter:
    def __init__(self, server: APIServer) -> None:
        self.server = server

    async def get(self, path: str) -> JSON | None:
        parts = path.strip("/").split("/")  # apis crd.antrea.io v1beta1 [namespaces ns] res
        resource = parts[-1]
        ns = parts[4] if len(parts) == 6 else None
        items = self.server.store.list(("crd.antrea.io", resource), ns)
        return {"items": items}


def hook(
    name: str,
    path: str,
    resources: list[str],
    ca: bytes,
    url: str | None,
    *,
    ops: list[str] | None = None,
    policy: str = "Fail",
) -> JSON:
    client: JSON = {"caBundle": base64.b64encode(ca).decode()}
    if url is not None:
        client["url"] = url + path
    else:
        client["service"] = {"namespace": "kube-system", "name": "antrea", "path": path}
    return {
        "name": name,
        "clientConfig": client,
        "rules": [
            {
                "operations": ops or ["CREATE", "UPDATE"],
                "apiGroups": ["crd.antrea.io"],
                "apiVersions": ["v1beta1"],
                "resources": resources,
                "scope": "*",
            }
        ],
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": policy,
        "timeoutSeconds": 5,
    }


class Env:
    def __init__(self, api: Client, server: APIServer, url: str, ca: bytes) -> None:
        self.api, self.server, self.url, self.ca = api, server, url, ca


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    server = APIServer(port=0, history=50, bookmark_interval=0.2)
    await server.start()
    ca, ca_key = certs.generate_ca()
    cert, key = certs.issue_serving_cert(ca, ca_key, ["127.0.0.1", *certs.SERVICE_DNS])
    app = web.Application()
    AdmissionHandlers(KubeLookup(_StoreGetter(server))).add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=certs.server_ssl_context(cert, key))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    session, client = await _client(server)
    try:
        for plural, kind, short in (
            ("clusternetworkpolicies", "ClusterNetworkPolicy", "acnp"),
            ("tiers", "Tier", "tr"),
            ("clustergroups", "ClusterGroup", "cg"),
        ):
            status, body = await client.req("POST", CRD, crd(plural, kind, short))
            assert status == 201, body
        url = f"https://127.0.0.1:{port}"
        yield Env(client, server, url, ca)
    finally:
        await session.close()
        await runner.cleanup()
        await server.stop()


async def register(env: Env, *, url: bool = True, policy: str = "Fail") -> None:
    u = env.url if url else None
    vwc = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "crdvalidator.antrea.io"},
        "webhooks": [
            hook(
                "acnpvalidator.antrea.io",
                "/validate/acnp",
                ["clusternetworkpolicies"],
                env.ca,
                u,
                policy=policy,
            ),
            hook(
                "tiervalidator.antrea.io",
                "/validate/tier",
                ["tiers"],
                env.ca,
                u,
                ops=["CREATE", "UPDATE", "DELETE"],
                policy=policy,
            ),
            hook(
                "cgvalidator.antrea.io",
                "/validate/clustergroup",
                ["clustergroups"],
                env.ca,
                u,
                policy=policy,
            ),
        ],
    }
    mwc = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "crdmutator.antrea.io"},
        "webhooks": [
            hook(
                "acnpmutator.antrea.io",
                "/mutate/acnp",
                ["clusternetworkpolicies"],
                env.ca,
                u,
                policy=policy,
            )
        ],
    }
    assert (await env.api.req("POST", VWC, vwc))[0] == 201
    assert (await env.api.req("POST", MWC, mwc))[0] == 201


def acnp(name: str, **spec: Any) -> JSON:
    body: JSON = {
        "priority": 5,
        "appliedTo": [{"podSelector": {}}],
        "ingress": [{"action": "Allow", "from": [{"podSelector": {}}]}],
    }
    body.update(spec)
    return {
        "apiVersion": "crd.antrea.io/v1beta1",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": body,
    }


def tier(name: str, prio: int) -> JSON:
    return {
        "apiVersion": "crd.antrea.io/v1beta1",
        "kind": "Tier",
        "metadata": {"name": name},
        "spec": {"priority": prio},
    }


async def test_invalid_policy_refused_with_field_and_not_stored(env: Env) -> None:
    await register(env)
    bad = acnp("bad", priority=20000)
    status, body = await env.api.req("POST", f"{GV}/clusternetworkpolicies", bad)
    assert status == 400, body
    assert body["message"].startswith(
        'admission webhook "acnpvalidator.antrea.io" denied the request: spec.priority:'
    )
    assert {c["field"] for c in body["details"]["causes"]} == {"spec.priority"}
    status, _ = await env.api.req("GET", f"{GV}/clusternetworkpolicies/bad")
    assert status == 404


async def test_valid_policy_mutated_and_stored(env: Env) -> None:
    await register(env)
    status, body = await env.api.req("POST", f"{GV}/clusternetworkpolicies", acnp("ok"))
    assert status == 201, body
    assert body["spec"]["tier"] == "application"
    assert body["spec"]["ingress"][0]["name"].startswith("ingress-allow-")
    # An update that breaks a rule is refused; the stored object is unchanged.
    status, body = await env.api.req(
        "PATCH",
        f"{GV}/clusternetworkpolicies/ok",
        {"spec": {"tier": "nosuchtier"}},
        ctype="application/merge-patch+json",
    )
    assert status == 400 and "spec.tier: tier nosuchtier does not exist" in body["message"]
    status, body = await env.api.req("GET", f"{GV}/clusternetworkpolicies/ok")
    assert body["spec"]["tier"] == "application"


async def test_tier_rules_through_service_endpoints(env: Env) -> None:
    port = int(env.url.rsplit(":", 1)[1])
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "antrea", "namespace": "kube-system"},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
    }
    eps = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "antrea", "namespace": "kube-system"},
        "subsets": [
            {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port}]}
        ],
    }
    assert (await env.api.req("POST", "/api/v1/namespaces/kube-system/services", svc))[0] == 201
    assert (await env.api.req("POST", "/api/v1/namespaces/kube-system/endpoints", eps))[0] == 201
    await register(env, url=False)
    tiers = f"{GV}/tiers"
    assert (await env.api.req("POST", tiers, tier("t1", 10)))[0] == 201
    status, body = await env.api.req("POST", tiers, tier("t2", 10))
    assert status == 400 and "overlaps with existing Tier t1" in body["message"]
    assert (await env.api.req("GET", f"{tiers}/t2"))[0] == 404
    status, body = await env.api.req(
        "PATCH", f"{tiers}/t1", {"spec": {"priority": 11}}, ctype="application/merge-patch+json"
    )
    assert status == 400 and "update to Tier priority is not allowed" in body["message"]
    assert (await env.api.req("POST", f"{GV}/clusternetworkpolicies", acnp("p", tier="t1")))[
        0
    ] == 201
    status, body = await env.api.req("DELETE", f"{tiers}/t1")
    assert status == 400
    assert "tier t1 is referenced by 1 Antrea ClusterNetworkPolicies" in body["message"]
    assert (await env.api.req("GET", f"{tiers}/t1"))[0] == 200
    assert (await env.api.req("DELETE", f"{GV}/clusternetworkpolicies/p"))[0] == 200
    assert (await env.api.req("DELETE", f"{tiers}/t1"))[0] == 200


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_failure_policy(env: Env) -> None:
    env.url = f"https://127.0.0.1:{_closed_port()}"
    await register(env, policy="Fail")
    status, body = await env.api.req("POST", f"{GV}/clusternetworkpolicies", acnp("a"))
    assert status == 500 and 'failed calling webhook "acnpmutator.antrea.io"' in body["message"]
    assert (await env.api.req("GET", f"{GV}/clusternetworkpolicies/a"))[0] == 404
    for path in (f"{VWC}/crdvalidator.antrea.io", f"{MWC}/crdmutator.antrea.io"):
        assert (await env.api.req("DELETE", path))[0] == 200
    await register(env, policy="Ignore")
    status, body = await env.api.req("POST", f"{GV}/clusternetworkpolicies", acnp("a"))
    assert status == 201 and "tier" not in body["spec"]


async def test_wrong_ca_is_a_call_failure(env: Env) -> None:
    env.ca = certs.generate_ca()[0]
    await register(env)
    status, body = await env.api.req("POST", f"{GV}/clusternetworkpolicies", acnp("a"))
    assert status == 500 and "CERTIFICATE_VERIFY_FAILED" in body["message"]
    assert (await env.api.req("GET", f"{GV}/clusternetworkpolicies/a"))[0] == 404


async def test_unmatched_resources_are_not_sent(env: Env) -> None:
    env.url = f"https://127.0.0.1:{_closed_port()}"  # any call would fail
    await register(env)
    status, _ = await env.api.req(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
    )
    assert status == 201


async def test_group_mixing_fields_refused(env: Env) -> None:
    await register(env)
    cg = {
        "apiVersion": "crd.antrea.io/v1beta1",
        "kind": "ClusterGroup",
        "metadata": {"name": "g"},
        "spec": {"podSelector": {}, "ipBlocks": [{"cidr": "10.0.0.0/8"}]},
    }
    status, body = await env.api.req("POST", f"{GV}/clustergroups", cg)
    assert status == 400 and "At most one of podSelector" in body["message"]
    assert body["details"]["causes"][0]["field"] == "spec"
    assert (await env.api.req("GET", f"{GV}/clustergroups/g"))[0] == 404


async def test_timeout_fails_closed_or_is_ignored(env: Env) -> None:
    """A webhook slower than timeoutSeconds: 500 under Fail (nothing stored), skipped under
    Ignore."""
    import asyncio

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    ca, ca_key = certs.generate_ca()
    cert, key = certs.issue_serving_cert(ca, ca_key, ["127.0.0.1"])
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=certs.server_ssl_context(cert, key))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        for policy, want in (("Fail", 500), ("Ignore", 201)):
            h = hook("slow.example.com", "/slow", ["tiers"], ca, f"https://127.0.0.1:{port}",
                     policy=policy)  # fmt: skip
            h["timeoutSeconds"] = 1
            cfg = {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": f"slow-{policy.lower()}"},
                "webhooks": [h],
            }
            assert (await env.api.req("POST", VWC, cfg))[0] == 201
            status, body = await env.api.req("POST", f"{GV}/tiers", tier(f"t-{policy.lower()}", 7))
            assert status == want, body
            if want == 500:
                assert "context deadline exceeded" in body["message"]
                assert (await env.api.req("GET", f"{GV}/tiers/t-fail"))[0] == 404
            assert (await env.api.req("DELETE", f"{VWC}/slow-{policy.lower()}"))[0] == 200
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("rule", "sub", "matches"),
    [
        ({"resources": ["tiers"]}, "", True),
        ({"resources": ["tiers"]}, "status", False),
        ({"resources": ["tiers/status"]}, "status", True),
        ({"resources": ["*"]}, "status", False),
        ({"resources": ["*/*"]}, "status", True),
        ({"resources": ["*/*"]}, "", True),
        ({"resources": ["tiers/*"]}, "", True),
        ({"resources": ["tiers"], "scope": "Namespaced"}, "", False),
        ({"resources": ["tiers"], "operations": ["DELETE"]}, "", False),
        ({"resources": ["tiers"], "apiVersions": ["v1alpha1"]}, "", False),
    ],
)
def test_rule_matching(rule: JSON, sub: str, matches: bool) -> None:
    from antrea.testbed.apiserver.resources import ResourceType
    from antrea.testbed.apiserver.webhooks import Attributes, _rule_matches

    rt = ResourceType(
        group="crd.antrea.io", version="v1beta1", resource="tiers", kind="Tier",
        namespaced=False, singular="tier",
    )  # fmt: skip
    full = {"operations": ["CREATE"], "apiGroups": ["crd.antrea.io"], "apiVersions": ["*"], **rule}
    attrs = Attributes("CREATE", rt, sub, "", "t", None, False)
    assert _rule_matches(full, attrs) is matches
