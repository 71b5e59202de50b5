"""Watch streams: newline-delimited ``{"type": ..., "object": ...}`` events over chunked HTTP.

Semantics follow kube-apiserver: an unset or ``0`` resourceVersion starts with synthetic ADDED
events for the current state; a specific resourceVersion replays later changes from the
store's history or answers with an ERROR event carrying a 410 ``Expired`` Status when the
history no longer reaches back that far (the client then re-lists). With
``allowWatchBookmarks`` the stream carries periodic BOOKMARK events holding only the latest
resourceVersion, plus one right before ``timeoutSeconds`` ends the stream; with
``sendInitialEvents=true`` a bookmark annotated ``k8s.io/initial-events-end`` follows the
initial state.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from antrea.testbed.apiserver import errors, query
from antrea.testbed.apiserver.resources import ResourceType
from antrea.testbed.apiserver.store import Event, Predicate, Store
from antrea.testbed.apiserver.tables import to_table

JSON = dict[str, Any]
Encoder = Callable[[str, Event], bytes]


def versioned(rt: ResourceType, obj: JSON) -> JSON:
    """``obj`` as the requested version presents it (only apiVersion differs between
    versions of a custom resource)."""
    if obj.get("apiVersion") == rt.group_version:
        return obj
    out = dict(obj)
    out["apiVersion"] = rt.group_version
    return out


def make_encoder(rt: ResourceType, *, table: bool, include_object: str) -> Encoder:
    def encode(kind: str, event: Event) -> bytes:
        obj = event.obj
        if table:
            doc = to_table(
                rt,
                [versioned(rt, obj)],
                resource_version=str(event.rv),
                include_object=include_object,
            )
            return orjson.dumps({"type": kind, "object": doc}) + b"\n"
        if obj.get("apiVersion") == rt.group_version:
            return b'{"type":"' + kind.encode() + b'","object":' + event.raw() + b"}\n"
        return orjson.dumps({"type": kind, "object": versioned(rt, obj)}) + b"\n"

    return encode


def bookmark(rt: ResourceType, rv: int, *, initial_end: bool = False) -> bytes:
    meta: JSON = {"resourceVersion": str(rv), "creationTimestamp": None}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return (
        orjson.dumps(
            {
                "type": "BOOKMARK",
                "object": {"kind": rt.kind, "apiVersion": rt.group_version, "metadata": meta},
            }
        )
        + b"\n"
    )


async def serve_watch(
    request: web.Request,
    *,
    store: Store,
    rt: ResourceType,
    namespace: str | None,
    name: str | None,
    predicate: Predicate | None,
    table: bool,
    bookmark_interval: float,
) -> web.StreamResponse:
    q = request.query
    rv_param = q.get("resourceVersion", "")
    send_initial = query.flag(request, "sendInitialEvents")
    bookmarks = query.flag(request, "allowWatchBookmarks")
    since: int | None = None
    if rv_param not in ("", "0") and not send_initial:
        if not (rv_param.isascii() and rv_param.isdigit()):
            raise errors.bad_request(f'invalid resource version "{rv_param}"')
        since = int(rv_param)
    timeout_s = query.int64(request, "timeoutSeconds")
    timeout = float(timeout_s) if timeout_s else random.uniform(1800, 3600)

    response = web.StreamResponse(
        status=200,
        headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"},
    )
    response.enable_chunked_encoding()
    try:
        watcher = store.watch(
            rt.key, namespace=namespace, name=name, predicate=predicate, since=since
        )
    except errors.APIError as exc:
        await response.prepare(request)
        await response.write(orjson.dumps({"type": "ERROR", "object": exc.body}) + b"\n")
        await response.write_eof()
        return response

    encode = make_encoder(rt, table=table, include_object=q.get("includeObject", "Metadata"))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    next_bookmark = loop.time() + bookmark_interval
    initial_left = len(watcher.pending) if send_initial else -1
    try:
        await response.prepare(request)
        if initial_left == 0 and bookmarks:
            await response.write(bookmark(rt, store.rv, initial_end=True))
            initial_left = -1
        while True:
            if watcher.pending:
                chunks: list[bytes] = []
                while watcher.pending:
                    kind, event = watcher.pending.popleft()
                    chunks.append(encode(kind, event))
                    if initial_left > 0:
                        initial_left -= 1
                        if initial_left == 0 and bookmarks:
                            chunks.append(bookmark(rt, store.rv, initial_end=True))
                            initial_left = -1
                await response.write(b"".join(chunks))
            if watcher.closed:
                break
            now = loop.time()
            if now >= deadline:
                if bookmarks:
                    await response.write(bookmark(rt, store.rv))
                break
            if bookmarks and now >= next_bookmark:
                # Nothing is pending, so every event up to store.rv has been sent.
                await response.write(bookmark(rt, store.rv))
                next_bookmark = now + bookmark_interval
            wait = deadline - now
            if bookmarks:
                wait = min(wait, max(0.0, next_bookmark - now))
            await watcher.wait(wait)
            transport = request.transport
            if transport is None or transport.is_closing():
                break
    except ConnectionError:
        pass
    finally:
        store.unwatch(watcher)
    try:
        await response.write_eof()
    except ConnectionError:
        pass
    return response
