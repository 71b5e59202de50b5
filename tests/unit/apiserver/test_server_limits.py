"""kube-apiserver's limits: body size, media types, nesting, YAML aliases, patch growth.

Every refused request must leave the store exactly as it was and fully servable: GET, LIST,
WATCH and DELETE keep working for the resource afterwards.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from antrea.testbed.apiserver import errors
from antrea.testbed.apiserver.limits import MAX_DEPTH, MAX_REQUEST_BODY_BYTES
from antrea.testbed.apiserver.server import APIServer
from antrea.testbed.apiserver.store import Store

JSON = dict[str, Any]
NP = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies"
CM = "/api/v1/namespaces/default/configmaps"


def netpol(name: str) -> JSON:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]},
    }


def nested(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


class Api:
    def __init__(self, server: APIServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    async def send(
        self, method: str, path: str, body: Any = None, *, ctype: str | None = "application/json"
    ) -> tuple[int, JSON]:
        headers = {"Content-Type": ctype} if ctype else {}
        # The standard encoder: the test sends bodies deeper than orjson writes.
        data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
        skip = () if ctype else ("Content-Type",)
        async with self.session.request(
            method, path, data=data, headers=headers, skip_auto_headers=skip
        ) as resp:
            raw = await resp.read()
            return resp.status, orjson.loads(raw) if raw.startswith(b"{") else {"raw": raw}

    async def assert_servable(self, path: str, names: set[str]) -> None:
        """GET, LIST, WATCH from 0 still answer, and hold exactly ``names``."""
        status, listed = await self.send("GET", path)
        assert status == 200, listed
        assert {o["metadata"]["name"] for o in listed["items"]} == names
        for name in names:
            assert (await self.send("GET", f"{path}/{name}"))[0] == 200
        async with self.session.get(f"{path}?watch=1&resourceVersion=0&timeoutSeconds=1") as r:
            assert r.status == 200
            async with asyncio.timeout(10):
                lines = [line async for line in r.content if line.strip()]
        assert {orjson.loads(x)["object"]["metadata"]["name"] for x in lines} == names


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    server = APIServer(port=0, data_dir=tmp_path / "data")
    await server.start()
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    session = aiohttp.ClientSession(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.admin_token}"},
        connector=aiohttp.TCPConnector(ssl=ctx),
    )
    try:
        yield Api(server, session)
    finally:
        await session.close()
        await server.stop()


async def test_body_over_3mib_is_413_and_nothing_stored(api: Api) -> None:
    big = {"metadata": {"name": "big"}, "data": {"k": "x" * MAX_REQUEST_BODY_BYTES}}
    status, body = await api.send("POST", CM, big)
    assert status == 413, body
    assert body["reason"] == "RequestEntityTooLarge"
    assert (await api.send("GET", f"{CM}/big"))[0] == 404
    # Just under the limit the body is read and validated (a ConfigMap holds at most 1 MiB).
    ok = {"metadata": {"name": "ok"}, "data": {"k": "x" * (MAX_REQUEST_BODY_BYTES - 1000)}}
    status, body = await api.send("POST", CM, ok)
    assert status == 422 and body["reason"] == "Invalid", body


async def test_patch_body_over_3mib_is_413(api: Api) -> None:
    assert (await api.send("POST", NP, netpol("p")))[0] == 201
    patch = {"metadata": {"annotations": {"a": "x" * MAX_REQUEST_BODY_BYTES}}}
    status, body = await api.send("PATCH", f"{NP}/p", patch, ctype="application/merge-patch+json")
    assert status == 413 and body["reason"] == "RequestEntityTooLarge"


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "*/*"])
async def test_unknown_media_types_are_415(api: Api, ctype: str) -> None:
    status, body = await api.send("POST", NP, orjson.dumps(netpol("p")), ctype=ctype)
    assert status == 415, body
    assert body["reason"] == "UnsupportedMediaType"
    status, body = await api.send("PUT", f"{NP}/p", orjson.dumps(netpol("p")), ctype=ctype)
    assert status == 415
    await api.assert_servable(NP, set())


async def test_absent_content_type_means_json(api: Api) -> None:
    assert (await api.send("POST", NP, orjson.dumps(netpol("p")), ctype=None))[0] == 201


async def test_deep_object_is_refused_and_does_not_poison_the_resource(api: Api) -> None:
    """The issue's case: 300 levels are readable by the JSON parser but not writable."""
    assert (await api.send("POST", NP, netpol("good")))[0] == 201
    bad = netpol("deep")
    bad["metadata"]["annotations"] = nested(300)
    status, body = await api.send("POST", NP, bad)
    assert status == 400, body
    assert "depth" in body["message"]
    bad["spec"]["x"] = nested(300)
    bad["metadata"].pop("annotations")
    assert (await api.send("POST", NP, bad))[0] == 400
    await api.assert_servable(NP, {"good"})
    assert (await api.send("DELETE", f"{NP}/good"))[0] == 200
    await api.assert_servable(NP, set())


