"""The informer delivers every change exactly once across watch ends, breaks and 410 re-lists."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kubernetes_asyncio import client

from antrea.k8s.informer import Informer, object_key, path_list_func, strip_managed_fields

JSON = dict[str, Any]


class Recorder:
    """Handlers that log ("add"|"update"|"delete", key, labels) tuples."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, JSON]] = []

    def on_add(self, obj: JSON) -> None:
        self.events.append(("add", object_key(obj), obj["metadata"].get("labels") or {}))

    def on_update(self, old: JSON, new: JSON) -> None:
        self.events.append(("update", object_key(new), new["metadata"].get("labels") or {}))

    def on_delete(self, obj: JSON) -> None:
        self.events.append(("delete", object_key(obj), obj["metadata"].get("labels") or {}))

    def names(self) -> list[tuple[str, str]]:
        return [(e[0], e[1]) for e in self.events]


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for ``cond`` (a deadline only to fail instead of hanging)."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


@pytest.fixture
async def api(fake_kube: Any) -> AsyncIterator[Any]:
    conf = client.Configuration(host=fake_kube.url)
    api_client = client.ApiClient(configuration=conf)
    try:
        yield api_client
    finally:
        await api_client.close()


def _informer(api: Any, rec: Recorder, **kwargs: Any) -> Informer:
    kwargs.setdefault("backoff_initial", 0.01)
    kwargs.setdefault("backoff_max", 0.05)
    inf = Informer(client.CoreV1Api(api).list_pod_for_all_namespaces, name="pods", **kwargs)
    inf.add_handler(on_add=rec.on_add, on_update=rec.on_update, on_delete=rec.on_delete)
    return inf


async def test_list_then_watch(fake_kube: Any, api: Any) -> None:
    """The initial list is delivered as adds before has_synced; watch events follow in order."""
    await fake_kube.add("a", app="x")
    await fake_kube.add("b", app="y")
    rec = Recorder()
    inf = _informer(api, rec)
    inf.start()
    try:
        await inf.wait_synced(10)
        assert rec.names() == [("add", "default/a"), ("add", "default/b")]
        assert (inf.get("default", "a") or {})["kind"] == "Pod"  # filled in from the list kind
        await fake_kube.add("c")
        await fake_kube.modify("a", app="z")
        await fake_kube.delete("b")
        await until(lambda: len(rec.events) == 5)
        assert rec.events[2:] == [
            ("add", "default/c", {}),
            ("update", "default/a", {"app": "z"}),
            ("delete", "default/b", {"app": "y"}),
        ]
        assert sorted(inf.keys()) == ["default/a", "default/c"]
        assert inf.resource_version == str(fake_kube.rv)
        q = fake_kube.watch_requests[0]
        assert q["resourceVersion"] == "102"
        assert q["allowWatchBookmarks"].lower() == "true"
    finally:
        await inf.stop()


async def test_resume_after_watch_timeout(fake_kube: Any, api: Any) -> None:
    """A watch that ends is resumed from the last version seen: no list, no replay."""
    await fake_kube.add("a")
    rec = Recorder()
    inf = _informer(api, rec, watch_timeout=1)
    inf.start()
    try:
        await inf.wait_synced(10)
        await fake_kube.add("b")
        await until(lambda: len(rec.events) == 2)
        await fake_kube.close_watches()
        await until(lambda: len(fake_kube.watch_requests) >= 2)
        await fake_kube.modify("b", v="2")
        await until(lambda: len(rec.events) == 3)
        assert fake_kube.watch_requests[1]["resourceVersion"] == "102"
        assert len(fake_kube.list_requests) == 1
        assert rec.names() == [("add", "default/a"), ("add", "default/b"), ("update", "default/b")]
    finally:
        await inf.stop()


async def test_resume_after_dropped_connection(fake_kube: Any, api: Any) -> None:
    """A connection cut mid-stream resumes from the last event received, losing nothing."""
    rec = Recorder()
    inf = _informer(api, rec)
    inf.start()
    try:
        await inf.wait_synced(10)
        await fake_kube.close_watches()
        fake_kube.watch_gate.clear()
        await until(lambda: len(fake_kube.watch_requests) >= 1)
        fake_kube.drop_after = 2
        for name in "abcd":
            await fake_kube.add(name)
        fake_kube.watch_gate.set()
        await until(lambda: len(rec.events) == 4)
        await asyncio.sleep(0.1)
        assert rec.names() == [("add", f"default/{n}") for n in "abcd"]
        resumed = [q["resourceVersion"] for q in fake_kube.watch_requests]
        assert "102" in resumed  # resumed after the second event of the cut stream
        assert inf.stats.errors >= 1
        assert inf.stats.lists == 1
    finally:
        await inf.stop()


