"""The wire format between the C executable (``shim/antrea-cni.c``) and the agent.

The shim forwards the invocation unparsed and relays the answer; every CNI rule is applied by
the agent (``antrea.apis.cni.invocation.begin``/``finish``, the same code the Python
``antrea-cni`` runs).

Request (shim -> agent)::

    b"ANTREA-CNI/2 <env bytes> <stdin bytes> <flags>\\n" + env + stdin

``env`` is ``KEY=VALUE\\0`` for every ``CNI_*`` variable; ``flags`` bit 0: stdin was larger than
``MAX_STDIN_BYTES`` (not sent), bit 1: reading stdin failed.

Answer (agent -> shim)::

    b"<exit status> <stdout bytes>\\n" + stdout

Then the shim sends ``ACK`` (``b"A"``) once it holds the whole answer within its deadline, and
only then prints it. The agent keeps an ADD only when acknowledged: an ADD whose shim went
away first (the runtime's timeout, code 11, or a killed plugin) is rolled back, so nothing is
completed behind the runtime's back. Standard library only, like the rest of ``antrea.apis.cni``.
"""

from __future__ import annotations

from antrea.apis.cni.request import MAX_CONFIG_BYTES
from antrea.errors import AntreaError

MAGIC = b"ANTREA-CNI/2 "
MAX_STDIN_BYTES = MAX_CONFIG_BYTES  # MAX_STDIN in antrea-cni.c
MAX_ENV_BYTES = 1 << 20
MAX_HEADER_BYTES = 128
FLAG_STDIN_TOO_LARGE = 1
FLAG_STDIN_READ_ERROR = 2
ACK = b"A"


class ShimProtocolError(AntreaError, ValueError):
    """The bytes are not this protocol."""


def parse_header(line: bytes) -> tuple[int, int, int]:
    """``(env_len, stdin_len, flags)`` from the request's first line."""
    if not line.startswith(MAGIC) or not line.endswith(b"\n") or len(line) > MAX_HEADER_BYTES:
        raise ShimProtocolError("not an antrea-cni/2 request header")
    fields = line[len(MAGIC) : -1].split(b" ")
    if len(fields) != 3 or not all(f.isdigit() and len(f) <= 10 for f in fields):
        raise ShimProtocolError(f"malformed antrea-cni/2 header {line[:80]!r}")
    env_len, stdin_len, flags = (int(f) for f in fields)
    if env_len > MAX_ENV_BYTES or stdin_len > MAX_STDIN_BYTES:
        raise ShimProtocolError("antrea-cni/2 request larger than the protocol allows")
    return env_len, stdin_len, flags


def parse_env(block: bytes) -> dict[str, str]:
    """``KEY=VALUE\\0...`` -> environ, decoded like ``os.environ`` (UTF-8, surrogateescape)."""
    env: dict[str, str] = {}
    for entry in block.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if not sep or not key.startswith(b"CNI_"):
            continue
        env[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return env


def encode_request(env: dict[str, str], stdin: bytes, flags: int = 0) -> bytes:
    """The shim's request (used by tests and tools that speak for the shim)."""
    block = b"".join(
        k.encode("utf-8", "surrogateescape") + b"=" + v.encode("utf-8", "surrogateescape") + b"\0"
        for k, v in env.items()
        if k.startswith("CNI_")
    )
    return MAGIC + f"{len(block)} {len(stdin)} {flags}\n".encode() + block + stdin


def encode_answer(rc: int, stdout: str) -> bytes:
    body = stdout.encode("utf-8", "surrogateescape")
    return f"{rc} {len(body)}\n".encode() + body
