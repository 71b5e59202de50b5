"""The plugin <-> agent wire protocol: one JSON request line, one JSON response line.

One connection carries one request. Request::

    {"version": 1, "command": "ADD"|"DEL"|"CHECK"|"STATUS"|"GC", "containerID": str,
     "netns": str, "ifname": str, "args": str, "path": str, "config": {...}}

Response: ``{"result": {...}}`` (1.1.0-shaped for ADD, ``{}`` otherwise) or
``{"error": {"code": int, "msg": str, "details": str}}``.

The plugin sends ``config`` as it read it from stdin, except that ``prevResult`` (if any) is
already converted to the 1.1.0 shape. Both sides may use the helpers below; this module is
standard library only because the plugin imports it.
"""

from __future__ import annotations

from antrea.apis.cni import _json as json
from antrea.apis.cni.errors import UNKNOWN_RPC_ERROR, CniError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PROTOCOL_VERSION = 1
DEFAULT_SOCKET = "/var/run/antrea/cni.sock"
# Long enough for the agent's own "pod network not ready" wait (it answers 11 after 30 s).
DEFAULT_TIMEOUT_SECONDS = 60.0
# Upper bound on one message; a CNI config or result is a few KiB.
MAX_MESSAGE_BYTES = 4 << 20
AGENT_COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC")


def request_fields(
    *,
    command: str,
    container_id: str,
    netns: str,
    ifname: str,
    args: str,
    path: str,
    config: dict[str, Any],
) -> dict[str, Any]:
    """The request object (what ``decode_request`` returns on the agent's side)."""
    return {
        "version": PROTOCOL_VERSION,
        "command": command,
        "containerID": container_id,
        "netns": netns,
        "ifname": ifname,
        "args": args,
        "path": path,
        "config": config,
    }


def encode_request(
    *,
    command: str,
    container_id: str,
    netns: str,
    ifname: str,
    args: str,
    path: str,
    config: dict[str, Any],
) -> bytes:
    fields = request_fields(
        command=command,
        container_id=container_id,
        netns=netns,
        ifname=ifname,
        args=args,
        path=path,
        config=config,
    )
    return json.dumps(fields).encode() + b"\n"


def decode_request(line: bytes) -> dict[str, Any]:
    """Server side: parse and check a request line; raises CniError (201) when malformed."""
    try:
        req = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(UNKNOWN_RPC_ERROR, f"malformed CNI request: {exc}") from None
    if not isinstance(req, dict):
        raise CniError(UNKNOWN_RPC_ERROR, "malformed CNI request: not a JSON object")
    if req.get("version") != PROTOCOL_VERSION:
        raise CniError(
            202, f"unsupported CNI protocol version {req.get('version')!r}, want {PROTOCOL_VERSION}"
        )
    if req.get("command") not in AGENT_COMMANDS:
        raise CniError(UNKNOWN_RPC_ERROR, f"unknown command {req.get('command')!r}")
    for key in ("containerID", "netns", "ifname", "args", "path"):
        if not isinstance(req.get(key, ""), str):
            raise CniError(UNKNOWN_RPC_ERROR, f"malformed CNI request: {key} must be a string")
    if not isinstance(req.get("config"), dict):
        raise CniError(UNKNOWN_RPC_ERROR, "malformed CNI request: config must be an object")
    return req


def encode_result(result: dict[str, Any]) -> bytes:
    """Server side: a success response (``{}`` for DEL/CHECK/STATUS/GC)."""
    return json.dumps({"result": result}).encode() + b"\n"


def encode_error(code: int, msg: str, details: str = "") -> bytes:
    """Server side: an error response; the plugin passes code, msg and details to the runtime."""
    return json.dumps({"error": {"code": code, "msg": msg, "details": details}}).encode() + b"\n"


def decode_response(line: bytes) -> dict[str, Any]:
    """Client side: the ``result`` object, or raise the agent's error as a CniError."""
    try:
        resp = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(
            UNKNOWN_RPC_ERROR, "malformed response from the antrea agent", str(exc)
        ) from None
    if not isinstance(resp, dict):
        raise CniError(
            UNKNOWN_RPC_ERROR, "malformed response from the antrea agent", "not an object"
        )
    error = resp.get("error")
    if error is not None:
        code = error.get("code") if isinstance(error, dict) else None
        if not isinstance(error, dict) or isinstance(code, bool) or not isinstance(code, int):
            raise CniError(UNKNOWN_RPC_ERROR, "malformed error from the antrea agent", repr(error))
        if code <= 0:
            raise CniError(UNKNOWN_RPC_ERROR, "malformed error from the antrea agent", repr(error))
        details = error.get("details")
        raise CniError(
            code,
            str(error.get("msg") or "antrea agent error"),
            "" if details is None else str(details),
        )
    result = resp.get("result")
    if not isinstance(result, dict):
        raise CniError(
            UNKNOWN_RPC_ERROR, "malformed response from the antrea agent", "no result object"
        )
    return result
