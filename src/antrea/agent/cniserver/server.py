"""The agent end of the CNI socket. Two clients speak to it, one request per connection:

- the C executable (``antrea.apis.cni.shimproto``, "antrea-cni/2"): it forwards the raw ``CNI_*``
  environment and stdin; this side applies every CNI rule (``antrea.apis.cni.invocation.begin`` /
  ``finish``, the code the Python plugin runs) and answers with the exit status and stdout;
- the Python ``antrea-cni`` (``antrea.apis.cni.protocol``, version 1): it validated the invocation
  itself and sends one JSON request line; the answer is one JSON line.

Either way the command runs through `PodConfigurator`. ADD waits for the agent to be ready
(node network initialised) for up to `ready_timeout`, then answers 11 "try again later", like
Antrea's podNetworkWait. A client that goes away before it has the answer (the runtime's
timeout, code 11 on its side) cancels the request: an ADD is rolled back, never completed
behind the runtime's back; with the C executable an ADD is kept only once it acknowledged the
answer (`_Exchange`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from antrea.agent.cniserver.podconfig import (
    Confirm,
    Request,
    RequestAbandoned,
    host_netns_path,
    parse_cni_args,
)
from antrea.agent.host import PodNetwork
from antrea.apis.cni import invocation, protocol, shimproto
from antrea.apis.cni.errors import (
    DECODING_FAILURE,
    INTERNAL,
    IO_FAILURE,
    PLUGIN_NOT_AVAILABLE,
    TRY_AGAIN_LATER,
    CniError,
)
from antrea.apis.cni.request import CONFIG_TOO_LARGE

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
        pods: PodNetwork,
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
        outcome = "error"
        try:
            line = await reader.readline()
            if line.startswith(shimproto.MAGIC):
                command, outcome = await self._handle_shim(line, reader, writer)
            else:
                command, outcome = await self._handle_v1(line, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, shimproto.ShimProtocolError):
            outcome = "error"
        except ValueError:  # a line over the reader's limit
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

    async def _handle_v1(
        self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[str, str]:
        """The Python plugin: a validated JSON request line; a JSON answer line."""
        try:
            raw = protocol.decode_request(line)
        except CniError as exc:
            writer.write(protocol.encode_error(exc.code, exc.msg, exc.details))
            await writer.drain()
            return "UNKNOWN", "error"

        def encode(outcome: dict[str, Any] | CniError) -> bytes:
            if isinstance(outcome, CniError):
                return protocol.encode_error(outcome.code, outcome.msg, outcome.details)
            return protocol.encode_result(outcome)

        timeout = _timeout_of(raw.get("config"))
        exchange = _Exchange(reader, writer, encode, acknowledges=False, timeout=timeout)
        command = str(raw["command"])
        return command, await exchange.run(self, raw)

    async def _handle_shim(
        self, header: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[str, str]:
        """The C executable: raw environment and stdin in, exit status and stdout out."""
        env_len, stdin_len, flags = shimproto.parse_header(header)
        environ = shimproto.parse_env(await reader.readexactly(env_len))
        data = await reader.readexactly(stdin_len)
        error: CniError | None = None
        if flags & shimproto.FLAG_STDIN_READ_ERROR:
            error = CniError(IO_FAILURE, "failed to read network config from stdin")
        elif flags & shimproto.FLAG_STDIN_TOO_LARGE:
            error = CniError(DECODING_FAILURE, CONFIG_TOO_LARGE)
        stdin = invocation.Stdin(data=data, error=error)
        begun = invocation.begin(environ, stdin)
        if isinstance(begun, invocation.Answer):
            writer.write(shimproto.encode_answer(begun.rc, begun.stdout))
            await writer.drain()
            return environ.get("CNI_COMMAND", "UNKNOWN")[:16], "error" if begun.rc else "success"
        req = begun
        raw = protocol.request_fields(
            command=req.command,
            container_id=req.container_id,
            netns=req.netns,
            ifname=req.ifname,
            args=req.args,
            path=req.path,
            config=req.config,
        )

        def encode(outcome: dict[str, Any] | CniError) -> bytes:
            answer = invocation.finish(req, outcome, stdin)
            return shimproto.encode_answer(answer.rc, answer.stdout)

        exchange = _Exchange(reader, writer, encode, acknowledges=True, timeout=req.timeout)
        return req.command, await exchange.run(self, raw)

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

    async def dispatch(self, raw: dict[str, Any], confirm: Confirm | None = None) -> dict[str, Any]:
        """Run one validated request; for ADD, ``confirm`` delivers the result (see `_Exchange`)."""
        req = Request(
            command=str(raw["command"]),
            container_id=str(raw.get("containerID", "")),
            netns=host_netns_path(str(raw.get("netns", ""))),
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
            return await self.pods.add(req, confirm=confirm)
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


def _timeout_of(config: object) -> float:
    value = config.get("cniTimeoutSeconds") if isinstance(config, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 86400:
        return float(value)
    return protocol.DEFAULT_TIMEOUT_SECONDS


class _Exchange:
    """One request's life on its connection: run it, answer it, notice the client leaving.

    The client never half-closes, so end-of-file (or any byte) before the answer means the
    runtime gave up (plugin timeout -> code 11, or the plugin was killed): the request is
    cancelled and an ADD rolls back. The answer is delivered by ``confirm`` from inside the ADD
    (while it holds the container's lock); with ``acknowledges`` the ADD is kept only if the
    client then acknowledges (``shimproto.ACK``) -- the C executable does so only within its
    own deadline, and only then prints the result.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        encode: Callable[[dict[str, Any] | CniError], bytes],
        *,
        acknowledges: bool,
        timeout: float,
    ) -> None:
        self.writer = writer
        self.encode = encode
        self.acknowledges = acknowledges
        self.deadline = time.monotonic() + timeout + 5.0
        self.answered = False
        self.peer: asyncio.Future[bytes] = asyncio.ensure_future(reader.read(1))

    async def deliver(self, outcome: dict[str, Any] | CniError) -> bool:
        """Write the answer; whether the client has it (acknowledged, when it acknowledges)."""
        if self.peer.done():  # gone (or out of turn) before the answer: do not keep anything
            return False
        self.answered = True
        try:
            self.writer.write(self.encode(outcome))
            await self.writer.drain()
            if not self.acknowledges:
                return True
            left = max(0.0, self.deadline - time.monotonic())
            async with asyncio.timeout(left):
                ack = await asyncio.shield(self.peer)
        except (ConnectionError, TimeoutError):
            return False
        return ack == shimproto.ACK

    async def run(self, server: CNIServer, raw: dict[str, Any]) -> str:
        confirm = self.deliver if raw.get("command") == "ADD" else None
        task = asyncio.ensure_future(server.dispatch(raw, confirm=confirm))
        try:
            pending: set[asyncio.Future[Any]] = {task, self.peer}
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and not self.answered:
                task.cancel()  # an ADD in progress rolls back (PodConfigurator.add)
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                log.warning(
                    "cni_request_abandoned",
                    command=raw.get("command"),
                    container_id=raw.get("containerID"),
                )
                return "abandoned"
            outcome: dict[str, Any] | CniError
            try:
                outcome = await task
            except RequestAbandoned:
                return "abandoned"
            except CniError as exc:
                outcome = exc
            except Exception as exc:
                log.exception("cni_request_failed", command=raw.get("command"))
                outcome = CniError(INTERNAL, "internal agent error", repr(exc))
            if self.answered:  # ADD delivered (and kept) its result itself
                return "success"
            await self.deliver(outcome)
            return "error" if isinstance(outcome, CniError) else "success"
        finally:
            if not task.done():
                task.cancel()
            self.peer.cancel()
