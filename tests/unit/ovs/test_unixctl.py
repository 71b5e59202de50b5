"""`antrea.ovs.unixctl.call` against a stand-in daemon speaking the unixctl JSON-RPC protocol
(the real ovs-vswitchd: tests/integration/test_datapath_settle.py)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from antrea.ovs import unixctl

Answer = Callable[[dict[str, object], asyncio.StreamWriter], Awaitable[None]]


class Daemon:
    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []
        self.answer: Answer | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = b""
        while True:
            chunk = await reader.read(100)
            if not chunk:
                return
            data += chunk
            try:
                request = json.loads(data)
            except ValueError:
                continue
            self.requests.append(request)
            assert self.answer is not None
            await self.answer(request, writer)
            await asyncio.sleep(0.05)  # the connection stays open after the answer
            writer.close()
            return


async def _start(path: str, daemon: Daemon) -> asyncio.Server:
    return await asyncio.start_unix_server(daemon.serve, path)


@pytest_asyncio.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[str, Daemon]]:
    path = str(tmp_path / "d.ctl")
    d = Daemon()
    server = await _start(path, d)
    try:
        yield path, d
    finally:
        server.close()
        await server.wait_closed()


def _reply(result: object = None, error: object = None) -> Answer:
    async def answer(request: dict[str, object], writer: asyncio.StreamWriter) -> None:
        body = json.dumps({"id": request["id"], "result": result, "error": error}).encode()
        for i in range(0, len(body), 7):  # in small pieces, as a stream may deliver them
            writer.write(body[i : i + 7])
            await writer.drain()
            await asyncio.sleep(0)

    return answer


@pytest.mark.asyncio
async def test_sends_the_command_and_returns_the_result(daemon: tuple[str, Daemon]) -> None:
    path, d = daemon
    d.answer = _reply('café {} "x"\n')  # braces, quotes, a multi-byte character split
    assert await unixctl.call(path, "dpctl/dump-flows", "-m") == 'café {} "x"\n'
    assert d.requests == [{"method": "dpctl/dump-flows", "params": ["-m"], "id": 0}]


@pytest.mark.asyncio
async def test_a_deferred_answer_is_awaited(daemon: tuple[str, Daemon]) -> None:
    path, d = daemon
    gate = asyncio.Event()
    inner = _reply("")

    async def later(request: dict[str, object], writer: asyncio.StreamWriter) -> None:
        await gate.wait()
        await inner(request, writer)

    d.answer = later
    call = asyncio.create_task(unixctl.call(path, "revalidator/wait"))
    await asyncio.sleep(0.05)
    assert not call.done()
    gate.set()
    assert await call == ""


@pytest.mark.asyncio
async def test_an_error_answer_raises(daemon: tuple[str, Daemon]) -> None:
    path, d = daemon
    d.answer = _reply(error='"nope" is not a valid command\n')
    with pytest.raises(unixctl.UnixctlError, match="not a valid command") as info:
        await unixctl.call(path, "nope")
    assert info.value.connected


@pytest.mark.asyncio
async def test_closed_before_answering_raises(daemon: tuple[str, Daemon]) -> None:
    path, d = daemon

    async def hang_up(request: dict[str, object], writer: asyncio.StreamWriter) -> None:
        writer.write(b'{"id": 0, "res')
        writer.close()

    d.answer = hang_up
    with pytest.raises(unixctl.UnixctlError, match="closed before answering") as info:
        await unixctl.call(path, "version")
    assert info.value.connected


@pytest.mark.asyncio
async def test_no_daemon_raises_unconnected(tmp_path: Path) -> None:
    with pytest.raises(unixctl.UnixctlError) as info:
        await unixctl.call(str(tmp_path / "absent.ctl"), "version")
    assert not info.value.connected


@pytest.mark.asyncio
async def test_a_path_longer_than_sun_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = str(deep / "long.ctl")
    assert len(path) > 108
    d = Daemon()
    d.answer = _reply("ok")
    # the stand-in listens through the same directory-descriptor route
    fd = os.open(str(deep), os.O_RDONLY | os.O_DIRECTORY)
    try:
        server = await asyncio.start_unix_server(d.serve, f"/proc/self/fd/{fd}/long.ctl")
    finally:
        os.close(fd)
    try:
        assert await unixctl.call(path, "version") == "ok"
    finally:
        server.close()
        await server.wait_closed()


@given(
    result=st.text(),
    error=st.none() | st.text(min_size=1),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_an_answer_is_complete_only_once_whole(
    result: str, error: str | None, cuts: list[int]
) -> None:
    """However the stream cuts an answer (OVS writes UTF-8, not ASCII escapes), no prefix reads
    as complete, and the whole reads as the answer sent."""
    body = json.dumps({"id": 0, "result": result, "error": error}, ensure_ascii=False).encode()
    for cut in sorted({c % len(body) for c in cuts}):
        assert unixctl.complete(body[:cut]) is None
    assert unixctl.complete(body) == {"id": 0, "result": result, "error": error}
    assert unixctl.complete(body + b"\n") == {"id": 0, "result": result, "error": error}
