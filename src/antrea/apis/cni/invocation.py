"""One CNI invocation: its validation (`begin`) and the runtime's answer (`finish`).

Every CNI rule and error code in one place, shared by the two ends that apply them: the agent's
side of the C executable (``antrea.agent.cniserver``, which then executes the request itself)
and the Python ``antrea-cni`` (``antrea.cni.plugin``, which then asks the agent over protocol 1).
Standard library only, like all of ``antrea.apis.cni``: the Python plugin imports it.
"""

from __future__ import annotations

from antrea.apis.cni import _json as json
from antrea.apis.cni import results
from antrea.apis.cni.errors import INTERNAL, IO_FAILURE, UNKNOWN_RPC_ERROR, CniError
from antrea.apis.cni.request import Request, parse_request, read_command
from antrea.apis.cni.versions import LATEST, SUPPORTED_VERSIONS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, BinaryIO


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
