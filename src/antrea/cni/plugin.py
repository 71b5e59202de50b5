"""``antrea-cni``: the CNI executable a container runtime runs for every pod network operation.

It is deliberately thin, like Antrea's own: it validates the invocation against the CNI spec
(``antrea.apis.cni.invocation``, the rules the agent applies for the C executable too), answers
VERSION itself, and forwards ADD/DEL/CHECK/STATUS/GC to the agent over a unix socket,
which does the actual work. It then prints the agent's result in the shape of the
``cniVersion`` the runtime asked for, or the spec's error object, on stdout.

It imports only the standard library (and the small modules of ``antrea.apis.cni``): a runtime
starts one process per pod and per operation, so start-up time is pod start-up latency.
"""

from __future__ import annotations

import posix
import sys

from antrea.apis.cni.errors import PLUGIN_NOT_AVAILABLE, TRY_AGAIN_LATER, CniError
from antrea.apis.cni.invocation import Answer, Stdin, begin, finish, internal_error
from antrea.apis.cni.request import Request
from antrea.cni.client import call_agent

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, BinaryIO, TextIO

__all__ = ["Answer", "Stdin", "begin", "finish", "main", "run"]


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
