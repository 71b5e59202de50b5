"""Store semantics: resourceVersions, history window, watch filtering, slow watchers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from antrea.testbed.apiserver import errors
from antrea.testbed.apiserver.persistence import LOG, Persistence, PersistError
from antrea.testbed.apiserver.store import Store

JSON = dict[str, Any]
KEY = ("", "pods")


def obj(name: str, ns: str = "default", **labels: str) -> JSON:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels}}


def test_resource_versions_are_global_and_monotonic() -> None:
    store = Store()
    a = store.put(KEY, obj("a"), old=None)
    b = store.put(("", "configmaps"), obj("b"), old=None)
    c = store.remove(KEY, obj("a"))
    assert (a.rv, b.rv, c.rv) == (1, 2, 3)
    assert c.obj["metadata"]["resourceVersion"] == "3"
    assert store.get(KEY, "default", "a") is None


def test_list_is_in_key_order() -> None:
    store = Store()
    for ns, name in (("b", "z"), ("a", "y"), ("b", "a")):
        store.put(KEY, obj(name, ns), old=None)
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in store.list(KEY)] == [
        ("a", "y"),
        ("b", "a"),
        ("b", "z"),
    ]
    assert [o["metadata"]["name"] for o in store.list(KEY, "b")] == ["a", "z"]
    assert store.count(KEY) == 3 and store.count(KEY, "a") == 1


def test_watch_replays_history_and_reports_gone_beyond_it() -> None:
    store = Store(history=3)
    for i in range(5):
        store.put(KEY, obj(f"p{i}"), old=None)
    # rv 1 and 2 were evicted: resuming from 2 still works (needs 3..5), from 1 does not.
    w = store.watch(KEY, namespace=None, name=None, predicate=None, since=2)
    assert [e.rv for _, e in w.pending] == [3, 4, 5]
    with pytest.raises(errors.APIError) as exc:
        store.watch(KEY, namespace=None, name=None, predicate=None, since=1)
    assert exc.value.code == 410


def test_watch_without_version_starts_with_state() -> None:
    store = Store()
    store.put(KEY, obj("a"), old=None)
    store.put(KEY, obj("b", "other"), old=None)
    w = store.watch(KEY, namespace="default", name=None, predicate=None, since=None)
    assert [(k, e.obj["metadata"]["name"]) for k, e in w.pending] == [("ADDED", "a")]
    store.put(KEY, obj("c"), old=None)
    store.put(KEY, obj("d", "other"), old=None)
    assert [e.obj["metadata"]["name"] for _, e in w.pending] == ["a", "c"]


def test_selector_transitions_become_added_and_deleted() -> None:
    store = Store()
    first = store.put(KEY, obj("a", app="web"), old=None).obj

    def pred(o: JSON) -> bool:
        return bool(o["metadata"]["labels"].get("app") == "web")

    w = store.watch(KEY, namespace=None, name=None, predicate=pred, since=1)
    second = store.put(KEY, obj("a", app="db"), old=first).obj
    third = store.put(KEY, obj("a", app="db", x="1"), old=second).obj
    store.put(KEY, obj("a", app="web"), old=third)
    assert [k for k, _ in w.pending] == ["DELETED", "ADDED"]


def test_slow_watcher_is_dropped_without_blocking_writers() -> None:
    store = Store(watch_queue=3)
    slow = store.watch(KEY, namespace=None, name=None, predicate=None, since=None)
    fast = store.watch(KEY, namespace=None, name=None, predicate=None, since=None)
    for i in range(5):
        store.put(KEY, obj(f"p{i}"), old=None)
        if i < 2:
            fast.pending.clear()  # a reader keeping up
    assert slow.overflowed and slow.closed and not slow.pending
    assert not fast.overflowed
    store.unwatch(slow)
    assert store.watcher_count() == 1


async def test_persistence_round_trip_and_torn_log(tmp_path: Path) -> None:
    store = Store()
    p = Persistence(tmp_path)
    rv, objects = p.load()
    assert (rv, objects) == (0, [])
    p.start(store)
    store.put(KEY, obj("a"), old=None)
    store.put(KEY, obj("b"), old=None)
    store.remove(KEY, obj("a"))
    p._flush()
    with open(tmp_path / LOG, "ab") as f:
        f.write(b'[99, "ADDED", "", "pods", {"metadata"')  # a crash mid-line
    again = Persistence(tmp_path)
    rv, objects = again.load()
    assert rv == 3
    assert [o["metadata"]["name"] for _, _, o in objects] == ["b"]
    await p.close()
    rv, objects = Persistence(tmp_path).load()
    assert rv == 3 and [o["metadata"]["name"] for _, _, o in objects] == ["b"]
    assert (tmp_path / LOG).read_bytes() == b""


def test_watch_from_a_future_version_is_gone() -> None:
    """A version newer than any issued (the server lost its state) forces a re-list."""
    store = Store()
    store.put(KEY, obj("a"), old=None)
    store.watch(KEY, namespace=None, name=None, predicate=None, since=1)
    with pytest.raises(errors.APIError) as exc:
        store.watch(KEY, namespace=None, name=None, predicate=None, since=2)
    assert exc.value.code == 410


@pytest.mark.parametrize(
    "failure", [OSError(28, "No space left on device"), ValueError("I/O on closed file")]
)
async def test_writes_wait_for_the_sync_and_hear_of_a_failed_one(
    tmp_path: Path, failure: Exception
) -> None:
    """`wait_durable` returns only once the change log holds the event; a failed write is
    reported to its writer (never a hang) and the next batch is written normally."""
    store = Store()
    p = Persistence(tmp_path)
    p.load()
    p.start(store)
    try:
        store.put(KEY, obj("a"), old=None)
        assert p.durable_rv < store.rv
        await asyncio.wait_for(p.wait_durable(store.rv), 5)
        assert b'"a"' in (tmp_path / LOG).read_bytes()

        real_write = p._write

        def failing(data: bytes) -> None:
            raise failure

        p._write = failing  # type: ignore[method-assign]
        store.put(KEY, obj("b"), old=None)
        with pytest.raises(PersistError):
            await asyncio.wait_for(p.wait_durable(store.rv), 5)
        p._write = real_write  # type: ignore[method-assign]
        store.put(KEY, obj("c"), old=None)
        await asyncio.wait_for(p.wait_durable(store.rv), 5)
        assert b'"c"' in (tmp_path / LOG).read_bytes()
    finally:
        await p.close()
