"""``pods/proxy`` and ``services/proxy`` of the embedded API server.

The target is a real aiohttp server (plain HTTP and HTTPS with a self-signed certificate) on
loopback; the server's dialer is replaced by one that records the (IP, port) the proxy chose
and connects to that server, since loopback targets are refused as kube-apiserver refuses them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from antrea.agent.secureapi import self_signed_context
from antrea.testbed.apiserver import proxy
from antrea.testbed.apiserver.server import APIServer

JSON = dict[str, Any]
NS = "/api/v1/namespaces/default"

# -- the name segment ---------------------------------------------------------------------

names = st.text(st.characters(exclude_characters=":/", exclude_categories=["Cs"]), min_size=1)
ports = st.one_of(
    st.just(""), st.integers(1, 65535).map(str), st.from_regex(r"[a-z]{1,8}", fullmatch=True)
)


@given(st.sampled_from(proxy.VALID_SCHEMES), names, ports)
def test_scheme_name_port_round_trips(scheme: str, name: str, port: str) -> None:
    segment = proxy.join_scheme_name_port(scheme, name, port)
    split = proxy.split_scheme_name_port(segment)
    assert split is not None
    if scheme:
        assert split == (scheme, name, port)
    else:
        assert split[1:] == (name, port) and split[0] == ""


@given(st.text(max_size=30))
def test_split_accepts_only_the_three_forms(segment: str) -> None:
    split = proxy.split_scheme_name_port(segment)
    parts = segment.split(":")
    if (
        len(parts) > 3
        or not parts[len(parts) == 3]
        or (len(parts) == 3 and parts[0] not in ("", "http", "https"))
    ):
        assert split is None
    else:
        assert split is not None
        assert split[1] == parts[len(parts) == 3]
        assert split[2] == (parts[-1] if len(parts) > 1 else "")


def test_parse_proxy_path_examples() -> None:
    p = proxy.parse_proxy_path("/api/v1/namespaces/kube-system/pods/https:agent-x:10350/proxy/a/b")
    assert p == proxy.ProxyPath(
        "pods", "kube-system", "https:agent-x:10350", "https", "agent-x", "10350", "/a/b"
    )
    p = proxy.parse_proxy_path("/api/v1/namespaces/ns/services/web/proxy")
    assert p is not None and (p.resource, p.name, p.port, p.path) == ("services", "web", "", "/")
    p = proxy.parse_proxy_path("/api/v1/namespaces/ns/services/web:http/proxy/")
    assert p is not None and (p.port, p.path) == ("http", "/")
    for bad in (
        "/api/v1/namespaces/ns/pods/web/log",
        "/api/v1/namespaces/ns/nodes/web/proxy/x",
        "/api/v1/namespaces/ns/pods/ftp:web:1/proxy/x",
        "/api/v1/namespaces/ns/pods/a:b:c:d/proxy/x",
        "/api/v1/namespaces/ns/pods/:80/proxy/x",
        "/apis/apps/v1/namespaces/ns/pods/web/proxy/x",
        "/api/v1/pods/web/proxy/x",
    ):
        assert proxy.parse_proxy_path(bad) is None, bad


@given(
    st.tuples(
        st.sampled_from(proxy.PROXY_RESOURCES),
        st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True),
        st.sampled_from(proxy.VALID_SCHEMES),
        st.from_regex(r"[a-z0-9.-]{1,12}", fullmatch=True),
        ports,
        st.lists(st.from_regex(r"[a-zA-Z0-9._~%-]{0,6}", fullmatch=True), max_size=4),
    )
)
def test_parse_proxy_path_finds_every_part(
    case: tuple[str, str, str, str, str, list[str]],
) -> None:
    resource, ns, scheme, name, port, rest = case
    segment = proxy.join_scheme_name_port(scheme, name, port)
    tail = "/".join(rest)
    p = proxy.parse_proxy_path(f"/api/v1/namespaces/{ns}/{resource}/{segment}/proxy/{tail}")
    assert p is not None
    assert (p.resource, p.namespace, p.segment, p.name, p.path) == (
        resource,
        ns,
        segment,
        name,
        "/" + tail,
    )
    assert (p.scheme, p.port) == ((scheme, port) if scheme else ("", port))
    assert (p.target().resource, p.target().subresource, p.target().name) == (
        resource,
        "proxy",
        segment,
    )


# -- forwarding -----------------------------------------------------------------------------


@dataclass
class Target:
    http_port: int
    https_port: int
    dialed: list[tuple[str, int, bool]] = field(default_factory=list)


async def echo(request: web.Request) -> web.StreamResponse:
    if request.path == "/teapot":
        return web.json_response({"short": "stout"}, status=418, headers={"X-Pot": "1"})
    if request.path == "/stream":
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(3):
            await resp.write(f"chunk{i}\n".encode())
        await resp.write_eof()
        return resp
    return web.json_response(
        {
            "method": request.method,
            "path": request.path,
            "query": request.raw_path.partition("?")[2],
            "headers": dict(request.headers),
            "body": (await request.read()).decode(),
            "tls": request.secure,
        }
    )


@pytest.fixture
async def env() -> AsyncIterator[tuple[APIServer, Target, aiohttp.ClientSession]]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    plain = web.TCPSite(runner, "127.0.0.1", 0)
    await plain.start()
    tls = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed_context(["127.0.0.1"]))
    await tls.start()
    target = Target(
        plain._server.sockets[0].getsockname()[1],  # type: ignore[union-attr]
        tls._server.sockets[0].getsockname()[1],  # type: ignore[union-attr]
    )

    async def dial(
        host: str, port: int, ctx: ssl.SSLContext | None, server_hostname: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        target.dialed.append((host, port, ctx is not None))
        if port == 9:  # nothing listens
            raise ConnectionRefusedError("connection refused")
        real = target.https_port if ctx is not None else target.http_port
        return await asyncio.open_connection(
            "127.0.0.1", real, ssl=ctx, server_hostname=None if ctx is None else server_hostname
        )

    server = APIServer(port=0, proxy_dial=dial)
    await server.start()
    server.add_token("dev", user="dev", groups=["developers"])
    server.ensure_objects(
        [
            (("", "pods"), pod("web", "10.1.2.3", 8080)),
            (("", "pods"), pod("lo", "127.0.0.1", 80)),
            (
                ("", "services"),
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": "svc", "namespace": "default"},
                    "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 10349}]},
                },
            ),
            (
                ("", "endpoints"),
                {
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": "svc", "namespace": "default"},
                    "subsets": [
                        {
                            "addresses": [{"ip": "10.4.4.4"}],
                            "ports": [{"name": "https", "port": 10349}],
                        }
                    ],
                },
            ),
        ]
    )
    # the store keeps what ensure_objects gave; status is set as a kubelet would
    for name, ip in (("web", "10.1.2.3"), ("lo", "127.0.0.1")):
        old = server.store.get(("", "pods"), "default", name)
        assert old is not None
        server.store.put(("", "pods"), {**old, "status": {"podIP": ip}}, old=old)
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    session = aiohttp.ClientSession(base_url=server.url, connector=aiohttp.TCPConnector(ssl=ctx))
    try:
        yield server, target, session
    finally:
        await session.close()
        await server.stop()
        await runner.cleanup()


def pod(name: str, ip: str, port: int) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": port}]}]},
        "status": {"podIP": ip},
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_pod_proxy_forwards_method_query_body_and_headers(env: Any) -> None:
    server, target, session = env
    async with session.post(
        f"{NS}/pods/web:8080/proxy/a/b?x=1&y=a%26b",
        data=b"hello",
        headers={**bearer(server.admin_token), "X-Custom": "v", "Content-Type": "text/plain"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        got = await resp.json()
    assert target.dialed == [("10.1.2.3", 8080, False)]
    assert (got["method"], got["path"], got["query"], got["body"]) == (
        "POST",
        "/a/b",
        "x=1&y=a%26b",
        "hello",
    )
    assert got["headers"]["X-Custom"] == "v"
    assert "Authorization" not in got["headers"]  # the caller's credentials stay here
    assert got["headers"]["Host"] == "10.1.2.3:8080"


async def test_default_port_status_headers_and_streaming(env: Any) -> None:
    server, target, session = env
    async with session.get(
        f"{NS}/pods/web/proxy/teapot", headers=bearer(server.admin_token)
    ) as resp:
        assert resp.status == 418
        assert resp.headers["X-Pot"] == "1"
        assert await resp.json() == {"short": "stout"}
    assert target.dialed[-1] == ("10.1.2.3", 8080, False)  # the first container port
    async with session.get(
        f"{NS}/pods/web:8080/proxy/stream", headers=bearer(server.admin_token)
    ) as resp:
        assert resp.status == 200
        assert await resp.read() == b"chunk0\nchunk1\nchunk2\n"


async def test_https_target_is_not_verified(env: Any) -> None:
    server, target, session = env
    async with session.get(
        f"{NS}/pods/https:web:10350/proxy/info", headers=bearer(server.admin_token)
    ) as resp:
        assert resp.status == 200, await resp.text()
        got = await resp.json()
    assert got["tls"] is True and got["path"] == "/info"
    assert target.dialed == [("10.1.2.3", 10350, True)]


async def test_service_proxy_goes_to_an_endpoint(env: Any) -> None:
    server, target, session = env
    for segment in ("https:svc:https", "https:svc:443", "https:svc:"):
        async with session.get(
            f"{NS}/services/{segment}/proxy/x", headers=bearer(server.admin_token)
        ) as resp:
            assert resp.status == 200, (segment, await resp.text())
    assert target.dialed == [("10.4.4.4", 10349, True)] * 3
    async with session.get(
        f"{NS}/services/https:svc:nope/proxy/x", headers=bearer(server.admin_token)
    ) as resp:
        assert resp.status == 503


async def test_refusals(env: Any) -> None:
    server, target, session = env
    admin = bearer(server.admin_token)
    cases = [
        (f"{NS}/pods/lo/proxy/", 400),  # loopback target
        (f"{NS}/pods/web:http/proxy/", 400),  # pods take port numbers
        (f"{NS}/pods/missing/proxy/", 404),
        (f"{NS}/services/missing/proxy/", 404),
        (f"{NS}/pods/web:9/proxy/", 503),  # nothing listens
    ]
    for path, code in cases:
        async with session.get(path, headers=admin) as resp:
            assert resp.status == code, (path, await resp.text())
    assert target.dialed == [("10.1.2.3", 9, False)]
    async with session.get(f"{NS}/pods/web/proxy/") as resp:
        assert resp.status == 401


def role_binding(verbs: list[str], resource: str) -> list[tuple[tuple[str, str], JSON]]:
    return [
        (
            ("rbac.authorization.k8s.io", "roles"),
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "proxy", "namespace": "default"},
                "rules": [{"apiGroups": [""], "resources": [resource], "verbs": verbs}],
            },
        ),
        (
            ("rbac.authorization.k8s.io", "rolebindings"),
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "proxy", "namespace": "default"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "proxy",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "dev"}
                ],
            },
        ),
    ]


async def test_authorized_as_pods_proxy_with_the_method_verb(env: Any) -> None:
    server, target, session = env
    dev = bearer("dev")

    async def status(method: str, path: str) -> int:
        async with session.request(method, path, headers=dev) as resp:
            body = await resp.read()
            if resp.status == 403:
                status_body = orjson.loads(body)
                assert "proxy" in status_body["message"], status_body
            return resp.status

    assert await status("GET", f"{NS}/pods/web/proxy/") == 403
    server.ensure_objects(role_binding(["get"], "pods"))  # pods, not pods/proxy
    assert await status("GET", f"{NS}/pods/web/proxy/") == 403
    server.ensure_objects(role_binding(["get"], "pods/proxy"))
    assert await status("GET", f"{NS}/pods/web/proxy/") == 200
    assert await status("POST", f"{NS}/pods/web/proxy/") == 403  # create pods/proxy
    assert await status("GET", f"{NS}/services/https:svc:/proxy/") == 403  # services/proxy
    server.ensure_objects(role_binding(["get", "create"], "services/proxy"))
    assert await status("GET", f"{NS}/services/https:svc:/proxy/") == 200
    assert await status("GET", f"{NS}/pods/web/proxy/") == 403
    assert target.dialed == [("10.1.2.3", 8080, False), ("10.4.4.4", 10349, True)]