@pytest.mark.parametrize("as_event", [False, True], ids=["http-410", "error-event-410"])
async def test_relist_on_410_synthesizes_delta(fake_kube: Any, api: Any, as_event: bool) -> None:
    """After 410 the re-list produces exactly the adds, updates and deletes that were missed."""
    fake_kube.gone_as_event = as_event
    for name in "abcd":
        await fake_kube.add(name, v="1")
    rec = Recorder()
    inf = _informer(api, rec)
    inf.start()
    try:
        await inf.wait_synced(10)
        old_uid_c = (inf.get("default", "c") or {})["metadata"]["uid"]
        # Disconnect, change everything while away, and forget the history.
        fake_kube.watch_gate.clear()
        await fake_kube.close_watches()
        await until(lambda: len(fake_kube.watch_requests) >= 1)
        await fake_kube.modify("a", v="2")  # update
        await fake_kube.delete("b")  # delete
        await fake_kube.delete("c")  # delete + re-create under the same name
        await fake_kube.add("c", v="new")
        await fake_kube.add("e", v="1")  # add
        fake_kube.compact()
        rec.events.clear()
        fake_kube.watch_gate.set()
        await until(lambda: inf.stats.relists == 1 and len(rec.events) == 5)
        assert rec.events == [
            ("delete", "default/b", {"v": "1"}),
            ("update", "default/a", {"v": "2"}),
            ("delete", "default/c", {"v": "1"}),
            ("add", "default/c", {"v": "new"}),
            ("add", "default/e", {"v": "1"}),
        ]
        assert (inf.get("default", "c") or {})["metadata"]["uid"] != old_uid_c
        assert sorted(inf.keys()) == ["default/a", "default/c", "default/d", "default/e"]
        # and the watch continues from the re-list's version
        await fake_kube.delete("d")
        await until(lambda: len(rec.events) == 6)
        assert rec.events[-1][:2] == ("delete", "default/d")
    finally:
        await inf.stop()


async def test_relist_after_repeated_watch_failures(fake_kube: Any, api: Any) -> None:
    """A server that keeps failing watches gets a fresh list (diffed, no duplicates)."""
    await fake_kube.add("a", v="1")
    rec = Recorder()
    inf = _informer(api, rec)
    inf.start()
    try:
        await inf.wait_synced(10)
        fake_kube.fail_watches = 3
        await fake_kube.close_watches()
        await fake_kube.modify("a", v="2")
        await until(lambda: inf.stats.relists == 1 and len(rec.events) == 2)
        assert inf.stats.lists == 2
        assert rec.events == [("add", "default/a", {"v": "1"}), ("update", "default/a", {"v": "2"})]
        await fake_kube.delete("a")
        await until(lambda: len(rec.events) == 3)
        assert rec.events[-1][:2] == ("delete", "default/a")
    finally:
        await inf.stop()


async def test_duplicates_are_suppressed(fake_kube: Any, api: Any) -> None:
    """An event for a version already cached (a replay) calls no handler."""
    await fake_kube.add("a")
    rec = Recorder()
    inf = _informer(api, rec)
    inf.start()
    try:
        await inf.wait_synced(10)
        # Replay the ADDED event of "a" as if the server resent it.
        obj = fake_kube.objects["default/a"]
        await inf._handle_event({"type": "ADDED", "object": obj})
        await inf._handle_event({"type": "MODIFIED", "object": obj})
        await inf._handle_event({"type": "DELETED", "object": {"metadata": {"name": "zz"}}})
        assert rec.names() == [("add", "default/a")]
        assert inf.get("default", "a") is not obj  # the cached (listed) object stays
    finally:
        await inf.stop()


