"""The agent's HTTPS operator endpoints as a feature: what ``/livez`` and ``/readyz`` check, and
where `antrea.agent.secureapi.SecureAPI` listens.

`OperatorAPI` starts as soon as the Node is read, before the bridge (kubelet's liveness probe
answers during a long start), on ``secureAPIBindAddress`` or else the Node's InternalIP, port
``apiPort``; ``secureAPIBindAddress: none``, no Kubernetes client (nothing to review tokens with)
or no address leaves it off. Its checks:

- livez: ``ping``; ``background-tasks`` (`tasks_alive`: no agent task failed);
- readyz: ``agent-started`` (the agent's ``ready`` event), ``ovs-connection`` (the canary's
  `antrea.agent.canary.OvsCanary.connected`), ``background-tasks``.

``/metrics`` and ``/agentinfo`` are served by the handlers the agent passes, behind a
TokenReview and a SubjectAccessReview (`antrea.agent.secureapi`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from antrea.agent.config import AgentConfig
from antrea.agent.kube import NodeInfo
from antrea.agent.secureapi import Handler, SecureAPI
from antrea.apis.agentapi import AGENTINFO
from antrea.k8s.resources import ApiClientResources, KubeApiClient
from antrea.k8s.reviews import AccessReviewer, TokenAuthenticator
from antrea.util.health import Check
from antrea.util.supervisor import Supervisor

log = structlog.get_logger(__name__)


class OperatorAPI:
    def __init__(
        self,
        cfg: AgentConfig,
        *,
        tasks: Supervisor,
        ready: asyncio.Event,
        ovs_connected: Callable[[], str | None],
        metrics: Handler,
        agentinfo: Callable[[], Awaitable[dict[str, Any]]],
    ) -> None:
        self.cfg = cfg
        self.tasks = tasks
        self.ready = ready
        self.ovs_connected = ovs_connected
        self.metrics = metrics
        self.agentinfo = agentinfo
        self.server: SecureAPI | None = None  # once started

    def tasks_alive(self) -> str | None:
        """The ``background-tasks`` check: the agent tasks that failed. One-shot tasks
        (round_cleanup, networkpolicy_ready) that returned are fine: counting them kept a
        healthy agent unready forever on a real kubelet."""
        dead = self.tasks.failed()
        return f"stopped: {', '.join(dead)}" if dead else None

    def _started(self) -> str | None:
        return None if self.ready.is_set() else "starting"

    async def _agentinfo(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await self.agentinfo())

    async def start(self, node: NodeInfo, api_client: KubeApiClient | None) -> int | None:
        """Listen on the node's address (HTTPS, a fresh self-signed certificate); the bound
        port, None when the endpoints are off."""
        bind = self.cfg.secureAPIBindAddress
        if bind == "none" or api_client is None:
            return None
        host = bind or (str(node.internal_ip) if node.internal_ip else "")
        if not host:
            log.warning("secure_api_disabled_no_node_address", node=self.cfg.nodeName)
            return None
        kube = ApiClientResources(api_client)
        self.server = SecureAPI(
            livez=[Check("ping", lambda: None), Check("background-tasks", self.tasks_alive)],
            readyz=[
                Check("agent-started", self._started),
                Check("ovs-connection", self.ovs_connected),
                Check("background-tasks", self.tasks_alive),
            ],
            metrics=self.metrics,
            authenticator=TokenAuthenticator(kube),
            reviewer=AccessReviewer(kube),
            operator={AGENTINFO: self._agentinfo},
        )
        hosts = [host, self.cfg.nodeName, "localhost", "127.0.0.1"]
        return await self.server.start(host, self.cfg.apiPort, hosts)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
