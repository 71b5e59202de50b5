"""The agent's view of the Kubernetes API: its Node, all Nodes (list + watch), its pods.

Plain JSON over a kubernetes-asyncio ``ApiClient`` (auth/TLS from the kubeconfig): the agent
needs three fields of a Node, so typed models would only add conversion cost. `NodeAPI` is the
seam tests fake. `watch_nodes` follows every Node with `antrea.k8s.informer.Informer` (list,
watch from the list's resourceVersion, re-list on ``410 Gone``); the handler gets the full set
after every (re)list as a `NodeEventKind.SYNC` event.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import structlog

from antrea.k8s.informer import Informer, path_list_func, strip_managed_fields
from antrea.k8s.resources import ApiClientResources

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

    async def list_pods_on_node(self, node: str) -> list[JSON]: ...


class ApiClientNodeAPI:
    """`NodeAPI` over a kubernetes-asyncio ApiClient (`antrea.k8s.resources`), plain JSON."""

    def __init__(self, api_client: Any) -> None:
        self.kube = ApiClientResources(api_client, timeout=30)

    async def get_node(self, name: str) -> JSON | None:
        return await self.kube.get(f"/api/v1/nodes/{name}")

    async def list_pods_on_node(self, node: str) -> list[JSON]:
        out = await self.kube.get(
            "/api/v1/pods", query=[("fieldSelector", f"spec.nodeName={node}")]
        )
        return list((out or {}).get("items") or [])


async def own_node(node_api: NodeAPI, name: str) -> NodeInfo:
    """This Node once it has a podCIDR (read again, backing off up to 5 s, until then)."""
    delay = 0.5
    while True:
        try:
            obj = await node_api.get_node(name)
        except Exception as exc:
            log.warning("node_read_failed", node=name, error=repr(exc))
            obj = None
        if obj is not None:
            info = node_info(obj)
            if info.pod_cidr is not None:
                return info
            log.info("node_pod_cidr_pending", node=name)
        else:
            log.info("node_not_found_yet", node=name)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


NodeHandler = Callable[[NodeEvent], Awaitable[None]]


def node_informer(
    api_client: Any, handler: NodeHandler, *, retry_delay: float = 1.0, **kwargs: Any
) -> Informer:
    """An `Informer` of every Node that tells ``handler`` in `NodeEvent` terms.

    The first list arrives as one `NodeEventKind.SYNC` (not one ADDED per node); afterwards
    each change is ADDED, MODIFIED or DELETED, and every re-list (after ``410 Gone``) ends with
    a SYNC holding every Node, after the changes the re-list found. When ``handler`` fails, it
    gets a SYNC of every cached Node ``retry_delay`` seconds later, until it succeeds (events
    wait meanwhile). ``kwargs`` go to `Informer` (backoff at most 1 s by default).
    """
    kwargs.setdefault("backoff_max", 1.0)
    informer = Informer(
        path_list_func(api_client, "/api/v1/nodes"),
        name="nodes",
        transform=strip_managed_fields,
        **kwargs,
    )
    listed = False

    async def deliver(event: NodeEvent) -> None:
        while True:
            try:
                await handler(event)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("node_event_failed", kind=event.kind.value, error=repr(exc))
            await asyncio.sleep(retry_delay)
            # The cache already holds the failed change: reconcile everything from it.
            event = NodeEvent(NodeEventKind.SYNC, tuple(node_info(o) for o in informer.list()))

    async def on_add(obj: JSON) -> None:
        if listed:  # the first list is delivered as one SYNC
            await deliver(NodeEvent(NodeEventKind.ADDED, (node_info(obj),)))

    async def on_update(old: JSON, new: JSON) -> None:
        await deliver(NodeEvent(NodeEventKind.MODIFIED, (node_info(new),)))

    async def on_delete(obj: JSON) -> None:
        await deliver(NodeEvent(NodeEventKind.DELETED, (node_info(obj),)))

    async def on_sync(objs: list[JSON]) -> None:
        nonlocal listed
        listed = True
        await deliver(NodeEvent(NodeEventKind.SYNC, tuple(node_info(o) for o in objs)))

    informer.add_handler(on_add=on_add, on_update=on_update, on_delete=on_delete, on_sync=on_sync)
    return informer


async def watch_nodes(api_client: Any, handler: NodeHandler) -> None:
    """Follow every Node (`node_informer`) until cancelled; never gives up on errors."""
    await node_informer(api_client, handler).run()
