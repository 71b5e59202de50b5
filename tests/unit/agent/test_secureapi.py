"""The agent's HTTPS operator endpoints: anonymous probes, TokenReview + SubjectAccessReview on
/metrics, over real TLS on a loopback port."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509

from antrea.agent.secureapi import SecureAPI
from antrea.k8s.resources import JSON, KubeError
from antrea.k8s.reviews import (
    SUBJECTACCESSREVIEWS,
    TOKENREVIEWS,
    AccessReviewer,
    Identity,
    TokenAuthenticator,
)
from antrea.util.health import Check

PROMETHEUS_SA = "system:serviceaccount:monitoring:prometheus"


class FakeKube:
    """Answers TokenReview and SubjectAccessReview as kube-apiserver does (shape checked)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, JSON]] = []
        self.down = False

    async def get(self, path: str) -> JSON | None:
        raise AssertionError("no GET expected")

    async def replace(self, path: str, body: JSON) -> JSON:
        raise AssertionError("no PUT expected")

    async def create(self, collection: str, body: JSON) -> JSON:
        self.calls.append((collection, body))
        if self.down:
            raise KubeError(0, "connection refused")
        if collection == TOKENREVIEWS:
            assert body["apiVersion"] == "authentication.k8s.io/v1"
            token = body["spec"]["token"]
            users = {"prom": PROMETHEUS_SA, "other": "system:serviceaccount:default:default"}
            if token not in users:
                return {"status": {"authenticated": False}}
            user = {"username": users[token], "groups": ["system:serviceaccounts"]}
            return {"status": {"authenticated": True, "user": user}}
        if collection == SUBJECTACCESSREVIEWS:
            assert body["apiVersion"] == "authorization.k8s.io/v1"
            assert body["kind"] == "SubjectAccessReview"
            spec = body["spec"]
            assert "resourceAttributes" not in spec
            allowed = (
                spec["user"] == PROMETHEUS_SA
                and spec["nonResourceAttributes"]
                in ({"path": "/metrics", "verb": "get"}, {"path": "/agentinfo", "verb": "get"})
                and spec["groups"] == ["system:serviceaccounts"]
            )
            return {"status": {"allowed": allowed}}
        raise AssertionError(f"unexpected POST {collection}")


class Server:
    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.ready = False

        async def metrics(request: web.Request) -> web.Response:
            return web.Response(text="antrea_agent_up 1\n")

        async def agentinfo(request: web.Request) -> web.Response:
            return web.json_response({"nodeName": "n1"})

        self.api = SecureAPI(
            livez=[Check("ping", lambda: None)],
            readyz=[Check("agent-started", lambda: None if self.ready else "starting")],
            metrics=metrics,
            authenticator=TokenAuthenticator(kube),
            reviewer=AccessReviewer(kube),
            operator={"/agentinfo": agentinfo},
        )
        self.port = 0

    async def get(
        self, path: str, token: str | None = None, header: str = "Authorization"
    ) -> tuple[int, str]:
        headers = {header: f"Bearer {token}"} if token else {}
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"https://127.0.0.1:{self.port}{path}", headers=headers, ssl=ctx) as r,
        ):
            return r.status, await r.text()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server(FakeKube())
    srv.port = await srv.api.start("127.0.0.1", 0, ["127.0.0.1", "localhost"])
    try:
        yield srv
    finally:
        await srv.api.stop()


async def test_probes_need_no_credentials_and_tell_the_truth(server: Server) -> None:
    assert await server.get("/livez") == (200, "ok\n")
    status, text = await server.get("/readyz")
    assert status == 500 and "[-]agent-started failed: starting" in text
    server.ready = True
    assert await server.get("/readyz?verbose") == (200, "[+]agent-started ok\nok\n")
    assert server.kube.calls == []  # probes never cost an API call


async def test_metrics_require_a_reviewed_token_and_an_allowed_access(server: Server) -> None:
    assert (await server.get("/metrics"))[0] == 401
    assert (await server.get("/metrics", "bogus"))[0] == 401
    status, text = await server.get("/metrics", "other")
    assert status == 403 and "may not get path" in text
    assert await server.get("/metrics", "prom") == (200, "antrea_agent_up 1\n")
    kinds = [c for c, _ in server.kube.calls]
    assert kinds.count(SUBJECTACCESSREVIEWS) == 2  # other (denied), prom (allowed)
    await server.get("/metrics", "prom")  # cached: no new review
    assert len(server.kube.calls) == len(kinds)


async def test_unreachable_api_server_fails_closed(server: Server) -> None:
    server.kube.down = True
    status, _ = await server.get("/metrics", "prom")
    assert status == 503


async def test_server_certificate_names_the_node_address() -> None:
    srv = Server(FakeKube())
    port = await srv.api.start("127.0.0.1", 0, ["127.0.0.1"])
    try:
        loop_ctx = ssl.create_default_context()
        loop_ctx.check_hostname = False
        loop_ctx.verify_mode = ssl.CERT_NONE
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=loop_ctx)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()

        cert = x509.load_der_x509_certificate(der)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    finally:
        await srv.api.stop()


async def test_access_reviews_are_cached_per_identity() -> None:
    kube = FakeKube()
    now = [0.0]
    reviewer = AccessReviewer(kube, ttl=10, negative_ttl=2, clock=lambda: now[0])
    prom = Identity(PROMETHEUS_SA, frozenset({"system:serviceaccounts"}))
    assert await reviewer.allowed(prom, "get", "/metrics")
    assert await reviewer.allowed(prom, "get", "/metrics")
    assert reviewer.reviews == 1
    now[0] = 11.0
    assert await reviewer.allowed(prom, "get", "/metrics")
    assert reviewer.reviews == 2
    assert not await reviewer.allowed(prom, "get", "/debug")


async def test_agentinfo_for_antctl_through_pods_proxy(server: Server) -> None:
    """/agentinfo is reviewed like /metrics; through the API server's pods/proxy the token comes
    in X-Antrea-Authorization (the proxy keeps Authorization)."""
    proxied = "X-Antrea-Authorization"
    assert (await server.get("/agentinfo"))[0] == 401
    assert (await server.get("/agentinfo", "bogus", proxied))[0] == 401
    assert (await server.get("/agentinfo", "other", proxied))[0] == 403
    assert await server.get("/agentinfo", "prom", proxied) == (200, '{"nodeName": "n1"}')
    assert await server.get("/agentinfo", "prom") == (200, '{"nodeName": "n1"}')