async def test_bookmarks_advance_resource_version(fake_kube: Any, api: Any) -> None:
    """Bookmarks move the resume point without calling handlers."""
    rec = Recorder()
    inf = _informer(api, rec)
    inf.start()
    try:
        await inf.wait_synced(10)
        await until(lambda: len(fake_kube.watch_requests) >= 1)
        await fake_kube.bookmark()
        await until(lambda: inf.resource_version == str(fake_kube.rv))
        assert rec.events == []
    finally:
        await inf.stop()


async def test_list_errors_back_off_and_retry(fake_kube: Any, api: Any) -> None:
    """A failing list is retried; has_synced waits for the first successful one."""
    fake_kube.fail_lists = 2
    await fake_kube.add("a")
    rec = Recorder()
    inf = _informer(api, rec)
    inf.start()
    try:
        await inf.wait_synced(10)
        assert len(fake_kube.list_requests) == 3
        assert inf.stats.errors == 2
        assert rec.names() == [("add", "default/a")]
    finally:
        await inf.stop()


async def test_paging_selectors_and_namespace(fake_kube: Any, api: Any) -> None:
    """Lists are paged; selectors and the namespace reach the server."""
    for name in "abcde":
        await fake_kube.add(name)
    rec = Recorder()
    inf = Informer(
        client.CoreV1Api(api).list_namespaced_pod,
        name="pods",
        namespace="default",
        label_selector="app=x",
        field_selector="spec.nodeName=node1",
        page_size=2,
    )
    inf.add_handler(on_add=rec.on_add)
    inf.start()
    try:
        await inf.wait_synced(10)
        assert len(inf) == 5
        assert [q.get("continue") for q in fake_kube.list_requests] == [None, "0:2", "0:4"]
        assert all(q["limit"] == "2" for q in fake_kube.list_requests)
        assert fake_kube.list_requests[0]["labelSelector"] == "app=x"
        assert fake_kube.list_requests[0]["fieldSelector"] == "spec.nodeName=node1"
        await until(lambda: len(fake_kube.watch_requests) >= 1)
        assert fake_kube.watch_requests[0]["labelSelector"] == "app=x"
    finally:
        await inf.stop()


async def test_async_handlers_errors_and_resync(fake_kube: Any, api: Any) -> None:
    """Async handlers are awaited, a raising handler does not stop delivery, resync re-sends."""
    await fake_kube.add("a")
    seen: list[str] = []

    async def on_add(obj: JSON) -> None:
        await asyncio.sleep(0)
        seen.append("add:" + obj["metadata"]["name"])

    def boom(obj: JSON) -> None:
        raise RuntimeError("handler bug")

    def on_update(old: JSON, new: JSON) -> None:
        if old is new:
            seen.append("resync:" + new["metadata"]["name"])

    inf = Informer(
        client.CoreV1Api(api).list_pod_for_all_namespaces,
        name="pods",
        resync=0.05,
        transform=strip_managed_fields,
    )
    inf.add_handler(on_add=boom)
    inf.add_handler(on_add=on_add, on_update=on_update)
    inf.start()
    try:
        await inf.wait_synced(10)
        await fake_kube.add("b")
        await until(lambda: "add:b" in seen and "resync:b" in seen)
        assert seen[0] == "add:a"
        with pytest.raises(RuntimeError):
            inf.add_handler(on_add=boom)
    finally:
        await inf.stop()


async def test_path_list_func(fake_kube: Any, api: Any) -> None:
    """A path-based list function works for any collection (custom resources)."""
    await fake_kube.add("a", ns="x")
    rec = Recorder()
    inf = Informer(
        path_list_func(api, "/api/v1/namespaces/{namespace}/pods"),
        name="raw",
        namespace="x",
        label_selector="a=b",
    )
    inf.add_handler(on_add=rec.on_add, on_delete=rec.on_delete)
    inf.start()
    try:
        await inf.wait_synced(10)
        await fake_kube.delete("a", ns="x")
        await until(lambda: len(rec.events) == 2)
        assert rec.names() == [("add", "x/a"), ("delete", "x/a")]
        assert fake_kube.watch_requests[0]["labelSelector"] == "a=b"
    finally:
        await inf.stop()


