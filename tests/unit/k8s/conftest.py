"""A scriptable fake of kube-apiserver's pod list/watch, served over real HTTP by aiohttp.

It keeps an event log like etcd's history: each change gets the next resourceVersion, a watch
from version R replays the log after R and then follows new changes. `compact` forgets history
(watches from older versions get 410, as an HTTP status or as an ERROR event), `drop_after`
cuts the next watch connection mid-stream, and `close_watches` ends open watches cleanly.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

JSON = dict[str, Any]


class FakeKube:
    def __init__(self) -> None:
        self.rv = 100
        self.objects: dict[str, JSON] = {}
        self.log: list[tuple[int, str, JSON]] = []
        self.min_rv = 0  # watches from a version below this get 410
        self.gone_as_event = False  # 410 as an ERROR event in a 200 stream (real server)
        self.drop_after: int | None = None  # cut a watch once it has sent this many events
        self.fail_lists = 0  # answer the next N lists with 500
        self.fail_watches = 0  # answer the next N watches with 500
        self.bookmarks = False
        self.watch_gate = asyncio.Event()
        self.watch_gate.set()
        self.list_requests: list[dict[str, str]] = []
        self._snapshots: list[tuple[int, list[JSON]]] = []
        self.watch_requests: list[dict[str, str]] = []
        self._changed = asyncio.Condition()
        self._close_epoch = 0
        self.url = ""

    # --- mutations (the "cluster") --------------------------------------------------------

    async def _record(self, etype: str, obj: JSON) -> JSON:
        self.rv += 1
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.log.append((self.rv, etype, obj))
        async with self._changed:
            self._changed.notify_all()
        return obj

    async def add(self, name: str, ns: str = "default", **labels: str) -> JSON:
        obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": str(uuid.uuid4()), "labels": labels},
            "spec": {"nodeName": "node1"},
        }
        obj = await self._record("ADDED", obj)
        self.objects[f"{ns}/{name}"] = obj
        return obj

    async def modify(self, name: str, ns: str = "default", **labels: str) -> JSON:
        obj = json.loads(json.dumps(self.objects[f"{ns}/{name}"]))
        obj["metadata"]["labels"] = labels
        obj = await self._record("MODIFIED", obj)
        self.objects[f"{ns}/{name}"] = obj
        return obj

    async def delete(self, name: str, ns: str = "default") -> JSON:
        obj = self.objects.pop(f"{ns}/{name}")
        return await self._record("DELETED", obj)

    async def bookmark(self) -> None:
        self.rv += 1
        self.log.append(
            (self.rv, "BOOKMARK", {"kind": "Pod", "metadata": {"resourceVersion": str(self.rv)}})
        )
        async with self._changed:
            self._changed.notify_all()

    def compact(self) -> None:
        self.min_rv = self.rv
        self.log = []

    async def close_watches(self) -> None:
        self._close_epoch += 1
        async with self._changed:
            self._changed.notify_all()

    # --- HTTP ---------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        if query.get("watch") in ("true", "1", "True"):
            self.watch_requests.append(query)
            return await self._watch(request, query)
        self.list_requests.append(query)
        if self.fail_lists:
            self.fail_lists -= 1
            return web.json_response({"kind": "Status", "code": 500, "message": "boom"}, status=500)
        # Pages of one list are a consistent snapshot, as the real server's continue tokens.
        token = query.get("continue")
        if token:
            snap_id, start_s = token.split(":")
            rv, items = self._snapshots[int(snap_id)]
            start = int(start_s)
        else:
            rv = self.rv
            items = sorted(self.objects.values(), key=lambda o: o["metadata"]["name"])
            self._snapshots.append((rv, items))
            snap_id, start = str(len(self._snapshots) - 1), 0
        limit = int(query.get("limit") or 0)
        page = items[start : start + limit] if limit else items[start:]
        cont = f"{snap_id}:{start + limit}" if limit and start + limit < len(items) else ""
        # List items carry no kind/apiVersion, like a real list response.
        page = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in page]
        meta: JSON = {"resourceVersion": str(rv)}
        if cont:
            meta["continue"] = cont
        return web.json_response(
            {"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": page}
        )

    async def _watch(self, request: web.Request, query: dict[str, str]) -> web.StreamResponse:
        epoch = self._close_epoch  # a close_watches() from now on ends this stream
        await self.watch_gate.wait()
        if self.fail_watches:
            self.fail_watches -= 1
            return web.json_response({"kind": "Status", "code": 500, "message": "boom"}, status=500)
        since = int(query.get("resourceVersion") or self.rv)
        if since < self.min_rv and not self.gone_as_event:
            return web.json_response(
                {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"},
                status=410,
            )
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        if since < self.min_rv:
            status = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
            await resp.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
            return resp
        deadline = asyncio.get_running_loop().time() + float(query.get("timeoutSeconds") or 30)
        sent = 0
        while True:
            if since < self.min_rv:
                return resp  # history compacted under this stream: end it, the resume gets 410
            for rv, etype, obj in list(self.log):
                if epoch != self._close_epoch:
                    return resp
                if rv <= since:
                    continue
                if etype == "BOOKMARK" and query.get("allowWatchBookmarks", "").lower() != "true":
                    since = rv
                    continue
                if self.drop_after is not None and sent >= self.drop_after:
                    # The first stream to reach the count is cut mid-stream: the client sees
                    # a broken chunked body.
                    self.drop_after = None
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                await resp.write(json.dumps({"type": etype, "object": obj}).encode() + b"\n")
                since = rv
                sent += 1
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or epoch != self._close_epoch:
                return resp
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=remaining)
                except TimeoutError:
                    pass


@pytest.fixture
async def fake_kube() -> AsyncIterator[FakeKube]:
    fake = FakeKube()
    app = web.Application()
    app.router.add_get("/api/v1/pods", fake.handle)
    app.router.add_get("/api/v1/namespaces/{ns}/pods", fake.handle)
    app.router.add_get("/api/v1/nodes", fake.handle)  # same objects: for the agent's Node adapter
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await fake.close_watches()
        await runner.cleanup()
