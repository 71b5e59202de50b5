"""What the agent's features need from the agent, as typed protocols.

`antrea.agent.agent.Agent` composes its features explicitly (no optional-module hooks): the
NetworkPolicy realization (`antrea.agent.networkpolicy.start`), AntreaProxy
(`antrea.agent.proxy.start`) and the CNI server (`antrea.agent.cniserver.server.CNIServer`) each
take the narrow view below rather than the whole agent, so what a feature may touch is written
down and checked by mypy (unit tests pass small fakes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from antrea.agent.cniserver.podconfig import Confirm, Request
    from antrea.agent.config import AgentConfig
    from antrea.agent.interfacestore import InterfaceStore
    from antrea.agent.kube import NodeInfo
    from antrea.k8s.resources import KubeApiClient
    from antrea.ovs.openflow.bundle import FlowTransport
    from antrea.ovs.openflow.client import CoalescingWriter, FlowClient
    from antrea.ovs.openflow.cookie import Category
    from antrea.ovs.ovsctl import OfCtl


class TaskOwner(Protocol):
    def add_task(self, coro: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        """Run a background task owned (logged, reported, cancelled) by the agent."""
        ...


class FeatureHost(TaskOwner, Protocol):
    """What every feature reads from the agent: its config, the node, the Kubernetes client,
    the metrics registry, the switch's ofctl and the gateway's MAC."""

    @property
    def cfg(self) -> AgentConfig: ...
    @property
    def node_name(self) -> str: ...
    @property
    def node(self) -> NodeInfo | None: ...
    @property
    def api_client(self) -> KubeApiClient | None: ...
    @property
    def registry(self) -> CollectorRegistry: ...
    @property
    def ofctl(self) -> OfCtl: ...
    @property
    def gateway_mac(self) -> str: ...


class PolicyHost(FeatureHost, Protocol):
    """What NetworkPolicy realization needs from the agent (it only writes
    ``controller_connected``, shown in agentinfo, and sets ``policy_ready`` once the initial
    policy set is realized)."""

    controller_connected: bool

    @property
    def app(self) -> web.Application: ...  # the local API: add routes before it starts
    @property
    def flow_client(self) -> FlowClient: ...
    @property
    def interface_store(self) -> InterfaceStore: ...
    @property
    def round_num(self) -> int: ...
    @property
    def policy_ready(self) -> asyncio.Event: ...


class ProxyHost(FeatureHost, Protocol):
    """What AntreaProxy needs from the agent."""

    @property
    def writer(self) -> CoalescingWriter: ...
    @property
    def transport(self) -> FlowTransport: ...

    def cookie(self, category: Category, object_id: int = 0) -> int: ...


class PodNetwork(Protocol):
    """What the CNI server needs: the four CNI commands on this node's pod network."""

    async def add(self, req: Request, confirm: Confirm | None = None) -> dict[str, Any]: ...

    async def delete(self, req: Request) -> None: ...

    async def check(self, req: Request) -> None: ...

    async def gc(self, req: Request) -> None: ...
