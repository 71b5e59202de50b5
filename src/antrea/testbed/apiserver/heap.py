"""The cyclic garbage collector around large request bodies.

A large body (a NetworkPolicy of thousands of rules) decodes into tens of thousands of dicts and
lists that end up stored: long-lived and without cycles. A full collection that starts while such
a body is decoded, checked or stored traverses every object the server holds (60-160 ms with a
lab's store on a loaded machine, measured on realize.py's API run) on the path of the watches the
write feeds, and frees nothing. So large bodies are handled with the collector paused, and when
the last one is done what exists is frozen (`gc.freeze`, O(1)): later collections skip it. Frozen
objects are still freed by reference counting when dropped (stored objects are acyclic); only
garbage cycles alive at that moment are never collected, a small cost per large write. The server
also freezes its start-up state (OpenAPI documents, built-in objects) once it serves.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

LARGE_BODY_BYTES = 64 * 1024
_state = {"active": 0}


@contextmanager
def large_body(size: int | None) -> Iterator[None]:
    """Handle a request body of ``size`` bytes (None: unknown, a chunked body)."""
    if (size or 0) < LARGE_BODY_BYTES or (not _state["active"] and not gc.isenabled()):
        yield  # small, or the collector is off for another reason: leave it alone
        return
    if not _state["active"]:
        gc.disable()
    _state["active"] += 1
    try:
        yield
    finally:
        _state["active"] -= 1
        if not _state["active"]:
            gc.freeze()
            gc.enable()


def freeze() -> None:
    """Keep what exists now out of later collections (after start-up)."""
    gc.freeze()
