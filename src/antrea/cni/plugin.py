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
    TRY_AGAIN_LATER,
    UNKNOWN_RPC_ERROR,
    CniError,
)
from antrea.cni.request import Request, parse_request, read_command
from antrea.cni.versions import LATEST, SUPPORTED_VERSIONS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, BinaryIO, TextIO


class Stdin:
    """The config on stdin, read at most once; remembers its version for error messages.

    Either a stream (the executable) or bytes already read (the agent's side of the C shim,
    which also passes on the shim's "too large" and "read error" findings).
    """

    def __init__(
        self,
        stream: BinaryIO | None = None,
        *,
        data: bytes | None = None,
        error: CniError | None = None,
    ) -> None:
        self._stream = stream
        self.data: bytes | None = data
        self._error = error

    def read(self) -> bytes:
        if self._error is not None:
            raise self._error
        if self.data is None:
            try:
                self.data = self._stream.read() if self._stream is not None else b""
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
            except (ValueError, RecursionError, MemoryError):
                return LATEST
            version = config.get("cniVersion") if isinstance(config, dict) else None
            if version in SUPPORTED_VERSIONS:
                return str(version)
        return LATEST


class Answer:
    """What the runtime gets: the exit status and the text for stdout."""

    __slots__ = ("rc", "stdout")

    def __init__(self, rc: int, stdout: str) -> None:
        self.rc = rc
        self.stdout = stdout


def _render(obj: dict[str, Any]) -> str:
    return json.dumps(obj, indent=4) + "\n"


def error_answer(err: CniError, version: str) -> Answer:
    return Answer(1, _render(err.to_json(version)))


def internal_error(exc: BaseException) -> Answer:
    """A bug reaches the runtime as a CNI error (999), never as a traceback on its stdout."""
    try:
        text = repr(exc)
    except Exception:  # a repr that fails (or recurses) must not hide the error
        text = type(exc).__name__
    return error_answer(CniError(INTERNAL, f"internal error in antrea-cni: {text[:1000]}"), LATEST)


def _version_info(stdin: Stdin, stream: BinaryIO | None) -> dict[str, Any]:
    """VERSION needs only CNI_COMMAND; its stdin is optional and never an error."""
    if stream is None or not stream.isatty():
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


def begin(
    environ: Mapping[str, str], stdin: Stdin, stream: BinaryIO | None = None
) -> Request | Answer:
    """Validate one invocation: the Request to execute, or the final Answer (VERSION, errors).

    Shared by this executable (which then asks the agent) and the agent's side of the C shim
    (which executes the request itself): one implementation of every CNI rule and error code.
    """
    try:
        command = read_command(environ)
        if command == "VERSION":
            return Answer(0, _render(_version_info(stdin, stream)))
        return parse_request(command, environ, stdin.read)
    except CniError as err:
        return error_answer(err, stdin.version())
    except Exception as exc:
        return internal_error(exc)


def finish(req: Request, outcome: dict[str, Any] | CniError, stdin: Stdin) -> Answer:
    """The Answer for the agent's result (1.1.0-shaped) or error, in the runtime's version."""
    try:
        if isinstance(outcome, CniError):
            raise outcome
        if req.command != "ADD":
            return Answer(0, "")
        result = _agent_result(outcome)
        return Answer(0, _render(results.to_version(result, req.cni_version)))
    except CniError as err:
        return error_answer(err, stdin.version())
    except Exception as exc:
        return internal_error(exc)


def run(environ: Mapping[str, str], stdin_stream: BinaryIO | None, out: TextIO) -> int:
    """One invocation: returns the exit status, having printed the result or the error."""
    stdin = Stdin(stdin_stream)
    answer = begin(environ, stdin, stdin_stream)
    if isinstance(answer, Request):
        answer = _ask_agent(answer, stdin)
    try:
        out.write(answer.stdout)
        out.flush()
    except (OSError, ValueError, AttributeError):
        pass  # the runtime closed (or never gave us) stdout: nobody is left to tell
    return answer.rc


def _ask_agent(req: Request, stdin: Stdin) -> Answer:
    # Without an agent the plugin cannot add pods: that is STATUS's "not available".
    unavailable = PLUGIN_NOT_AVAILABLE if req.command == "STATUS" else TRY_AGAIN_LATER
    try:
        outcome: dict[str, Any] | CniError = call_agent(req, unavailable_code=unavailable)
    except CniError as err:
        outcome = err
    except Exception as exc:
        return internal_error(exc)
    return finish(req, outcome, stdin)


def _environ() -> dict[str, str]:
    """``os.environ`` without importing ``os`` (and ``stat``, ``posixpath``, ...: ~1 ms)."""
    return {
        k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape")
        for k, v in posix.environ.items()
    }


def main() -> int:
    try:
        # sys.stdin is None when the runtime gave us no fd 0: an empty config.
        return run(_environ(), sys.stdin.buffer if sys.stdin is not None else None, sys.stdout)
    except BaseException as exc:  # the last line of defence: never a traceback
        if isinstance(exc, SystemExit | KeyboardInterrupt):
            raise
        answer = internal_error(exc)
        try:
            sys.stdout.write(answer.stdout)
            sys.stdout.flush()
        except (OSError, ValueError, AttributeError):
            pass
        return answer.rc


if __name__ == "__main__":
    sys.exit(main())
