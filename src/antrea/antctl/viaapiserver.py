"""antctl's path to the controller through the Kubernetes API: ``services/proxy``.

When the controller's address (Endpoints ``kube-system/antrea``) is not routable from where
antctl runs, the same request goes to
``<apiserver>/api/v1/namespaces/kube-system/services/https:antrea:https/proxy/<path>``: the API
server authenticates the kubeconfig's user (any credential kubectl accepts), authorizes
``services/proxy`` (verbs ``get``/``create``, name ``https:antrea:https``) and forwards to the
leading controller (the Service's only endpoint). The API server does not forward the caller's
``Authorization``, so antctl sends its bearer token again in
``X-Antrea-Authorization``; the controller reviews it (TokenReview, then RBAC) as for a direct
request. A kubeconfig without a token (client certificates only) passes the API server but is
refused by the controller (401), as on the direct path.

Agents (``antctl get agentinfo --node NODE``): the agent pod on that node (labels
``app=antrea,component=antrea-agent``, host network, so its IP is the node's) through
``pods/proxy`` to ``https:<pod>:10350``, the agent's HTTPS port, which serves ``/agentinfo``
with the same token review. Its other antctl paths are on the node's loopback API only.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import aiohttp

from antrea.antctl.controller_client import AntctlError
from antrea.apis.controlplane import names
from antrea.k8s.client import tls_context


def proxy_url(api_host: str, namespace: str, path: str) -> str:
    return (
        f"{api_host.rstrip('/')}/api/v1/namespaces/{namespace}/services/"
        f"{names.SERVICE_PROXY_SEGMENT}/proxy{path}"
    )


def ssl_context(conf: Any) -> ssl.SSLContext:
    """The TLS context a kubernetes-asyncio ``Configuration`` describes (CA, client cert)."""
    ctx = ssl.create_default_context(cafile=conf.ssl_ca_cert or None)
    if conf.cert_file:
        ctx.load_cert_chain(conf.cert_file, conf.key_file or None)
    if not conf.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def request(
    api_client: Any,
    namespace: str,
    method: str,
    path: str,
    *,
    params: dict[str, str] | None,
    token: str | None,
    raw: bool = False,
) -> Any:
    """The JSON answer (bytes with ``raw``) of ``method path`` on the controller, proxied:
    through the Service, or, when the API server finds no endpoint for it (503), through the
    leader's pod."""
    url = proxy_url(api_client.configuration.host, namespace, path)
    try:
        return await send(api_client, method, url, params=params, token=token, raw=raw)
    except ProxyStatusError as exc:
        if exc.status != 503:
            raise
        pod, port = await leader_pod(api_client, namespace)
        host = api_client.configuration.host.rstrip("/")
        url = f"{host}/api/v1/namespaces/{namespace}/pods/https:{pod}:{port}/proxy{path}"
        return await send(api_client, method, url, params=params, token=token, raw=raw)


class ProxyStatusError(AntctlError):
    """The proxied request answered with an HTTP error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


CONTROLLER_SELECTOR = "app=antrea,component=antrea-controller"


async def leader_pod(api_client: Any, namespace: str) -> tuple[str, int]:
    """The controller pod whose address Endpoints ``<namespace>/antrea`` holds, and the port."""
    from antrea.k8s.lookup import endpoints_address
    from antrea.k8s.resources import ApiClientResources, KubeError

    kube = ApiClientResources(api_client)
    try:
        found = await endpoints_address(
            kube, namespace, names.ENDPOINTS_NAME, port_name=names.ENDPOINTS_PORT_NAME
        )
        pods = await kube.get(
            f"/api/v1/namespaces/{namespace}/pods", query=[("labelSelector", CONTROLLER_SELECTOR)]
        )
    except KubeError as exc:
        raise AntctlError(f"cannot find the controller's pod: {exc}") from exc
    if found is None:
        raise AntctlError(f"no controller endpoint in Endpoints {namespace}/{names.ENDPOINTS_NAME}")
    ip, port = found
    for p in (pods or {}).get("items") or ():
        if (p.get("status") or {}).get("podIP") == ip:
            return str(p["metadata"]["name"]), int(port)
    raise AntctlError(f"no controller pod ({CONTROLLER_SELECTOR}) at the leader's address {ip}")


AGENT_SELECTOR = "app=antrea,component=antrea-agent"


async def agent_pod(api_client: Any, namespace: str, node: str) -> str:
    """The name of the running agent pod on ``node``."""
    from antrea.k8s.resources import ApiClientResources, KubeError

    try:
        pods = await ApiClientResources(api_client).get(
            f"/api/v1/namespaces/{namespace}/pods",
            query=[("labelSelector", AGENT_SELECTOR), ("fieldSelector", f"spec.nodeName={node}")],
        )
    except KubeError as exc:
        raise AntctlError(f"cannot list the agent pods: {exc}") from exc
    names = [
        p["metadata"]["name"]
        for p in (pods or {}).get("items") or ()
        if (p.get("status") or {}).get("phase") == "Running"
    ]
    if not names:
        raise AntctlError(f"no running agent pod ({AGENT_SELECTOR}) on node {node}")
    return str(names[0])


async def agent_request(
    api_client: Any, namespace: str, node: str, port: int, path: str, *, token: str | None
) -> Any:
    pod = await agent_pod(api_client, namespace, node)
    host = api_client.configuration.host.rstrip("/")
    url = f"{host}/api/v1/namespaces/{namespace}/pods/https:{pod}:{port}/proxy{path}"
    return await send(api_client, "GET", url, params=None, token=token, what=f"agent {pod}")


async def send(
    api_client: Any,
    method: str,
    url: str,
    *,
    params: dict[str, str] | None,
    token: str | None,
    raw: bool = False,
    what: str = "controller",
) -> Any:
    conf = api_client.configuration
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
        headers[names.PROXIED_AUTHORIZATION_HEADER] = f"Bearer {token}"
    server_hostname = getattr(conf, "tls_server_name", None) or None
    try:
        async with (
            aiohttp.ClientSession() as s,
            s.request(
                method,
                url,
                params=params,
                headers=headers,
                ssl=tls_context(api_client) or ssl_context(conf),
                server_hostname=server_hostname,
                timeout=aiohttp.ClientTimeout(total=15),
            ) as resp,
        ):
            data = await resp.read()
            if raw and resp.status == 200:
                return data
            try:
                body = json.loads(data or b"null")
            except ValueError:
                if resp.status == 200:
                    raise
                body = data.decode(errors="replace").strip()
            if resp.status != 200:
                msg = body.get("message") if isinstance(body, dict) else body
                raise ProxyStatusError(
                    f"{what} via the Kubernetes API: HTTP {resp.status}: {msg}", resp.status
                )
            return body
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        raise AntctlError(f"{what} via the Kubernetes API {conf.host}: {exc}") from exc
