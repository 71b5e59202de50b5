"""The informer against the embedded API server over HTTPS, through kubernetes-asyncio.

Covers issue 2's acceptance line: list + watch + resume from a resourceVersion + 410 re-list,
with a kubeconfig (token + embedded CA) loaded by `antrea.k8s.client`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from antrea.k8s.client import load_kubeconfig_client
from antrea.k8s.informer import Informer, object_key
from antrea.testbed.apiserver.server import APIServer

JSON = dict[str, Any]
HISTORY = 8


async def until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


def _pod(name: str, **labels: str) -> Any:  # a dict body (kubernetes-asyncio takes it as is)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "lab/workload"}]},
    }


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[APIServer, Any]]:
    server = APIServer(port=0, history=HISTORY, bookmark_interval=0.2)
    await server.start()
    api = None
    try:
        server.write_kubeconfig(tmp_path / "admin.kubeconfig")
        api = load_kubeconfig_client(str(tmp_path / "admin.kubeconfig"))
        core = client.CoreV1Api(api)
        ns: Any = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
        await core.create_namespace(ns)
        yield server, api
    finally:
        if api is not None:
            await api.close()
        await server.stop()


class Gate:
    """Wraps a list function so watches can be held back (the informer is 'disconnected')."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.open = asyncio.Event()
        self.open.set()
        self.watch_versions: list[str | None] = []

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("watch"):
            await self.open.wait()
            self.watch_versions.append(kwargs.get("resource_version"))
        return await self.func(*args, **kwargs)


async def test_informer_against_embedded_apiserver(cluster: tuple[APIServer, Any]) -> None:
    """List, watch, resume after the server ends the stream, and re-list after 410."""
    server, api = cluster
    core = client.CoreV1Api(api)
    for name in ("a", "b", "c"):
        await core.create_namespaced_pod("x", _pod(name, v="1"))

    events: list[tuple[str, str, str]] = []

    def label(obj: JSON) -> str:
        return str((obj["metadata"].get("labels") or {}).get("v", ""))

    gate = Gate(core.list_pod_for_all_namespaces)
    inf = Informer(gate, name="pods", backoff_initial=0.01, backoff_max=0.1, watch_timeout=60)
    inf.add_handler(
        on_add=lambda o: events.append(("add", object_key(o), label(o))),
        on_update=lambda old, new: events.append(("update", object_key(new), label(new))),
        on_delete=lambda o: events.append(("delete", object_key(o), label(o))),
    )
    inf.start()
    try:
        # 1. list
        await inf.wait_synced(20)
        assert events == [("add", "x/a", "1"), ("add", "x/b", "1"), ("add", "x/c", "1")]
        assert (inf.get("x", "a") or {})["kind"] == "Pod"
        listed_rv = inf.resource_version
        assert listed_rv

        # 2. watch
        await until(lambda: len(gate.watch_versions) == 1)
        assert gate.watch_versions[0] == listed_rv
        await core.patch_namespaced_pod("b", "x", {"metadata": {"labels": {"v": "2"}}})
        await core.create_namespaced_pod("x", _pod("d", v="1"))
        await until(lambda: len(events) == 5)
        assert events[3:] == [("update", "x/b", "2"), ("add", "x/d", "1")]

        # 3. resume: the server ends the stream; the informer continues from its last version.
        seen_rv = inf.resource_version
        server.store.close_watchers()
        await until(lambda: len(gate.watch_versions) == 2)
        assert int(gate.watch_versions[1] or 0) >= int(seen_rv or 0)
        await core.delete_namespaced_pod("d", "x")
        await until(lambda: len(events) == 6)
        assert events[5] == ("delete", "x/d", "1")
        assert inf.stats.lists == 1

        # 4. 410: disconnected long enough for the history to move past our version.
        events.clear()
        gate.open.clear()
        server.store.close_watchers()
        old_uid_c = (inf.get("x", "c") or {})["metadata"]["uid"]
        await core.patch_namespaced_pod("a", "x", {"metadata": {"labels": {"v": "3"}}})
        await core.delete_namespaced_pod("b", "x", grace_period_seconds=0)
        await core.delete_namespaced_pod("c", "x", grace_period_seconds=0)
        await _create_when_gone(core, _pod("c", v="new"))
        for i in range(HISTORY + 2):  # churn elsewhere pushes our version out of the history
            cm: Any = {"metadata": {"name": f"cm{i}"}, "data": {"k": "v"}}
            await core.create_namespaced_config_map("x", cm)
        gate.open.set()
        await until(lambda: inf.stats.relists >= 1 and len(events) >= 4)
        await asyncio.sleep(0.2)
        assert sorted(events) == sorted(
            [
                ("update", "x/a", "3"),
                ("delete", "x/b", "2"),
                ("delete", "x/c", "1"),
                ("add", "x/c", "new"),
            ]
        )
        assert events.index(("delete", "x/c", "1")) < events.index(("add", "x/c", "new"))
        assert (inf.get("x", "c") or {})["metadata"]["uid"] != old_uid_c
        assert sorted(inf.keys()) == ["x/a", "x/c"]
        assert inf.stats.lists == 2

        # and the watch goes on after the re-list
        events.clear()
        await core.create_namespaced_pod("x", _pod("e", v="1"))
        await until(lambda: events == [("add", "x/e", "1")])
    finally:
        await inf.stop()


async def _create_when_gone(core: Any, pod: JSON) -> None:
    """Create ``pod`` once a previous pod of that name is really gone (409 until then)."""
    async with asyncio.timeout(20):
        while True:
            try:
                await core.create_namespaced_pod("x", pod)
                return
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
            await asyncio.sleep(0.05)
