"""Regression (issue 9, "why" 4): refused bad writes never break the controller's watches.

A NetworkPolicy nested 300 levels deep used to be kept in memory after a 500, after which
every LIST/WATCH of NetworkPolicies failed and the controllers never saw another policy
change. Here the controller's real informers (`antrea.controller.inputs.Inputs`) watch the
embedded API server while hostile writes are refused; the very same watch streams then
deliver a new policy and a deletion, without a single watch error or re-list.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from antrea.controller.inputs import Inputs, Resource
from antrea.k8s.client import load_kubeconfig_client
from antrea.testbed.apiserver.server import APIServer

JSON = dict[str, Any]
NP = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies"


class Recorder:
    """The compiler's NetworkPolicy entry points, recording what arrives."""

    def __init__(self) -> None:
        self.live: set[str] = set()

    def add_network_policy(self, obj: JSON) -> None:
        self.live.add(obj["metadata"]["name"])

    def update_network_policy(self, old: JSON, new: JSON) -> None:
        self.live.add(new["metadata"]["name"])

    def delete_network_policy(self, obj: JSON) -> None:
        self.live.discard(obj["metadata"]["name"])


def netpol(name: str) -> JSON:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }


def nested(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth):
        value = {"a": value}
    return value


async def until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


def _hostile_requests() -> list[tuple[str, str, bytes, str]]:
    """(method, path, body, content type): each must be refused with a 4xx."""
    deep = netpol("deep")
    deep["spec"]["podSelector"] = nested(300)
    deep_annotations = netpol("deep2")
    deep_annotations["metadata"]["annotations"] = nested(300)
    typed = netpol("typed")
    typed["spec"]["ingress"] = {"from": "everyone"}
    bomb = b"metadata: {name: bomb}\na: &a [x,x,x,x,x,x,x,x,x]\n"
    for c in "bcdefghi":
        prev = chr(ord(c) - 1)
        refs = ",".join([f"*{prev}"] * 9)
        bomb += f"{c}: &{c} [{refs}]\n".encode()
    copy_ops = [{"op": "copy", "from": "/spec", "path": f"/spec/k{i}"} for i in range(25)]
    return [
        ("POST", NP, json.dumps(deep).encode(), "application/json"),
        ("POST", NP, json.dumps(deep_annotations).encode(), "application/json"),
        ("POST", NP, json.dumps(typed).encode(), "application/json"),
        ("POST", NP, bomb, "application/yaml"),
        ("POST", NP, json.dumps(netpol("plain")).encode(), "text/plain"),
        ("POST", NP, b"x" * (4 * 1024 * 1024), "application/json"),
        (
            "PATCH",
            f"{NP}/before",
            json.dumps({"spec": nested(300)}).encode(),
            "application/merge-patch+json",
        ),
        (
            "PATCH",
            f"{NP}/before",
            json.dumps({"spec": {"ingress": "all"}}).encode(),
            "application/merge-patch+json",
        ),
        ("PATCH", f"{NP}/before", json.dumps(copy_ops).encode(), "application/json-patch+json"),
        (
            "PUT",
            f"{NP}/before",
            json.dumps(deep | {"metadata": {"name": "before"}}).encode(),
            "application/json",
        ),
        ("DELETE", f"{NP}/before?gracePeriodSeconds=²", b"", "application/json"),
        ("GET", f"{NP}?limit=²", b"", ""),
    ]


@pytest.mark.timeout(120)
async def test_controller_watches_survive_refused_writes(tmp_path: Path) -> None:
    server = APIServer(port=0, data_dir=tmp_path / "data", bookmark_interval=0.2)
    await server.start()
    server.write_kubeconfig(tmp_path / "admin.kubeconfig")
    api = load_kubeconfig_client(str(tmp_path / "admin.kubeconfig"))
    recorder = Recorder()
    resource = Resource("network_policy", "/apis/networking.k8s.io/v1/networkpolicies")
    inputs = Inputs(recorder, api, resources=(resource,))
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    session = aiohttp.ClientSession(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.admin_token}"},
        connector=aiohttp.TCPConnector(ssl=ctx),
    )
    runner = asyncio.create_task(inputs.run())
    try:
        async with session.post(NP, json=netpol("before")) as resp:
            assert resp.status == 201
        await asyncio.wait_for(inputs.synced.wait(), 20)
        await until(lambda: recorder.live == {"before"})
        (informer,) = inputs.informers
        await until(lambda: informer.stats.watches >= 1)
        watches = informer.stats.watches
        for method, path, body, ctype in _hostile_requests():
            headers = {"Content-Type": ctype} if ctype else {}
            async with session.request(method, path, data=body, headers=headers) as resp:
                assert 400 <= resp.status < 500, (method, path, resp.status, await resp.text())
        # The same streams deliver what comes next.
        async with session.post(NP, json=netpol("after")) as resp:
            assert resp.status == 201
        async with session.delete(f"{NP}/before") as resp:
            assert resp.status == 200
        await until(lambda: recorder.live == {"after"})
        assert informer.stats.errors == 0
        assert informer.stats.relists == 0
        assert informer.stats.watches == watches
        assert inputs.errors == 0
        async with session.get(NP) as resp:
            assert resp.status == 200
            assert [o["metadata"]["name"] for o in (await resp.json())["items"]] == ["after"]
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await session.close()
        await api.close()
        await server.stop()
