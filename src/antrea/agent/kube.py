"""The agent's view of the Kubernetes API: its Node, all Nodes (list + watch), its pods.

Plain JSON over a kubernetes-asyncio ``ApiClient`` (auth/TLS from the kubeconfig): the agent
needs three fields of a Node, so typed models would only add conversion cost. `NodeAPI` is the
seam tests fake. `watch_nodes` follows the informer pattern: list, then watch from the list's
resourceVersion, re-list on ``410 Gone`` or a broken stream; the handler gets the full set on
every (re)list as a `NodeEventKind.SYNC` event.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import structlog

from antrea.k8s.errors import KubeError, WatchExpired, status_error

log = structlog.get_logger(__name__)

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What pod networking needs from a Node object."""

    name: str
    pod_cidr: ipaddress.IPv4Network | None
    internal_ip: ipaddress.IPv4Address | None

    @property
    def gateway_ip(self) -> ipaddress.IPv4Address | None:
        return None if self.pod_cidr is None else next(self.pod_cidr.hosts())


def node_info(obj: JSON) -> NodeInfo:
    name = str((obj.get("metadata") or {}).get("name", ""))
    spec = obj.get("spec") or {}
    cidr: ipaddress.IPv4Network | None = None
    for c in [spec.get("podCIDR"), *(spec.get("podCIDRs") or [])]:
        if not c:
            continue
        try:
            net = ipaddress.ip_network(str(c), strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            cidr = net
            break
    ip: ipaddress.IPv4Address | None = None
    for addr in (obj.get("status") or {}).get("addresses") or []:
        if addr.get("type") != "InternalIP":
            continue
        try:
            a = ipaddress.ip_address(str(addr.get("address")))
        except ValueError:
            continue
        if isinstance(a, ipaddress.IPv4Address):
            ip = a
            break
    return NodeInfo(name, cidr, ip)


class NodeEventKind(Enum):
    SYNC = "sync"  # a full list (initial or after a re-list): `nodes` holds every Node
    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class NodeEvent:
    kind: NodeEventKind
    nodes: tuple[NodeInfo, ...]


class NodeAPI(Protocol):
    async def get_node(self, name: str) -> JSON | None: ...

    async def list_nodes(self) -> tuple[list[JSON], str]: ...

    def watch_nodes(self, resource_version: str) -> AsyncIterator[tuple[str, JSON]]: ...

    async def list_pods_on_node(self, node: str) -> list[JSON]: ...


class ApiClientNodeAPI:
    """`NodeAPI` over a kubernetes-asyncio ApiClient, speaking plain JSON."""

    def __init__(self, api_client: Any, *, watch_timeout: int = 300) -> None:
        self.api_client = api_client
        self.watch_timeout = watch_timeout

    async def _raw(self, path: str, query: list[tuple[str, Any]], timeout: float) -> Any:
        # _preload_content=False returns the raw aiohttp response, without a status check.
        return await self.api_client.call_api(
            path,
            "GET",
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )

    async def _get(self, path: str, query: list[tuple[str, Any]] | None = None) -> Any:
        raw = await self._raw(path, query or [], 30)
        try:
            body = await raw.read()
            if raw.status == 404:
                return None
            if not 200 <= raw.status < 300:
                raise status_error(raw.status, body)
            return json.loads(body)
        finally:
            raw.release()

    async def get_node(self, name: str) -> JSON | None:
        out = await self._get(f"/api/v1/nodes/{name}")
        return out if isinstance(out, dict) else None

    async def list_nodes(self) -> tuple[list[JSON], str]:
        return await self.list_objects("/api/v1/nodes")

    async def list_pods_on_node(self, node: str) -> list[JSON]:
        out = await self._get("/api/v1/pods", [("fieldSelector", f"spec.nodeName={node}")])
        return list((out or {}).get("items") or [])

    async def watch_nodes(self, resource_version: str) -> AsyncIterator[tuple[str, JSON]]:
        async for event in self.watch("/api/v1/nodes", resource_version):
            yield event

    async def list_objects(self, path: str) -> tuple[list[JSON], str]:
        """Every object of the collection at `path`, and the list's resourceVersion."""
        out = await self._get(path) or {}
        items = list(out.get("items") or [])
        return items, str((out.get("metadata") or {}).get("resourceVersion", ""))

    async def watch(self, path: str, resource_version: str) -> AsyncIterator[tuple[str, JSON]]:
        """(type, object) of one watch of the collection at `path` from `resource_version`,
        bookmarks included; ends at the server's timeout. ``410 Gone`` raises `WatchExpired`,
        any other failure `KubeError`."""
        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", self.watch_timeout),
        ]
        raw = await self._raw(path, query, self.watch_timeout + 30)
        try:
            if not 200 <= raw.status < 300:
                raise status_error(raw.status, await raw.read())
            while True:
                line = await raw.content.readline()
                if not line:
                    return
                if not line.strip():
                    continue
                ev = json.loads(line)
                typ = str(ev.get("type", ""))
                obj = ev.get("object") or {}
                if typ == "ERROR":
                    if obj.get("code") == 410:
                        raise WatchExpired()
                    raise KubeError(int(obj.get("code") or 0), str(obj.get("message")))
                yield typ, obj
        finally:
            raw.release()


_KINDS = {
    "ADDED": NodeEventKind.ADDED,
    "MODIFIED": NodeEventKind.MODIFIED,
    "DELETED": NodeEventKind.DELETED,
}


async def watch_nodes(
    api: NodeAPI,
    handler: Callable[[NodeEvent], Awaitable[None]],
    *,
    retry_delay: float = 1.0,
) -> None:
    """Informer loop for Nodes: runs until cancelled and never gives up on errors."""
    while True:
        try:
            items, rv = await api.list_nodes()
            await handler(NodeEvent(NodeEventKind.SYNC, tuple(node_info(o) for o in items)))
            while True:  # a watch ends at its timeout: continue from the last version seen
                async for typ, obj in api.watch_nodes(rv):
                    new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if new_rv:
                        rv = str(new_rv)
                    kind = _KINDS.get(typ)
                    if kind is not None:
                        await handler(NodeEvent(kind, (node_info(obj),)))
        except asyncio.CancelledError:
            raise
        except WatchExpired:
            log.info("node_watch_expired")
        except Exception as exc:
            log.warning("node_watch_failed", error=repr(exc))
            await asyncio.sleep(retry_delay)
