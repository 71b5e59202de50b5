"""antctl's controller client through the Kubernetes API's ``services/proxy``.

The embedded API server proxies to a stand-in controller (HTTPS, self-signed) that records what
reaches it; Endpoints ``kube-system/antrea`` name an address nothing answers on, so the direct
path fails and only the proxied path can answer.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from antrea.agent.secureapi import self_signed_context
from antrea.antctl.controller_client import AntctlError, ControllerClient
from antrea.apis.controlplane import names
from antrea.testbed.apiserver.kubeconfig import render_kubeconfig, write_kubeconfig
from antrea.testbed.apiserver.server import APIServer

UNROUTABLE = "192.0.2.1"  # TEST-NET-1: nothing answers
INFO = "/apis/system.antrea.io/v1beta1/controllerinfo"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[APIServer, Path, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    async def controller(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "headers": dict(request.headers)})
        if request.headers.get(names.PROXIED_AUTHORIZATION_HEADER) is None:
            return web.json_response({"message": "bearer token required"}, status=401)
        if request.path == "/agentinfo":
            return web.json_response({"nodeName": "n1", "port": request.url.port})
        return web.json_response({"leader": True, "path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", controller)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed_context(["127.0.0.1"]))
    await site.start()
    real_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def dial(
        host: str, port: int, ctx: ssl.SSLContext | None, server_hostname: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        assert (host, port) in ((UNROUTABLE, 10349), (UNROUTABLE, 10350))  # leader, agent pod
        return await asyncio.open_connection(
            "127.0.0.1", real_port, ssl=ctx, server_hostname=server_hostname if ctx else None
        )

    server = APIServer(port=0, proxy_dial=dial)
    await server.start()
    ns = names.NAMESPACE
    server.ensure_objects(
        [
            (
                ("", "configmaps"),
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": names.CA_CONFIGMAP, "namespace": ns},
                    "data": {names.CA_CONFIGMAP_KEY: server.ca_pem.decode()},
                },
            ),
            (
                ("", "services"),
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": names.ENDPOINTS_NAME, "namespace": ns},
                    "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 10349}]},
                },
            ),
            (
                ("", "endpoints"),
                {
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": names.ENDPOINTS_NAME, "namespace": ns},
                    "subsets": [
                        {
                            "addresses": [{"ip": UNROUTABLE}],
                            "ports": [{"name": names.ENDPOINTS_PORT_NAME, "port": 10349}],
                        }
                    ],
                },
            ),
        ]
    )
    for name, node, phase in (
        ("antrea-agent-a", "n1", "Running"),
        ("antrea-agent-b", "n2", "Running"),
    ):
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": {"app": "antrea", "component": "antrea-agent"},
            },
            "spec": {
                "nodeName": node,
                "hostNetwork": True,
                "containers": [{"name": "antrea-agent", "image": "antrea"}],
            },
        }
        server.ensure_objects([(("", "pods"), pod)])
        old = server.store.get(("", "pods"), ns, name)
        assert old is not None
        ip = UNROUTABLE if node == "n1" else "192.0.2.2"
        server.store.put(("", "pods"), {**old, "status": {"phase": phase, "podIP": ip}}, old=old)
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(
        kubeconfig,
        render_kubeconfig(server=server.url, ca_pem=server.ca_pem, token=server.admin_token),
    )
    try:
        yield server, kubeconfig, seen
    finally:
        await server.stop()
        await runner.cleanup()


async def test_via_apiserver_sends_the_token_for_the_controller(cluster: Any) -> None:
    server, kubeconfig, seen = cluster
    client = ControllerClient(str(kubeconfig), via_apiserver=True)
    assert await client.get(INFO) == {"leader": True, "path": INFO}
    (req,) = seen
    assert req["headers"][names.PROXIED_AUTHORIZATION_HEADER] == f"Bearer {server.admin_token}"
    assert "Authorization" not in req["headers"]  # the API server keeps the caller's


async def test_unreachable_address_falls_back_to_the_apiserver(cluster: Any) -> None:
    _, kubeconfig, seen = cluster
    assert (await ControllerClient(str(kubeconfig)).get(INFO))["leader"] is True
    assert len(seen) == 1
    with pytest.raises(AntctlError, match=r"controller https://192\.0\.2\.1:10349"):
        await ControllerClient(str(kubeconfig), via_apiserver=False).get(INFO)
    assert len(seen) == 1


async def test_agentinfo_of_a_node_through_its_agent_pod(cluster: Any) -> None:
    import argparse

    from antrea.antctl.agent_cmds import _agentinfo_via_apiserver

    server, kubeconfig, seen = cluster
    args = argparse.Namespace(kubeconfig=str(kubeconfig), node="n1")
    assert (await _agentinfo_via_apiserver(args))["nodeName"] == "n1"
    (req,) = seen
    assert req["path"] == "/agentinfo"
    assert req["headers"][names.PROXIED_AUTHORIZATION_HEADER] == f"Bearer {server.admin_token}"
    with pytest.raises(AntctlError, match="no running agent pod"):
        await _agentinfo_via_apiserver(argparse.Namespace(kubeconfig=str(kubeconfig), node="n9"))


async def test_no_service_endpoint_falls_back_to_the_leader_pod(cluster: Any) -> None:
    """kube-apiserver 1.36 answers 503 for Service antrea's proxy (it reads EndpointSlices):
    antctl then goes through the pod at the leader's address in Endpoints antrea."""
    server, kubeconfig, seen = cluster
    ns = names.NAMESPACE
    svc = server.store.get(("", "services"), ns, names.ENDPOINTS_NAME)
    ports = [{"name": "https", "port": 443, "targetPort": 10349}]
    server.store.put(
        ("", "services"),
        {**svc, "spec": {**svc["spec"], "ports": [{**ports[0], "name": "other"}]}},
        old=svc,
    )
    client = ControllerClient(str(kubeconfig), via_apiserver=True)
    with pytest.raises(AntctlError, match="no controller pod"):
        await client.get(INFO)
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "antrea-controller-x",
            "namespace": ns,
            "labels": {"app": "antrea", "component": "antrea-controller"},
        },
        "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "antrea"}]},
    }
    server.ensure_objects([(("", "pods"), pod)])
    old = server.store.get(("", "pods"), ns, "antrea-controller-x")
    server.store.put(("", "pods"), {**old, "status": {"podIP": UNROUTABLE}}, old=old)
    assert await client.get(INFO) == {"leader": True, "path": INFO}
    assert [r["path"] for r in seen] == [INFO]
