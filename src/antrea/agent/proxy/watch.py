"""List-watch of Services and EndpointSlices over the agent's kubernetes-asyncio ApiClient.

The informer pattern of `antrea.agent.kube.watch_nodes`, over the same list and watch calls
(`ApiClientNodeAPI.list_objects` and `.watch`): list (replayed as ADDED, plus DELETED
for objects gone since the previous list), then watch from the list's resourceVersion; re-list
on ``410 Gone`` or a broken stream. Plain JSON, no typed models.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from antrea.agent.kube import ApiClientNodeAPI
from antrea.k8s.errors import WatchExpired

log = structlog.get_logger(__name__)

SERVICES = "/api/v1/services"
ENDPOINTSLICES = "/apis/discovery.k8s.io/v1/endpointslices"
Handler = Callable[[str, dict[str, Any]], None]


def _key(obj: dict[str, Any]) -> str:
    md = obj.get("metadata") or {}
    return f"{md.get('namespace')}/{md.get('name')}"


async def list_watch(
    api_client: Any,
    path: str,
    handler: Handler,
    *,
    synced: asyncio.Event | None = None,
    watch_timeout: int = 300,
) -> None:
    raw_api = ApiClientNodeAPI(api_client, watch_timeout=watch_timeout)
    known: dict[str, dict[str, Any]] = {}
    while True:
        try:
            items, rv = await raw_api.list_objects(path)
            fresh = {_key(o): o for o in items}
            for k in [k for k in known if k not in fresh]:
                handler("DELETED", known.pop(k))
            for k, o in fresh.items():
                handler("ADDED", o)
                known[k] = o
            if synced is not None:
                synced.set()
            while True:  # a watch ends at its timeout: continue from the last version seen
                async for typ, obj in raw_api.watch(path, rv):
                    new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if new_rv:
                        rv = str(new_rv)
                    if typ == "BOOKMARK":
                        continue
                    if typ == "DELETED":
                        known.pop(_key(obj), None)
                    else:
                        known[_key(obj)] = obj
                    handler(typ, obj)
        except asyncio.CancelledError:
            raise
        except WatchExpired:
            log.info("proxy_watch_expired", path=path)
        except Exception as exc:
            log.warning("proxy_watch_failed", path=path, error=repr(exc))
            await asyncio.sleep(1.0)
