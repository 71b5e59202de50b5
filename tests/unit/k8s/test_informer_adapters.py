"""The informer's sync hook and the adapters built on it: watch-style ``(type, object)`` handlers
(the agent's proxy, the lab) and the agent's Node events (one SYNC per list)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kubernetes_asyncio import client

from antrea.agent.kube import NodeEvent, NodeEventKind, node_informer
from antrea.k8s.informer import (
    EventHandler,
    Informer,
    add_event_handler,
    object_key,
    path_list_func,
)

JSON = dict[str, Any]


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


@pytest.fixture
async def api(fake_kube: Any) -> AsyncIterator[Any]:
    api_client = client.ApiClient(configuration=client.Configuration(host=fake_kube.url))
    try:
        yield api_client
    finally:
        await api_client.close()


async def _expire_while_away(fake_kube: Any, change: Callable[[], Any]) -> None:
    """Cut the watch, change the cluster, forget history: the next watch gets 410."""
    fake_kube.watch_gate.clear()
    await fake_kube.close_watches()
    await until(lambda: len(fake_kube.watch_requests) >= 1)
    await change()
    fake_kube.compact()
    fake_kube.watch_gate.set()


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_event_handler_sees_watch_types_and_relist_diffs(
    fake_kube: Any, api: Any, is_async: bool
) -> None:
    await fake_kube.add("a", v="1")
    await fake_kube.add("b", v="1")
    seen: list[tuple[str, str]] = []
    syncs: list[list[str]] = []

    async def async_handler(kind: str, obj: JSON) -> None:
        seen.append((kind, object_key(obj)))

    def sync_handler(kind: str, obj: JSON) -> None:
        seen.append((kind, object_key(obj)))

    handler: EventHandler = async_handler if is_async else sync_handler

    inf = Informer(
        path_list_func(api, "/api/v1/pods"), name="pods", backoff_initial=0.01, backoff_max=0.05
    )
    synced = asyncio.Event()
    add_event_handler(inf, handler, synced=synced)
    inf.add_handler(on_sync=lambda objs: syncs.append(sorted(map(object_key, objs))))
    inf.start()
    try:
        async with asyncio.timeout(10):
            await synced.wait()
        assert seen == [("ADDED", "default/a"), ("ADDED", "default/b")]
        assert syncs == [["default/a", "default/b"]]
        await fake_kube.modify("a", v="2")
        await until(lambda: len(seen) == 3)
        assert seen[-1] == ("MODIFIED", "default/a")

        async def away() -> None:
            await fake_kube.delete("b")
            await fake_kube.add("c")

        seen.clear()
        await _expire_while_away(fake_kube, away)
        await until(lambda: len(syncs) == 2)
        # The re-list's diff, then one sync with everything.
        assert seen == [("DELETED", "default/b"), ("ADDED", "default/c")]
        assert syncs[1] == ["default/a", "default/c"]
        assert inf.stats.relists == 1
    finally:
        await inf.stop()


async def test_node_informer_first_list_is_one_sync_then_changes(fake_kube: Any, api: Any) -> None:
    """The agent's Node events: SYNC for every list (after a re-list's changes), else changes."""
    await fake_kube.add("n1")
    await fake_kube.add("n2")
    events: list[NodeEvent] = []

    async def handler(ev: NodeEvent) -> None:
        events.append(ev)

    inf = node_informer(api, handler, backoff_initial=0.01, backoff_max=0.05)
    inf.start()
    try:
        await until(lambda: len(events) == 1)
        assert events[0].kind is NodeEventKind.SYNC
        assert sorted(n.name for n in events[0].nodes) == ["n1", "n2"]
        await fake_kube.add("n3")
        await fake_kube.modify("n1", v="2")
        await fake_kube.delete("n2")
        await until(lambda: len(events) == 4)
        assert [(e.kind, e.nodes[0].name) for e in events[1:]] == [
            (NodeEventKind.ADDED, "n3"),
            (NodeEventKind.MODIFIED, "n1"),
            (NodeEventKind.DELETED, "n2"),
        ]
        events.clear()

        async def away() -> None:
            await fake_kube.delete("n3")
            await fake_kube.add("n4")

        await _expire_while_away(fake_kube, away)
        await until(lambda: len(events) == 3)
        assert [e.kind for e in events] == [
            NodeEventKind.DELETED,
            NodeEventKind.ADDED,
            NodeEventKind.SYNC,
        ]
        assert sorted(n.name for n in events[-1].nodes) == ["n1", "n4"]
    finally:
        await inf.stop()


async def test_node_handler_failure_is_retried_as_a_sync(fake_kube: Any, api: Any) -> None:
    """A failing Node handler gets a SYNC of every cached Node later (as the old loop re-listed)."""
    await fake_kube.add("n1")
    events: list[NodeEvent] = []
    fail = [True]

    async def handler(ev: NodeEvent) -> None:
        events.append(ev)
        if ev.kind is NodeEventKind.ADDED and fail[0]:
            fail[0] = False
            raise OSError("route add failed")

    inf = node_informer(api, handler, retry_delay=0.01, backoff_initial=0.01)
    inf.start()
    try:
        await until(lambda: len(events) == 1)
        await fake_kube.add("n2")
        await until(lambda: len(events) == 3)
        assert [e.kind for e in events] == [
            NodeEventKind.SYNC,
            NodeEventKind.ADDED,
            NodeEventKind.SYNC,
        ]
        assert sorted(n.name for n in events[-1].nodes) == ["n1", "n2"]
        await fake_kube.delete("n1")
        await until(lambda: len(events) == 4)
        assert (events[-1].kind, events[-1].nodes[0].name) == (NodeEventKind.DELETED, "n1")
    finally:
        await inf.stop()