async def test_depth_limit_is_exact(api: Api) -> None:
    """MAX_DEPTH levels in total are accepted (and served back); one more is not."""
    obj = {"metadata": {"name": "d"}, "x": nested(MAX_DEPTH - 1)}
    assert (await api.send("POST", "/api/v1/namespaces/default/serviceaccounts", obj))[0] in (
        201,
        400,
    )
    ok = {"metadata": {"name": "ok", "annotations": {}}}
    assert (await api.send("POST", CM, ok))[0] == 201
    too_deep = {"metadata": {"name": "no"}, "x": nested(MAX_DEPTH)}
    assert (await api.send("POST", CM, too_deep))[0] == 400


def test_store_refuses_an_object_it_could_not_serve() -> None:
    """Defence in depth: whatever reaches the store unencodable is refused, nothing changes."""
    store = Store()
    good = {"metadata": {"name": "a", "namespace": "n"}}
    store.put(("g", "r"), good, old=None)
    rv = store.rv
    bad = {"metadata": {"name": "b", "namespace": "n"}, "spec": nested(300)}
    with pytest.raises(errors.APIError) as info:
        store.put(("g", "r"), bad, old=None)
    assert info.value.code == 400
    assert store.rv == rv
    assert [o["metadata"]["name"] for o in store.list(("g", "r"))] == ["a"]
    huge = {"metadata": {"name": "c", "namespace": "n"}, "x": "y" * (MAX_REQUEST_BODY_BYTES + 1)}
    with pytest.raises(errors.APIError) as info:
        store.put(("g", "r"), huge, old=None)
    assert info.value.code == 413
    assert store.get(("g", "r"), "n", "c") is None


ALIAS_BOMB = b"""
apiVersion: v1
kind: ConfigMap
metadata: {name: bomb}
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


async def test_yaml_alias_bomb_is_refused(api: Api) -> None:
    status, body = await api.send("POST", CM, ALIAS_BOMB, ctype="application/yaml")
    assert status == 400, body
    assert "excessive aliasing" in body["message"]
    await api.assert_servable(CM, {"kube-root-ca.crt"} & set())


async def test_yaml_with_modest_aliases_and_odd_scalars_is_json(api: Api) -> None:
    doc = b"""
metadata: {name: y, labels: &l {app: web}, annotations: {when: 2024-01-01, "1": x}}
data: {a: "1"}
"""
    status, body = await api.send("POST", CM, doc, ctype="application/yaml")
    assert status == 201, body
    assert body["metadata"]["annotations"]["when"] == "2024-01-01"
    bad_key = b"metadata: {name: z}\ndata: {1: x}\n"
    status, body = await api.send("POST", CM, bad_key, ctype="application/yaml")
    assert status in (201, 422), body  # the key becomes the string "1"
    deep = b"metadata: {name: q}\nx: " + b"[" * 300 + b"]" * 300 + b"\n"
    assert (await api.send("POST", CM, deep, ctype="application/yaml"))[0] == 400
    # 60 levels behind an alias, used 50 levels deep: 110 levels once expanded.
    aliased_deep = (
        b"metadata: {name: q}\na: &a " + b"[" * 60 + b"]" * 60 + b"\nb: " + b"[" * 50 + b"*a"
    )
    aliased_deep += b"]" * 50 + b"\n"
    assert (await api.send("POST", CM, aliased_deep, ctype="application/yaml"))[0] == 400


async def test_json_patch_copy_amplification_is_refused(api: Api) -> None:
    """The issue's 1.2 KB patch that doubled an object 20 times."""
    assert (await api.send("POST", CM, {"metadata": {"name": "c"}, "data": {"a": "x" * 64}}))[
        0
    ] == 201
    # Each copy doubles /data: 25 of them would build a 2 GiB object.
    ops = [{"op": "copy", "from": "/data", "path": f"/data/k{i}"} for i in range(25)]
    status, body = await api.send("PATCH", f"{CM}/c", ops, ctype="application/json-patch+json")
    assert status == 422, body
    assert "copy" in body["message"]
    too_many = [{"op": "test", "path": "/kind", "value": "ConfigMap"}] * 10001
    status, body = await api.send("PATCH", f"{CM}/c", too_many, ctype="application/json-patch+json")
    assert status == 413 and body["reason"] == "RequestEntityTooLarge"
    await api.assert_servable(CM, {"c"} | _root_ca(await api.send("GET", CM)))


