"""The CNI socket server: protocol framing, readiness wait, error mapping, metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from antrea.agent.cniserver.podconfig import Request, RequestAbandoned, parse_cni_args
from antrea.agent.cniserver.server import CNIMetrics, CNIServer
from antrea.apis.cni import protocol, shimproto
from antrea.apis.cni.errors import IPAM_FAILURE, CniError


class FakePods:
    def __init__(self) -> None:
        self.calls: list[Request] = []

    async def add(self, req: Request, confirm: Any = None) -> dict[str, Any]:
        self.calls.append(req)
        if req.container_id == "bad":
            raise CniError(IPAM_FAILURE, "IP allocation failed", "exhausted")
        result = {"cniVersion": "1.1.0", "ips": [{"address": "10.244.1.2/24"}]}
        if confirm is not None:
            await confirm(result)
        return result

    async def delete(self, req: Request) -> None:
        self.calls.append(req)

    async def check(self, req: Request) -> None:
        self.calls.append(req)

    async def gc(self, req: Request) -> None:
        self.calls.append(req)


async def call(sock: Path, command: str, cid: str = "c1") -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(str(sock))
    writer.write(
        protocol.encode_request(
            command=command,
            container_id=cid,
            netns="/var/run/netns/p",
            ifname="eth0",
            args="K8S_POD_NAMESPACE=x;K8S_POD_NAME=a",
            path="/opt/cni/bin",
            config={"cniVersion": "1.0.0", "name": "antrea"},
        )
    )
    await writer.drain()
    line = await reader.readline()
    writer.close()
    return dict(json.loads(line))


async def test_requests_are_dispatched_and_errors_mapped(tmp_path: Path) -> None:
    pods = FakePods()
    ready = asyncio.Event()
    ready.set()
    registry = CollectorRegistry()
    server = CNIServer(
        socket_path=str(tmp_path / "cni.sock"),
        pods=pods,
        ready=ready,
        metrics=CNIMetrics(registry),
    )
    await server.start()
    try:
        ok = await call(tmp_path / "cni.sock", "ADD")
        assert ok["result"]["ips"][0]["address"] == "10.244.1.2/24"
        assert pods.calls[0].pod_name == "a" and pods.calls[0].pod_namespace == "x"
        err = await call(tmp_path / "cni.sock", "ADD", "bad")
        assert err["error"]["code"] == IPAM_FAILURE
        assert (await call(tmp_path / "cni.sock", "DEL"))["result"] == {}
        assert (await call(tmp_path / "cni.sock", "STATUS"))["result"] == {}
    finally:
        await server.stop()
    value = registry.get_sample_value(
        "antrea_agent_cni_requests_total", {"command": "ADD", "result": "error"}
    )
    assert value == 1.0


async def test_not_ready_answers_try_again_later(tmp_path: Path) -> None:
    server = CNIServer(
        socket_path=str(tmp_path / "cni.sock"),
        pods=FakePods(),
        ready=asyncio.Event(),
        ready_timeout=0.1,
    )
    await server.start()
    try:
        assert (await call(tmp_path / "cni.sock", "ADD"))["error"]["code"] == 11
        assert (await call(tmp_path / "cni.sock", "STATUS"))["error"]["code"] == 50
    finally:
        await server.stop()


async def test_add_waits_for_policy_sync_when_asked(tmp_path: Path) -> None:
    """With policy_ready given, ADD answers 11 until the initial policy sync, DEL does not wait."""
    ready, policy = asyncio.Event(), asyncio.Event()
    ready.set()
    pods = FakePods()
    server = CNIServer(
        socket_path=str(tmp_path / "cni.sock"),
        pods=pods,
        ready=ready,
        ready_timeout=0.1,
        policy_ready=policy,
    )
    await server.start()
    try:
        assert (await call(tmp_path / "cni.sock", "ADD"))["error"]["code"] == 11
        assert (await call(tmp_path / "cni.sock", "DEL"))["result"] == {}
        policy.set()
        assert "result" in await call(tmp_path / "cni.sock", "ADD")
    finally:
        await server.stop()


def test_cni_args_parsing() -> None:
    args = parse_cni_args("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;junk")
    assert args == {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "ns", "K8S_POD_NAME": "p"}


# -- the C executable's protocol: answers, and ADDs the runtime gave up on ----------------


class SlowPods(FakePods):
    """An ADD that takes `delay` and records how it ended: kept, cancelled or not confirmed."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.outcomes: list[str] = []

    async def add(self, req: Request, confirm: Any = None) -> dict[str, Any]:
        self.calls.append(req)
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.outcomes.append("cancelled")
            raise
        result = {"cniVersion": "1.1.0", "ips": [{"address": "10.244.1.2/24"}]}
        if confirm is not None and not await confirm(result):
            self.outcomes.append("rolled back")
            raise RequestAbandoned(req.container_id)
        self.outcomes.append("kept")
        return result


