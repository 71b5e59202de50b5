"""The agent's operator endpoints as a feature: when they are off, and what livez and readyz
check (over real TLS on a loopback port)."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from typing import Any, cast

import aiohttp
from aiohttp import web

from antrea.agent.config import AgentConfig
from antrea.agent.kube import NodeInfo
from antrea.agent.operatorapi import OperatorAPI
from antrea.k8s.resources import KubeApiClient
from antrea.util.supervisor import Supervisor

NODE = NodeInfo("n1", ipaddress.IPv4Network("10.244.1.0/24"), None)
# never called: probes need no review (metrics and agentinfo are test_secureapi.py's)
NO_REVIEWS = cast(KubeApiClient, object())


class Parts:
    def __init__(self, bind: str = "127.0.0.1") -> None:
        self.tasks = Supervisor("test")
        self.ready = asyncio.Event()
        self.ovs: str | None = "not checked yet"

        async def metrics(request: web.Request) -> web.Response:
            return web.Response(text="")

        async def info() -> dict[str, Any]:
            return {}

        self.api = OperatorAPI(
            AgentConfig(nodeName="n1", apiPort=0, secureAPIBindAddress=bind),
            tasks=self.tasks,
            ready=self.ready,
            ovs_connected=lambda: self.ovs,
            metrics=metrics,
            agentinfo=info,
        )


async def get(port: int, path: str) -> tuple[int, str]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"https://127.0.0.1:{port}{path}", ssl=ctx) as r,
    ):
        return r.status, await r.text()


async def test_off_without_a_client_an_address_or_when_told() -> None:
    assert await Parts("none").api.start(NODE, NO_REVIEWS) is None
    assert await Parts().api.start(NODE, None) is None  # nothing to review tokens with
    assert await Parts("").api.start(NODE, NO_REVIEWS) is None  # no InternalIP to bind
    await Parts().api.stop()  # never started: nothing to stop


async def test_readyz_waits_for_the_agent_and_ovs_livez_names_a_failed_task() -> None:
    parts = Parts()
    port = await parts.api.start(NODE, NO_REVIEWS)
    assert port is not None
    try:
        assert await get(port, "/livez") == (200, "ok\n")
        status, text = await get(port, "/readyz?verbose")
        assert status == 500
        assert "[-]agent-started failed: starting" in text
        assert "[-]ovs-connection failed: not checked yet" in text
        parts.ready.set()
        parts.ovs = None
        status, text = await get(port, "/readyz?verbose")
        assert (status, text) == (
            200,
            "[+]agent-started ok\n[+]ovs-connection ok\n[+]background-tasks ok\nok\n",
        )

        async def boom() -> None:
            raise RuntimeError("stream lost")

        parts.tasks.spawn("networkpolicy_stream", boom())
        await asyncio.sleep(0.01)
        status, text = await get(port, "/livez?verbose")
        assert status == 500
        assert "[-]background-tasks failed: stopped: networkpolicy_stream" in text
        assert (await get(port, "/readyz"))[0] == 500
    finally:
        await parts.api.stop()
        await parts.tasks.stop()
