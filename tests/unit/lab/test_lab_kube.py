"""The lab's list+watch loop against a scripted fake API server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from antrea.testbed.lab.kube import KubeClient, Kubeconfig, list_watch


def pod(name: str, rv: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "x", "resourceVersion": str(rv)}}


async def test_list_watch_replays_relists_on_410_and_reports_vanished_objects() -> None:
    """After a 410 the loop re-lists, and objects missing from the new list become DELETED."""
    lists = [
        {"metadata": {"resourceVersion": "10"}, "items": [pod("a", 5), pod("b", 6)]},
        {"metadata": {"resourceVersion": "20"}, "items": [pod("a", 5), pod("c", 19)]},
    ]
    watches: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            return web.json_response(lists.pop(0) if len(lists) > 1 else lists[0])
        watches.append(request.query["resourceVersion"])
        resp = web.StreamResponse()
        await resp.prepare(request)
        if len(watches) == 1:
            event = {"type": "MODIFIED", "object": pod("a", 11)}
            await resp.write(json.dumps(event).encode() + b"\n")
            gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
            await resp.write(json.dumps(gone).encode() + b"\n")
        else:
            await asyncio.sleep(10)
        return resp

    app = web.Application()
    app.router.add_get("/api/v1/pods", handle)
    server = TestServer(app)
    await server.start_server()
    seen: list[tuple[str, str]] = []
    synced = asyncio.Event()

    async def handler(kind: str, obj: dict[str, Any]) -> None:
        seen.append((kind, obj["metadata"]["name"]))

    cfg = Kubeconfig(
        server=str(server.make_url("")).rstrip("/"), token=None, ssl=False, server_name=None
    )
    try:
        async with KubeClient(cfg) as client:
            task = asyncio.create_task(list_watch(client, "/api/v1/pods", handler, synced=synced))
            await asyncio.wait_for(synced.wait(), 5)
            for _ in range(100):
                if len(watches) >= 2:
                    break
                await asyncio.sleep(0.02)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await server.close()
    assert seen == [
        ("ADDED", "a"), ("ADDED", "b"),          # first list
        ("MODIFIED", "a"),                       # watch from rv 10
        ("DELETED", "b"), ("MODIFIED", "a"), ("ADDED", "c"),  # re-list after 410
    ]  # fmt: skip
    assert watches == ["10", "20"]
