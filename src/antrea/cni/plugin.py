"""``antrea-cni``: the CNI executable a container runtime runs for every pod network operation.

It is deliberately thin, like Antrea's own: it validates the invocation against the CNI spec,
answers VERSION itself, and forwards ADD/DEL/CHECK/STATUS/GC to the agent over a unix socket,
which does the actual work. It then prints the agent's result in the shape of the
``cniVersion`` the runtime asked for, or the spec's error object, on stdout.

It imports only the standard library (and its own small modules): a runtime starts one process
per pod and per operation, so start-up time is pod start-up latency.
"""

from __future__ import annotations

import posix
import sys

from antrea.cni import _json as json
from antrea.cni import results
from antrea.cni.client import call_agent
from antrea.cni.errors import (
    INTERNAL,
    IO_FAILURE,
    PLUGIN_NOT_AVAILABLE,
    UNKNOWN_RPC_ERROR,
    CniError,
)
from antrea.cni.request import parse_request, read_command
from antrea.cni.versions import LATEST, SUPPORTED_VERSIONS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, BinaryIO, TextIO


class _Stdin:
    """Reads stdin at most once and remembers the config's version for error messages."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.data: bytes | None = None

    def read(self) -> bytes:
        if self.data is None:
            try:
                self.data = self._stream.read()
            except OSError as exc:
                raise CniError(
                    IO_FAILURE, f"failed to read network config from stdin: {exc}"
                ) from None
        return self.data

    def version(self) -> str:
        """The config's cniVersion if it is one we speak, else our latest (for error output)."""
        if self.data:
            try:
                config = json.loads(self.data)
            except ValueError:
                return LATEST
            version = config.get("cniVersion") if isinstance(config, dict) else None
            if version in SUPPORTED_VERSIONS:
                return str(version)
        return LATEST


def _print(out: TextIO, obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj, indent=4))
    out.write("\n")
    out.flush()


def _version_info(stdin: _Stdin, stream: BinaryIO) -> dict[str, Any]:
    """VERSION needs only CNI_COMMAND; its stdin is optional and never an error."""
    if not stream.isatty():
        try:
            stdin.read()
        except CniError:
            pass
    return {"cniVersion": stdin.version(), "supportedVersions": list(SUPPORTED_VERSIONS)}


def _agent_result(raw: dict[str, Any]) -> dict[str, Any]:
    try:
        return results.to_latest(raw)
    except CniError as exc:
        raise CniError(
            UNKNOWN_RPC_ERROR, "malformed result from the antrea agent", exc.msg
        ) from None


def run(environ: Mapping[str, str], stdin_stream: BinaryIO, out: TextIO) -> int:
    """One invocation: returns the exit status, having printed the result or the error."""
    stdin = _Stdin(stdin_stream)
    try:
        command = read_command(environ)
        if command == "VERSION":
            _print(out, _version_info(stdin, stdin_stream))
            return 0
        req = parse_request(command, environ, stdin.read)
        if command == "STATUS":
            # Without an agent the plugin cannot add pods: that is STATUS's "not available".
            call_agent(req, unavailable_code=PLUGIN_NOT_AVAILABLE)
        elif command == "ADD":
            result = _agent_result(call_agent(req))
            _print(out, results.to_version(result, req.cni_version))
        else:
            call_agent(req)
        return 0
    except CniError as err:
        _print(out, err.to_json(stdin.version()))
        return 1
    except Exception as exc:  # a bug here must still reach the runtime as a CNI error
        import traceback

        traceback.print_exc(file=sys.stderr)
        _print(out, CniError(INTERNAL, f"internal error in antrea-cni: {exc!r}").to_json(LATEST))
        return 1


def _environ() -> dict[str, str]:
    """``os.environ`` without importing ``os`` (and ``stat``, ``posixpath``, ...: ~1 ms)."""
    return {
        k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape")
        for k, v in posix.environ.items()
    }


def main() -> int:
    return run(_environ(), sys.stdin.buffer, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
