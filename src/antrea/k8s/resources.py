"""A tiny JSON view of the Kubernetes REST API for the few objects the control plane manages.

The controller (Lease, Endpoints, ConfigMap, Secret, TokenReview), the agent's controller client
(Endpoints, ConfigMap) and antctl only need get/create/replace on single objects addressed by
path. Typed kubernetes-asyncio models would add nothing but conversion code, so this wraps
``ApiClient.call_api`` and speaks plain dicts. `KubeResources` is the seam the unit tests fake.
"""

from __future__ import annotations

from typing import Any, Protocol

from antrea.k8s.client import bearer_token, load_kubeconfig_client
from antrea.k8s.errors import Conflict, KubeError, status_error

__all__ = [
    "JSON",
    "ApiClientResources",
    "Conflict",
    "KubeApiClient",
    "KubeError",
    "KubeResources",
    "bearer_token",
    "load_api_client",
    "ns_path",
]

JSON = dict[str, Any]


class KubeResources(Protocol):
    async def get(self, path: str) -> JSON | None:
        """The object at ``path``, or None on 404."""
        ...

    async def create(self, collection: str, body: JSON) -> JSON:
        """POST ``body`` to ``collection``; raises `Conflict` on 409."""
        ...

    async def replace(self, path: str, body: JSON) -> JSON:
        """PUT ``body`` at ``path`` (optimistic concurrency through its resourceVersion)."""
        ...


class KubeApiClient(Protocol):
    """What antrea uses of a kubernetes-asyncio ``ApiClient`` (the library has no type hints):
    `load_api_client` makes one, `ApiClientResources` and the informers' list functions call
    it, its owner closes it."""

    configuration: Any  # kubernetes_asyncio.client.Configuration: host, api_key, TLS

    def call_api(self, resource_path: str, method: str, *args: Any, **kwargs: Any) -> Any: ...

    async def close(self) -> None: ...


def ns_path(group_version: str, namespace: str, plural: str, name: str | None = None) -> str:
    """REST path of a namespaced object (``group_version`` "v1" means the core group)."""
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    base = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{base}/{name}" if name else base


class ApiClientResources:
    """`KubeResources` over a kubernetes-asyncio ``ApiClient`` (auth and TLS come from it)."""

    def __init__(self, api_client: Any, *, timeout: float = 5.0) -> None:
        self.api_client = api_client
        self.timeout = timeout

    async def _call(
        self,
        method: str,
        path: str,
        body: JSON | None = None,
        query: list[tuple[str, str]] | None = None,
    ) -> JSON | None:
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            out = await self.api_client.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                body=body,
                response_types_map={200: "object", 201: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=self.timeout,
            )
        except ApiException as exc:
            if exc.status == 404 and method == "GET":
                return None
            text = exc.body if isinstance(exc.body, (bytes, str)) and exc.body else str(exc.reason)
            raise status_error(int(exc.status or 0), text) from exc
        except (OSError, TimeoutError) as exc:
            raise KubeError(0, repr(exc)) from exc
        return out if isinstance(out, dict) else {}

    async def get(self, path: str, *, query: list[tuple[str, str]] | None = None) -> JSON | None:
        """The object (or list) at ``path``, with an optional query; None on 404."""
        return await self._call("GET", path, query=query)

    async def create(self, collection: str, body: JSON) -> JSON:
        return await self._call("POST", collection, body) or {}

    async def replace(self, path: str, body: JSON) -> JSON:
        return await self._call("PUT", path, body) or {}


async def load_api_client(kubeconfig: str | None, *, server: str | None = None) -> KubeApiClient:
    """An ``ApiClient`` from a kubeconfig file, or in-cluster config when ``kubeconfig`` is None.

    A coroutine for its callers' convenience; the work is `antrea.k8s.client`'s (one kubeconfig
    reader for the whole code base), which must run with the event loop running.
    """
    client: KubeApiClient = load_kubeconfig_client(kubeconfig or None, server=server or None)
    return client
