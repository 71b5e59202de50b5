"""The agent end of the CNI socket: one JSON request line in, one JSON response line out.

The plugin (``antrea.cni.plugin``) validated the invocation already; this side decodes the
request (``antrea.cni.protocol``), runs the command through `PodConfigurator`, and answers with
a 1.1.0-shaped result or a CNI error. ADD waits for the agent to be ready (node network
initialised) for up to `ready_timeout`, then answers 11 "try again later", like Antrea's
podNetworkWait.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

import structlog

from antrea.agent.cniserver.podconfig import PodConfigurator, Request, parse_cni_args
from antrea.cni import protocol
from antrea.cni.errors import INTERNAL, PLUGIN_NOT_AVAILABLE, TRY_AGAIN_LATER, CniError

log = structlog.get_logger(__name__)


class CNIMetrics:
    """Prometheus instruments of the CNI server, registered in the agent's registry."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter(
            "antrea_agent_cni_requests",
            "CNI requests handled by the agent, by command and result.",
            ["command", "result"],
            registry=registry,
        )
        self.duration = Histogram(
            "antrea_agent_cni_request_duration_seconds",
            "Time the agent took to handle a CNI request.",
            ["command"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )


class CNIServer:
    def __init__(
        self,
        *,
        socket_path: str,
        pods: PodConfigurator,
        ready: asyncio.Event,
        metrics: CNIMetrics | None = None,
        ready_timeout: float = 30.0,
        policy_ready: asyncio.Event | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.pods = pods
        self.ready = ready
        self.metrics = metrics
        self.ready_timeout = ready_timeout
        # When given, ADD also waits for the initial NetworkPolicy sync (Antrea's podNetworkWait):
        # a new pod never runs without the policies that select it.
        self.policy_ready = policy_ready
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        path = Path(self.socket_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._server = await asyncio.start_unix_server(
            self._handle, path=str(path), limit=protocol.MAX_MESSAGE_BYTES
        )
        os.chmod(path, 0o600)
        log.info("cni_server_started", socket=str(path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        start = time.perf_counter()
        command = "UNKNOWN"
        try:
            line = await reader.readline()
            try:
                raw = protocol.decode_request(line)
                command = str(raw["command"])
                result = await self.dispatch(raw)
                payload = protocol.encode_result(result)
                outcome = "success"
            except CniError as exc:
                payload = protocol.encode_error(exc.code, exc.msg, exc.details)
                outcome = "error"
            except Exception as exc:
                log.exception("cni_request_failed", command=command)
                payload = protocol.encode_error(INTERNAL, "internal agent error", repr(exc))
                outcome = "error"
            writer.write(payload)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            outcome = "error"
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        if self.metrics is not None:
            self.metrics.requests.labels(command, outcome).inc()
            self.metrics.duration.labels(command).observe(time.perf_counter() - start)
        log.info(
            "cni_request_handled",
            command=command,
            result=outcome,
            ms=round((time.perf_counter() - start) * 1000, 1),
        )

    async def _wait_ready(self, *, policy: bool = False) -> None:
        events = [self.ready]
        if policy and self.policy_ready is not None:
            events.append(self.policy_ready)
        if all(e.is_set() for e in events):
            return
        try:
            async with asyncio.timeout(self.ready_timeout):
                for e in events:
                    await e.wait()
        except TimeoutError:
            what = "pod network" if not self.ready.is_set() else "NetworkPolicy sync"
            raise CniError(TRY_AGAIN_LATER, f"the antrea agent's {what} is not ready yet") from None

    async def dispatch(self, raw: dict[str, Any]) -> dict[str, Any]:
        req = Request(
            command=str(raw["command"]),
            container_id=str(raw.get("containerID", "")),
            netns=str(raw.get("netns", "")),
            ifname=str(raw.get("ifname", "")) or "eth0",
            args=parse_cni_args(str(raw.get("args", ""))),
            config=dict(raw.get("config") or {}),
        )
        if req.command == "STATUS":
            if not self.ready.is_set():
                raise CniError(PLUGIN_NOT_AVAILABLE, "the antrea agent is not ready")
            return {}
        await self._wait_ready(policy=req.command == "ADD")
        if req.command == "ADD":
            return await self.pods.add(req)
        if req.command == "DEL":
            await self.pods.delete(req)
            return {}
        if req.command == "CHECK":
            await self.pods.check(req)
            return {}
        if req.command == "GC":
            await self.pods.gc(req)
            return {}
        raise CniError(INTERNAL, f"unsupported command {req.command}")
