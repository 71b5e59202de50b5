"""Small asyncio helpers shared by the batching writers (OVSDB, veth deletion, flows)."""

from __future__ import annotations

import asyncio


def settle(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    """Resolve a waiter of a batched operation, unless it was already resolved or cancelled."""
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)