def _root_ca(listed: tuple[int, JSON]) -> set[str]:
    return {o["metadata"]["name"] for o in listed[1]["items"] if o["metadata"]["name"] != "c"}


@pytest.mark.parametrize(
    "ctype",
    [
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
    ],
)
async def test_deep_patches_are_refused(api: Api, ctype: str) -> None:
    assert (await api.send("POST", NP, netpol("p")))[0] == 201
    deep: Any
    if ctype == "application/json-patch+json":
        deep = [{"op": "add", "path": "/metadata/labels", "value": nested(300)}]
    else:
        deep = {"metadata": {"annotations": nested(300)}}
    status, body = await api.send("PATCH", f"{NP}/p", deep, ctype=ctype)
    assert status == 400, body
    # Depth grown by the patch itself (a copy into a deep path) is refused too.
    grow: list[JSON] = [{"op": "add", "path": "/spec/x", "value": nested(MAX_DEPTH - 5)}]
    grow += [{"op": "copy", "from": "/spec/x", "path": "/spec/x/a/a/a/a"}]
    status, body = await api.send("PATCH", f"{NP}/p", grow, ctype="application/json-patch+json")
    assert status == 422, body
    await api.assert_servable(NP, {"p"})


async def test_patch_array_index_must_be_ascii_digits(api: Api) -> None:
    assert (await api.send("POST", NP, netpol("p")))[0] == 201
    ops = [{"op": "replace", "path": "/spec/ingress/²", "value": {}}]
    status, _ = await api.send("PATCH", f"{NP}/p", ops, ctype="application/json-patch+json")
    assert status == 422


# -- query parameters ----------------------------------------------------------------------

PODS = "/api/v1/namespaces/default/pods"


@pytest.mark.parametrize(
    "query",
    [
        "limit=²",
        "limit=٣",
        "limit=1_0",
        "limit=%201",
        "limit=99999999999999999999",
        "watch=1&timeoutSeconds=1e300",
        "watch=1&timeoutSeconds=²",
        "watch=1&resourceVersion=²",
    ],
)
async def test_malformed_integer_parameters_are_400(api: Api, query: str) -> None:
    status, body = await api.send("GET", f"{PODS}?{query}")
    assert status == 400, body
    assert body["reason"] == "BadRequest"


async def test_boolean_parameters_read_as_upstream(api: Api) -> None:
    """Only absent, ``0`` and ``false`` are false: ``?watch=yes`` is a watch."""
    async with api.session.get(f"{PODS}?watch=yes&timeoutSeconds=1") as resp:
        assert resp.status == 200
        assert resp.headers.get("Transfer-Encoding") == "chunked"
    status, body = await api.send("GET", f"{PODS}?watch=FALSE")
    assert status == 200 and body["kind"] == "PodList"


async def test_huge_but_valid_integers_are_served(api: Api) -> None:
    big = 2**63 - 1
    async with api.session.get(f"{PODS}?watch=1&timeoutSeconds={big}") as resp:
        assert resp.status == 200
    pod = {
        "metadata": {"name": "p"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
    }
    assert (await api.send("POST", PODS, pod))[0] == 201
    status, body = await api.send("DELETE", f"{PODS}/p?gracePeriodSeconds={big}")
    assert status == 200, body
    assert body["metadata"]["deletionGracePeriodSeconds"] == big
    for bad in ("99999999999999999999", "²", "1.5"):
        status, body = await api.send("DELETE", f"{PODS}/p?gracePeriodSeconds={bad}")
        assert status == 400, body
    status, body = await api.send("DELETE", f"{PODS}/p", {"gracePeriodSeconds": "x"})
    assert status == 400, body
    status, body = await api.send("DELETE", f"{PODS}/p", {"gracePeriodSeconds": 2**63})
    assert status == 400, body
    assert (await api.send("DELETE", f"{PODS}/p?gracePeriodSeconds=0"))[0] == 200


@pytest.mark.parametrize("query", ["dryRun=Some", "fieldValidation=Loose"])
async def test_unsupported_option_values_are_422(api: Api, query: str) -> None:
    status, body = await api.send("POST", f"{NP}?{query}", netpol("p"))
    assert status == 422 and body["reason"] == "Invalid", body
    await api.assert_servable(NP, set())