SHIM_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/var/run/netns/p",
    "CNI_IFNAME": "eth0",
    "CNI_ARGS": "K8S_POD_NAMESPACE=x;K8S_POD_NAME=a",
}
SHIM_CONFIG = b'{"cniVersion": "1.0.0", "name": "antrea", "type": "antrea"}'


async def _server(tmp_path: Path, pods: Any) -> CNIServer:
    ready = asyncio.Event()
    ready.set()
    server = CNIServer(socket_path=str(tmp_path / "cni.sock"), pods=pods, ready=ready)
    await server.start()
    return server


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status, length = (int(x) for x in (await reader.readline()).split())
    return status, await reader.readexactly(length)


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_shim_request_is_validated_and_answered_in_the_runtime_version(
    tmp_path: Path,
) -> None:
    pods = FakePods()
    server = await _server(tmp_path, pods)
    try:
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "cni.sock"))
        writer.write(shimproto.encode_request(SHIM_ENV, SHIM_CONFIG))
        status, body = await _read_answer(reader)
        writer.write(shimproto.ACK)
        writer.close()
        assert status == 0
        assert json.loads(body)["cniVersion"] == "1.0.0"
        # a bad invocation is answered by the agent's validation; the pods never see it
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "cni.sock"))
        writer.write(shimproto.encode_request({**SHIM_ENV, "CNI_IFNAME": "a/b"}, SHIM_CONFIG))
        status, body = await _read_answer(reader)
        writer.close()
        assert status == 1 and json.loads(body)["code"] == 4
        assert len(pods.calls) == 1
    finally:
        await server.stop()


async def test_shim_leaving_before_the_answer_cancels_the_add(tmp_path: Path) -> None:
    pods = SlowPods(delay=30)
    server = await _server(tmp_path, pods)
    try:
        _, writer = await asyncio.open_unix_connection(str(tmp_path / "cni.sock"))
        writer.write(shimproto.encode_request(SHIM_ENV, SHIM_CONFIG))
        await writer.drain()
        await _until(lambda: pods.calls)
        writer.close()  # the runtime's timeout: the executable exits
        await _until(lambda: pods.outcomes)
        assert pods.outcomes == ["cancelled"]
    finally:
        await server.stop()


async def test_add_answer_without_acknowledgement_is_rolled_back(tmp_path: Path) -> None:
    pods = SlowPods(delay=0)
    server = await _server(tmp_path, pods)
    try:
        for ack in (False, True):
            reader, writer = await asyncio.open_unix_connection(str(tmp_path / "cni.sock"))
            writer.write(shimproto.encode_request(SHIM_ENV, SHIM_CONFIG))
            status, _ = await _read_answer(reader)
            assert status == 0
            if ack:
                writer.write(shimproto.ACK)
                await writer.drain()
            writer.close()
            done = len(pods.outcomes) + 1
            await _until(lambda: len(pods.outcomes) == done)  # noqa: B023
        assert pods.outcomes == ["rolled back", "kept"]
    finally:
        await server.stop()
