"""Services and EndpointSlices for AntreaProxy, followed with `antrea.k8s.informer.Informer`.

The proxier's handlers take watch-style ``(type, object)`` calls (`add_event_handler`): the
first list arrives as ADDED, then every change (and every re-list's diff after ``410 Gone``) as
ADDED, MODIFIED or DELETED. Plain JSON, no typed models.
"""

from __future__ import annotations

import asyncio
from typing import Any

from antrea.k8s.informer import (
    EventHandler,
    Informer,
    add_event_handler,
    path_list_func,
    strip_managed_fields,
)

SERVICES = "/api/v1/services"
ENDPOINTSLICES = "/apis/discovery.k8s.io/v1/endpointslices"


async def list_watch(
    api_client: Any,
    path: str,
    handler: EventHandler,
    *,
    synced: asyncio.Event | None = None,
    watch_timeout: int = 300,
) -> None:
    """Follow the collection at ``path`` until cancelled; ``synced`` is set after the first list."""
    informer = Informer(
        path_list_func(api_client, path),
        name=path.rsplit("/", 1)[-1],
        transform=strip_managed_fields,
        watch_timeout=watch_timeout,
        backoff_max=1.0,  # the API server is the agent's lifeline: retry at least every second
    )
    add_event_handler(informer, handler, synced=synced)
    await informer.run()
