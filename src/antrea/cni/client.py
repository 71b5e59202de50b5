"""The plugin's side of the agent socket: connect, send one request, read one response.

Every way of not getting an answer (no socket, nobody listening, timeout, connection dropped)
is code 11, "try again later": the runtime retries, and the message says what to look at.
"""

from __future__ import annotations

import _socket

from antrea.apis.cni import protocol
from antrea.apis.cni.errors import TRY_AGAIN_LATER, UNKNOWN_RPC_ERROR, CniError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from antrea.apis.cni.request import Request


def call_agent(req: Request, *, unavailable_code: int = TRY_AGAIN_LATER) -> dict[str, Any]:
    """Forward ``req`` to the agent and return its result object (raises CniError).

    Args:
        req: the validated invocation.
        unavailable_code: the code for "no answer from the agent" (11, or 50 for STATUS).
    """
    payload = protocol.encode_request(
        command=req.command,
        container_id=req.container_id,
        netns=req.netns,
        ifname=req.ifname,
        args=req.args,
        path=req.path,
        config=req.config,
    )
    where = f"unix socket {req.socket}"
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(req.timeout)
        try:
            sock.connect(req.socket)
        except FileNotFoundError:
            raise CniError(
                unavailable_code,
                f"antrea agent is not running: {where} does not exist",
                "start antrea-agent (or check cniSocket in the CNI config) and retry",
            ) from None
        except ConnectionRefusedError:
            raise CniError(
                unavailable_code,
                f"antrea agent is not accepting connections on {where}",
                "the socket exists but nothing listens on it; is antrea-agent running?",
            ) from None
        except TimeoutError:
            raise CniError(
                unavailable_code, f"timed out connecting to the antrea agent on {where}"
            ) from None
        except OSError as exc:
            raise CniError(
                unavailable_code, f"cannot connect to the antrea agent on {where}: {exc}"
            ) from None
        try:
            sock.sendall(payload)
            line = _read_line(sock)
        except TimeoutError:
            raise CniError(
                unavailable_code,
                f"timed out after {req.timeout:g}s waiting for the antrea agent on {where}",
            ) from None
        except OSError as exc:
            raise CniError(
                unavailable_code, f"lost the connection to the antrea agent on {where}: {exc}"
            ) from None
    finally:
        sock.close()
    if not line:
        raise CniError(
            unavailable_code, f"the antrea agent on {where} closed the connection without answering"
        )
    return protocol.decode_response(line)


def _read_line(sock: _socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        newline = chunk.find(b"\n")
        if newline >= 0:
            chunks.append(chunk[:newline])
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > protocol.MAX_MESSAGE_BYTES:
            raise CniError(UNKNOWN_RPC_ERROR, "response from the antrea agent is too large")
    return b"".join(chunks)
