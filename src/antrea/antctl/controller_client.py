"""How antctl reaches the controller: kubeconfig (admin token) -> Endpoints + CA -> HTTPS GET.

Lookup order for the kubeconfig: ``--kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config``. The
controller's address comes from Endpoints ``kube-system/antrea`` (the leader), its CA from
ConfigMap ``kube-system/antrea-ca``; ``--server https://HOST:PORT`` skips the Endpoints lookup.

``--via-apiserver`` sends the request through the Kubernetes API's ``services/proxy`` instead
(`antrea.antctl.viaapiserver`); without ``--server``/``--netns`` antctl also falls back to that
path when the controller's address cannot be connected to within `DIRECT_CONNECT_TIMEOUT`.
"""

from __future__ import annotations

import functools
import os
import ssl
from pathlib import Path
from typing import Any

from antrea.apis.controlplane.names import NAMESPACE
from antrea.errors import AntreaError

DIRECT_CONNECT_TIMEOUT = 3.0


class AntctlError(AntreaError):
    """A failure to report to the user (exit code 1), no traceback."""


def kubeconfig_path(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    env = os.environ.get("KUBECONFIG")
    if env:
        return env.split(os.pathsep)[0]
    default = Path.home() / ".kube" / "config"
    return str(default) if default.exists() else None


def _get_in_netns(
    netns: str,
    url: str,
    headers: dict[str, str],
    ctx: ssl.SSLContext,
    method: str = "GET",
    *,
    raw: bool = False,
) -> tuple[int, Any]:
    """GET ``url`` from inside network namespace ``netns`` (a worker thread enters it).

    In the lab the controller listens on a node address that only the node namespaces reach,
    while the Kubernetes API is reachable from here: discovery happens here, the request there.
    """
    import http.client
    import json
    from urllib.parse import urlsplit

    from antrea.util.netns import call_in, netns_path

    u = urlsplit(url)

    def fetch() -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection(u.hostname or "", u.port or 443, context=ctx, timeout=15)
        try:
            conn.request(method, u.path + (f"?{u.query}" if u.query else ""), headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    status, body = call_in(netns_path(netns), fetch)
    if raw and status == 200:
        return status, body
    return status, json.loads(body or b"null")


class ControllerClient:
    def __init__(
        self,
        kubeconfig: str | None,
        server: str | None = None,
        namespace: str = NAMESPACE,
        netns: str | None = None,
        *,
        via_apiserver: bool | None = None,
    ) -> None:
        """``via_apiserver``: True always through the Kubernetes API, False never, None
        (default) when the direct address cannot be connected to (and neither ``server`` nor
        ``netns`` was given)."""
        self.kubeconfig = kubeconfig_path(kubeconfig)
        self.server = server
        self.namespace = namespace
        self.netns = netns
        self.via_apiserver = via_apiserver

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return await self.request("GET", path, params)

    async def request(
        self, method: str, path: str, params: dict[str, str] | None = None, *, raw: bool = False
    ) -> Any:
        """The JSON answer (the body's bytes with ``raw``) of one call to the controller."""
        import aiohttp

        from antrea.apis.controlplane import names
        from antrea.k8s.lookup import config_map_value, endpoints_address
        from antrea.k8s.resources import (
            ApiClientResources,
            KubeError,
            bearer_token,
            load_api_client,
        )

        if self.kubeconfig is None:
            raise AntctlError("no kubeconfig: use --kubeconfig or set KUBECONFIG")
        if not Path(self.kubeconfig).is_file():
            raise AntctlError(f"kubeconfig {self.kubeconfig} not found")
        try:
            api_client = await load_api_client(self.kubeconfig)
        except Exception as exc:
            raise AntctlError(f"invalid kubeconfig {self.kubeconfig}: {exc}") from exc
        try:
            from antrea.antctl import viaapiserver

            kube = ApiClientResources(api_client)
            ns = self.namespace
            token = bearer_token(api_client)
            if self.via_apiserver:
                return await viaapiserver.request(
                    api_client, ns, method, path, params=params, token=token, raw=raw
                )
            try:
                ca_text = await config_map_value(
                    kube, ns, names.CA_CONFIGMAP, names.CA_CONFIGMAP_KEY
                )
                found = None
                if not self.server:
                    found = await endpoints_address(
                        kube, ns, names.ENDPOINTS_NAME, port_name=names.ENDPOINTS_PORT_NAME
                    )
            except KubeError as exc:
                raise AntctlError(f"cannot reach the Kubernetes API: {exc}") from exc
            if ca_text is None:
                raise AntctlError(
                    f"cannot find the controller: no {names.CA_CONFIGMAP_KEY} in ConfigMap "
                    f"{ns}/{names.CA_CONFIGMAP}"
                )
            ca = ca_text.encode()
            if self.server:
                base = self.server.rstrip("/")
            elif found is None:
                raise AntctlError(
                    f"cannot find the controller: no controller endpoint in Endpoints "
                    f"{ns}/{names.ENDPOINTS_NAME}"
                )
            else:
                host, port = found
                base = f"https://{f'[{host}]' if ':' in host else host}:{port}"
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            ctx = ssl.create_default_context(cadata=ca.decode())
            if self.netns:
                import asyncio
                from urllib.parse import urlencode

                url = base + path + (f"?{urlencode(params)}" if params else "")
                try:
                    status, body = await asyncio.to_thread(
                        functools.partial(_get_in_netns, raw=raw),
                        self.netns,
                        url,
                        headers,
                        ctx,
                        method,
                    )
                except (OSError, ValueError) as exc:
                    raise AntctlError(f"controller {base} (netns {self.netns}): {exc}") from exc
                if status != 200:
                    msg = body.get("message") if isinstance(body, dict) else body
                    raise AntctlError(f"controller {base}: HTTP {status}: {msg}")
                return body
            try:
                async with (
                    aiohttp.ClientSession() as s,
                    s.request(
                        method,
                        base + path,
                        params=params,
                        headers=headers,
                        ssl=ctx,
                        timeout=aiohttp.ClientTimeout(
                            total=15, sock_connect=DIRECT_CONNECT_TIMEOUT
                        ),
                    ) as resp,
                ):
                    if raw and resp.status == 200:
                        return await resp.read()
                    body = await resp.json(content_type=None)
                    if resp.status != 200:
                        msg = body.get("message") if isinstance(body, dict) else body
                        raise AntctlError(f"controller {base}: HTTP {resp.status}: {msg}")
                    return body
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                unreachable = not isinstance(exc, aiohttp.ClientSSLError)
                if unreachable and self.via_apiserver is None and not self.server:
                    return await viaapiserver.request(
                        api_client, ns, method, path, params=params, token=token, raw=raw
                    )
                raise AntctlError(f"controller {base}: {exc}") from exc
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                hint = " (in a lab, add --netns antrea-<lab>-node1, or --via-apiserver)"
                raise AntctlError(f"controller {base}: {exc}{hint}") from exc
        finally:
            await api_client.close()