class StateChecker:
    """Rebuilds the server's state from the callbacks, failing on any impossible callback."""

    def __init__(self) -> None:
        self.state: dict[str, JSON] = {}
        self.problems: list[str] = []
        self.count = 0

    def on_add(self, obj: JSON) -> None:
        self.count += 1
        key = object_key(obj)
        if key in self.state:
            self.problems.append(f"add of present {key}")
        self.state[key] = obj

    def on_update(self, old: JSON, new: JSON) -> None:
        self.count += 1
        key = object_key(new)
        cur = self.state.get(key)
        if cur is None:
            self.problems.append(f"update of absent {key}")
        elif int(new["metadata"]["resourceVersion"]) <= int(cur["metadata"]["resourceVersion"]):
            self.problems.append(f"stale or duplicate update of {key}")
        elif old is not cur:
            self.problems.append(f"update of {key} with an old object that is not the cached one")
        self.state[key] = new

    def on_delete(self, obj: JSON) -> None:
        self.count += 1
        key = object_key(obj)
        if self.state.pop(key, None) is None:
            self.problems.append(f"delete of absent {key}")


@pytest.mark.parametrize("seed", range(8))
async def test_randomized_disconnects_converge(fake_kube: Any, api: Any, seed: int) -> None:
    """Random changes, cut connections, clean ends and compactions: the state rebuilt from the
    callbacks always converges to the server's, with no impossible callback on the way."""
    import random

    rng = random.Random(seed)
    fake_kube.gone_as_event = rng.random() < 0.5
    for i in range(5):
        await fake_kube.add(f"p{i}", v="0")
    checker = StateChecker()
    inf = Informer(
        client.CoreV1Api(api).list_pod_for_all_namespaces,
        name="pods",
        backoff_initial=0.005,
        backoff_max=0.02,
        page_size=3,
    )
    inf.add_handler(on_add=checker.on_add, on_update=checker.on_update, on_delete=checker.on_delete)
    seen_events: list[Any] = []
    orig = inf._handle_event

    async def spy(event: Any) -> None:
        md = event["object"].get("metadata", {})
        seen_events.append((event["type"], md.get("resourceVersion"), md.get("name")))
        await orig(event)

    inf._handle_event = spy  # type: ignore[method-assign]
    inf.start()
    try:
        await inf.wait_synced(10)
        next_name = 5
        for step in range(100):
            r = rng.random()
            names = sorted(k.split("/")[1] for k in fake_kube.objects)
            if r < 0.3 or not names:
                await fake_kube.add(f"p{next_name}", v=str(step))
                next_name += 1
            elif r < 0.6:
                await fake_kube.modify(rng.choice(names), v=str(step))
            elif r < 0.75:
                await fake_kube.delete(rng.choice(names))
            elif r < 0.82:
                fake_kube.drop_after = rng.randint(0, 2)
                await fake_kube.close_watches()
            elif r < 0.88:
                await fake_kube.close_watches()
            elif r < 0.94:
                fake_kube.watch_gate.clear()
                await fake_kube.close_watches()
                for _ in range(rng.randint(1, 4)):
                    names = sorted(k.split("/")[1] for k in fake_kube.objects)
                    if names and rng.random() < 0.5:
                        await fake_kube.delete(rng.choice(names))
                    else:
                        await fake_kube.add(f"p{next_name}", v=str(step))
                        next_name += 1
                fake_kube.compact()
                fake_kube.watch_gate.set()
            else:
                await fake_kube.bookmark()
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() * 0.02)

        def converged() -> bool:
            return {k: v["metadata"]["resourceVersion"] for k, v in checker.state.items()} == {
                k: v["metadata"]["resourceVersion"] for k, v in fake_kube.objects.items()
            }

        try:
            await until(converged, timeout=10)
        except TimeoutError:
            mine = {k: v["metadata"]["resourceVersion"] for k, v in checker.state.items()}
            theirs = {k: v["metadata"]["resourceVersion"] for k, v in fake_kube.objects.items()}
            diff = {
                k: (mine.get(k), theirs.get(k))
                for k in {*mine, *theirs}
                if mine.get(k) != theirs.get(k)
            }
            watches = [q.get("resourceVersion") for q in fake_kube.watch_requests]
            raise AssertionError(
                f"diverged {diff}; received {seen_events}; watches {watches}"
            ) from None
        assert checker.problems == []
        assert sorted(inf.keys()) == sorted(fake_kube.objects)
    finally:
        await inf.stop()
