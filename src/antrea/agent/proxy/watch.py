"""List-watch of Services and EndpointSlices over the agent's kubernetes-asyncio ApiClient.

The informer pattern of `antrea.agent.kube.watch_nodes`: list (replayed as ADDED, plus DELETED
for objects gone since the previous list), then watch from the list's resourceVersion; re-list
on ``410 Gone`` or a broken stream. Plain JSON, no typed models.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import structlog

from antrea.agent.kube import ApiClientNodeAPI, KubeAPIError, WatchExpired

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
            listing = await raw_api._get(path) or {}
            rv = str((listing.get("metadata") or {}).get("resourceVersion", ""))
            fresh = {_key(o): o for o in listing.get("items") or []}
            for k in [k for k in known if k not in fresh]:
                handler("DELETED", known.pop(k))
            for k, o in fresh.items():
                handler("ADDED", o)
                known[k] = o
            if synced is not None:
                synced.set()
            while True:
                query: list[tuple[str, Any]] = [
                    ("watch", "true"),
                    ("resourceVersion", rv),
                    ("allowWatchBookmarks", "true"),
                    ("timeoutSeconds", watch_timeout),
                ]
                raw = await raw_api._raw(path, query, watch_timeout + 30)
                try:
                    if raw.status == 410:
                        raise WatchExpired()
                    if not 200 <= raw.status < 300:
                        body = (await raw.read()).decode(errors="replace")[:500]
                        raise KubeAPIError(raw.status, body)
                    while True:
                        line = await raw.content.readline()
                        if not line:
                            break
                        if not line.strip():
                            continue
                        ev = json.loads(line)
                        typ = str(ev.get("type", ""))
                        obj = ev.get("object") or {}
                        if typ == "ERROR":
                            if obj.get("code") == 410:
                                raise WatchExpired()
                            raise KubeAPIError(int(obj.get("code") or 0), str(obj.get("message")))
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
                finally:
                    raw.release()
        except asyncio.CancelledError:
            raise
        except WatchExpired:
            log.info("proxy_watch_expired", path=path)
        except Exception as exc:
            log.warning("proxy_watch_failed", path=path, error=repr(exc))
            await asyncio.sleep(1.0)
