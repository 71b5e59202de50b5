"""Large writes let woken watch streams send first (`Store.let_watchers_write`).

A burst of large creates whose bodies have all arrived would otherwise be decoded, checked and
stored back to back on the one event loop before any watch stream wrote the first event: the
consumers (the controller compiling policies of thousands of rules) idled until the end of the
burst.
"""

from __future__ import annotations

import asyncio
from typing import Any
from unittest import mock

import orjson
from aiohttp import streams, web
from aiohttp.test_utils import make_mocked_request

from antrea.testbed.apiserver.auth import TokenAuthenticator
from antrea.testbed.apiserver.resources import Registry
from antrea.testbed.apiserver.rest import ResourceHandlers
from antrea.testbed.apiserver.store import Event, Store

NP_KEY = ("networking.k8s.io", "networkpolicies")
PATH = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies"


def policy(name: str, rules: int) -> bytes:
    return orjson.dumps(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name},
            "spec": {
                "podSelector": {},
                "ingress": [
                    {"from": [{"ipBlock": {"cidr": f"10.{i // 256}.{i % 256}.0/24"}}]}
                    for i in range(rules)
                ],
            },
        }
    )


def post(body: bytes) -> web.Request:
    """A POST whose whole body has already arrived (reading it never waits)."""
    payload = streams.StreamReader(mock.Mock(_reading_paused=False), 2**16)
    payload.feed_data(body)
    payload.feed_eof()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    return make_mocked_request("POST", PATH, headers=headers, payload=payload)


def handlers_and_store() -> tuple[ResourceHandlers, Store]:
    store = Store()
    handlers = ResourceHandlers(
        store=store, registry=Registry(), authenticator=TokenAuthenticator()
    )
    handlers.bootstrap()
    return handlers, store


async def test_each_large_create_is_sent_to_watchers_before_the_next_one_is_processed() -> None:
    handlers, store = handlers_and_store()
    rt = handlers.registry.get("networking.k8s.io", "v1", "networkpolicies")
    assert rt is not None
    watcher = store.watch(NP_KEY, namespace=None, name=None, predicate=None, since=None)
    log: list[tuple[str, Any]] = []

    def committed(event: Event) -> None:
        if event.key == NP_KEY:
            # (hooks run after the fan-out: the event itself is queued already)
            queued = [e.obj["metadata"]["name"] for _, e in watcher.pending if e is not event]
            log.append(("commit", (event.obj["metadata"]["name"], queued)))

    store.on_commit.append(committed)

    async def stream() -> None:  # what `watch.serve_watch` does with its watcher
        while not watcher.closed:
            await watcher.wait(30)
            while watcher.pending:
                log.append(("sent", watcher.pending.popleft()[1].obj["metadata"]["name"]))

    sender = asyncio.create_task(stream())
    await asyncio.sleep(0)  # the stream waits for events
    bodies = [policy(f"np{i}", 1500) for i in range(3)]
    assert all(len(b) > 64 * 1024 for b in bodies)  # large: `heap.LARGE_BODY_BYTES`
    try:
        responses = await asyncio.gather(
            *(handlers._create(post(b), rt, "default") for b in bodies)
        )
        await asyncio.sleep(0)
    finally:
        sender.cancel()
    assert [r.status for r in responses] == [201, 201, 201]
    # Every create found the earlier events already taken by the stream.
    assert log == [
        ("commit", ("np0", [])),
        ("sent", "np0"),
        ("commit", ("np1", [])),
        ("sent", "np1"),
        ("commit", ("np2", [])),
        ("sent", "np2"),
    ]


async def test_writers_do_not_wait_for_a_stream_that_is_not_ready() -> None:
    store = Store()
    watcher = store.watch(NP_KEY, namespace=None, name=None, predicate=None, since=None)
    store.put(NP_KEY, {"metadata": {"name": "a", "namespace": "default"}}, old=None)
    assert watcher.pending and not watcher.ready  # its stream is busy elsewhere (writing)
    stepped: list[int] = []
    asyncio.get_running_loop().call_soon(stepped.append, 1)
    await store.let_watchers_write()
    assert stepped == []  # returned without yielding to the loop


async def test_a_ready_stream_holds_writers_for_a_bounded_number_of_steps() -> None:
    store = Store()
    watcher = store.watch(NP_KEY, namespace=None, name=None, predicate=None, since=None)
    waiting = asyncio.create_task(watcher.wait(30))
    await asyncio.sleep(0)
    stalled = asyncio.Event()
    with mock.patch.object(type(watcher), "_wake", lambda self: stalled.set()):
        store.put(NP_KEY, {"metadata": {"name": "a", "namespace": "default"}}, old=None)
    assert watcher.ready  # woken (as far as writers can tell), but its task never runs
    await asyncio.wait_for(store.let_watchers_write(max_steps=3), 5)
    assert watcher.ready
    watcher.close()
    await waiting
    assert not watcher.ready
