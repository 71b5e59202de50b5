"""Malformed objects never crash the server: every answer is a Status, never a 500."""

from __future__ import annotations

import copy
import random
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from antrea.testbed.apiserver.server import APIServer

JSON = dict[str, Any]

SEEDS: dict[str, tuple[str, JSON]] = {
    "pod": (
        "/api/v1/namespaces/default/pods",
        {
            "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}],
            },
        },
    ),
    "service": (
        "/api/v1/namespaces/default/services",
        {"metadata": {"name": "s"}, "spec": {"selector": {"a": "b"}, "ports": [{"port": 80}]}},
    ),
    "netpol": (
        "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies",
        {
            "metadata": {"name": "n"},
            "spec": {
                "podSelector": {"matchLabels": {"a": "b"}},
                "ingress": [
                    {
                        "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                        "ports": [{"port": 80, "endPort": 90}],
                    }
                ],
                "egress": [{"to": [{"namespaceSelector": {}}]}],
            },
        },
    ),
    "namespace": ("/api/v1/namespaces", {"metadata": {"name": "ns1"}}),
    "node": (
        "/api/v1/nodes",
        {
            "metadata": {"name": "n1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "1.2.3.4"}]},
        },
    ),
    "lease": (
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
        {"metadata": {"name": "l"}, "spec": {"holderIdentity": "x", "leaseDurationSeconds": 15}},
    ),
    "crd": (
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        {
            "metadata": {"name": "things.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {
                    "plural": "things",
                    "kind": "Thing",
                    "singular": "thing",
                    "listKind": "ThingList",
                },
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": {"type": "object"}},
                    }
                ],
            },
        },
    ),
}

_JUNK: list[Any] = [None, 0, -1, 1.5, True, "", "x", [], [1], {}, {"k": "v"}, [{"a": None}]]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*prefix, i)))
    return out


def mutate(rng: random.Random, obj: JSON) -> JSON:
    out = copy.deepcopy(obj)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(out) if p]
        path = rng.choice(paths)
        parent: Any = out
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = copy.deepcopy(rng.choice(_JUNK))
    return out


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    server = APIServer(port=0)
    await server.start()
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    async with aiohttp.ClientSession(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.admin_token}"},
        connector=aiohttp.TCPConnector(ssl=ctx),
    ) as s:
        try:
            yield s
        finally:
            await server.stop()


async def _send(s: aiohttp.ClientSession, method: str, path: str, body: Any, ctype: str) -> int:
    async with s.request(
        method, path, data=orjson.dumps(body), headers={"Content-Type": ctype}
    ) as r:
        payload = await r.read()
        assert r.status != 500, payload
        if r.status >= 400:
            assert orjson.loads(payload)["kind"] == "Status"
        return r.status


@pytest.mark.parametrize("kind", sorted(SEEDS))
async def test_mutated_objects_get_status_answers(
    session: aiohttp.ClientSession, kind: str
) -> None:
    rng = random.Random(f"apiserver-fuzz-{kind}")
    base, seed = SEEDS[kind]
    assert await _send(session, "POST", base, seed, "application/json") == 201
    name = seed["metadata"]["name"]
    for i in range(60):
        body = mutate(rng, seed)
        if isinstance(body.get("metadata"), dict) and isinstance(body["metadata"].get("name"), str):
            body["metadata"]["name"] = f"{name}{i}"
        await _send(session, "POST", base, body, "application/json")
        await _send(
            session, "PATCH", f"{base}/{name}", mutate(rng, seed), "application/merge-patch+json"
        )
        await _send(
            session,
            "PATCH",
            f"{base}/{name}",
            mutate(rng, seed),
            "application/strategic-merge-patch+json",
        )
        current = mutate(rng, seed)
        if isinstance(current.get("metadata"), dict):
            current["metadata"]["name"] = name
        await _send(session, "PUT", f"{base}/{name}", current, "application/json")


@pytest.mark.parametrize(
    "query",
    [
        "?labelSelector=a+in+(",
        "?labelSelector=%3D%3D%3D",
        "?fieldSelector=nope%3D1",
        "?limit=-1",
        "?limit=abc",
        "?continue=garbage",
        "?watch=1&resourceVersion=abc",
        "?watch=1&timeoutSeconds=abc",
    ],
)
async def test_bad_query_parameters_get_status_answers(
    session: aiohttp.ClientSession, query: str
) -> None:
    async with session.get("/api/v1/namespaces/default/pods" + query) as r:
        assert r.status in (200, 400), await r.read()
        if r.status == 400:
            assert (await r.json())["reason"] == "BadRequest"


@pytest.mark.parametrize(
    "options",
    [{"preconditions": []}, {"preconditions": {"uid": 5}}, {"gracePeriodSeconds": "x"}, [], "x"],
)
async def test_bad_delete_options_get_status_answers(
    session: aiohttp.ClientSession, options: Any
) -> None:
    base = "/api/v1/namespaces/default/configmaps"
    assert (
        await _send(session, "POST", base, {"metadata": {"name": "c"}}, "application/json") == 201
    )
    await _send(session, "DELETE", base + "/c", options, "application/json")
