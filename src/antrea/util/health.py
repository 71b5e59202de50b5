"""Named health checks and their HTTP report, as Kubernetes components answer /livez and /readyz.

``GET /readyz`` answers 200 ``ok`` when every check passes, else 500 with one line per check
(``[+]name ok`` / ``[-]name failed: why``); ``?verbose`` lists the checks on success too.
Used by the agent's HTTPS endpoints and the controller's API.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class Check:
    """One named check: ``probe()`` returns None when healthy, else why not."""

    name: str
    probe: Callable[[], str | None]


def run_checks(checks: Sequence[Check]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for check in checks:
        try:
            reason = check.probe()
        except Exception as exc:  # a broken check is a failed check
            reason = repr(exc)
        out.append((check.name, reason))
    return out


def report(checks: Sequence[Check], verbose: bool = False) -> web.Response:
    results = run_checks(checks)
    lines = [
        f"[+]{name} ok" if reason is None else f"[-]{name} failed: {reason}"
        for name, reason in results
    ]
    if any(reason is not None for _, reason in results):
        return web.Response(status=500, text="\n".join([*lines, "check failed"]) + "\n")
    return web.Response(text=("\n".join([*lines, "ok"]) if verbose else "ok") + "\n")
