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
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp

from antrea.antctl.controller_client import AntctlError
from antrea.apis.controlplane import names


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
    """The JSON answer (bytes with ``raw``) of ``method path`` on the controller, proxied."""
    conf = api_client.configuration
    url = proxy_url(conf.host, namespace, path)
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
                ssl=ssl_context(conf),
                server_hostname=server_hostname,
                timeout=aiohttp.ClientTimeout(total=15),
            ) as resp,
        ):
            if raw and resp.status == 200:
                return await resp.read()
            body = await resp.json(content_type=None)
            if resp.status != 200:
                msg = body.get("message") if isinstance(body, dict) else body
                raise AntctlError(f"controller via the Kubernetes API: HTTP {resp.status}: {msg}")
            return body
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        raise AntctlError(f"controller via the Kubernetes API {conf.host}: {exc}") from exc
