"""A command to an OVS daemon's control socket, in process (what ``ovs-appctl -t SOCKET`` does).

The protocol is JSON-RPC 1.0 over a Unix stream socket: one request ``{"method", "params",
"id"}``, answered by one ``{"result", "error", "id"}`` (the daemon may defer the answer, as
``revalidator/wait`` does, and keeps the connection open afterwards). Speaking it directly
saves the ``ovs-appctl`` process per command (~8 ms to start on the 2-core lab machines, plus a
worker thread to spawn it from), which the datapath wait after every policy batch pays twice
(`antrea.ovs.datapath.settle`).
"""

from __future__ import annotations

import asyncio
import json
import os

from antrea.ovs.errors import OvsError

_READ = 1 << 16


class UnixctlError(OvsError):
    """The daemon answered the command with an error, or the connection broke before the answer
    (``connected``: the command was sent, so it may have run)."""

    def __init__(self, path: str, command: str, message: str, *, connected: bool) -> None:
        self.path = path
        self.command = command
        self.message = message
        self.connected = connected
        super().__init__(f"{command} on {path}: {message}")


async def _connect(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    # sun_path holds 107 bytes; a longer path is reached through its directory's descriptor
    # (what OVS itself does, lib/socket-util-unix.c).
    if len(os.fsencode(path)) < 100:
        return await asyncio.open_unix_connection(path)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        return await asyncio.open_unix_connection(f"/proc/self/fd/{fd}/{os.path.basename(path)}")
    finally:
        os.close(fd)


def complete(data: bytes | bytearray) -> object | None:
    """The answer once ``data`` holds all of it, else None. An answer is one JSON object, so
    it can be complete only where the data ends with ``}``; only there is it parsed (an answer
    of megabytes, e.g. a conntrack dump, arrives in many reads)."""
    end = len(data)
    while end and data[end - 1] in b" \t\r\n":  # not rstrip: no copy of megabytes per read
        end -= 1
    if not end or data[end - 1] != ord("}"):
        return None
    try:
        reply: object = json.loads(data)
    except ValueError:  # a brace inside a string, or a multi-byte character cut short
        return None
    return reply


async def call(path: str, command: str, *args: str) -> str:
    """Run ``command args...`` in the daemon listening on ``path``; its answer text."""
    try:
        reader, writer = await _connect(path)
    except OSError as exc:
        raise UnixctlError(path, command, str(exc), connected=False) from exc
    reply: object = None
    try:
        request = {"method": command, "params": list(args), "id": 0}
        writer.write(json.dumps(request).encode())
        await writer.drain()
        data = bytearray()
        while reply is None:
            chunk = await reader.read(_READ)
            if not chunk:
                raise UnixctlError(path, command, "closed before answering", connected=True)
            data += chunk
            reply = complete(data)
    except OSError as exc:
        raise UnixctlError(path, command, str(exc), connected=True) from exc
    finally:
        writer.close()
    if not isinstance(reply, dict):
        raise UnixctlError(path, command, f"not an answer: {reply!r:.200}", connected=True)
    if reply.get("error") is not None:
        raise UnixctlError(path, command, str(reply["error"]).strip(), connected=True)
    result = reply.get("result")
    return result if isinstance(result, str) else ""
