"""Hypothesis throws mutated bodies, patches and query strings at every verb.

Whatever arrives, the server answers (no hang) with a Status or an object, never a 500, and
afterwards every resource still lists, watches and reads back from the data directory.
"""

from __future__ import annotations

import asyncio
import copy
import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antrea.testbed.apiserver.persistence import Persistence
from antrea.testbed.apiserver.server import APIServer

JSON = dict[str, Any]

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.fuzz.example.com"},
    "spec": {
        "group": "fuzz.example.com",
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "size": {"type": "integer", "minimum": 0},
                                    "tags": {"type": "array", "items": {"type": "string"}},
                                    "free": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}

SEEDS: dict[str, tuple[str, JSON]] = {
    "netpol": (
        "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies",
        {
            "metadata": {"name": "np", "labels": {"a": "b"}},
            "spec": {
                "podSelector": {"matchLabels": {"a": "b"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                        "ports": [{"protocol": "TCP", "port": 80, "endPort": 90}, {}],
                    }
                ],
                "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": "dns"}]}],
            },
        },
    ),
    "pod": (
        "/api/v1/namespaces/default/pods",
        {
            "metadata": {"name": "p"},
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}],
            },
        },
    ),
    "configmap": ("/api/v1/namespaces/default/configmaps", {"metadata": {"name": "cm"}}),
    "service": (
        "/api/v1/namespaces/default/services",
        {"metadata": {"name": "s"}, "spec": {"selector": {"a": "b"}, "ports": [{"port": 80}]}},
    ),
    "crd": ("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD),
    "lease": (
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
        {"metadata": {"name": "l"}, "spec": {"holderIdentity": "x", "leaseDurationSeconds": 15}},
    ),
    "clusterrole": (
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        {
            "metadata": {"name": "fuzz-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
    ),
    "gadget": (
        "/apis/fuzz.example.com/v1/namespaces/default/gadgets",
        {
            "apiVersion": "fuzz.example.com/v1",
            "kind": "Gadget",
            "metadata": {"name": "g"},
            "spec": {"size": 1, "tags": ["x"], "free": {"any": [1, {"b": None}]}},
        },
    ),
}

CTYPES = [
    "application/json",
    "application/yaml",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "application/apply-patch+yaml",
    "application/vnd.kubernetes.protobuf",
    "text/plain",
    "",
]
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
PARAMS = [
    "limit",
    "continue",
    "watch",
    "timeoutSeconds",
    "resourceVersion",
    "allowWatchBookmarks",
    "labelSelector",
    "fieldSelector",
    "gracePeriodSeconds",
    "dryRun",
    "fieldValidation",
    "fieldManager",
    "includeObject",
    "propagationPolicy",
    "sendInitialEvents",
    "resourceVersionMatch",
    "force",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _paths(value: Any) -> list[tuple[Any, ...]]:
    """Every path into ``value`` (iterative: values may be nested hundreds deep)."""
    out: list[tuple[Any, ...]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), value)]
    while stack:
        prefix, item = stack.pop()
        out.append(prefix)
        if isinstance(item, dict):
            stack.extend(((*prefix, k), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend(((*prefix, i), v) for i, v in enumerate(item))
    return out


def _depth(value: Any) -> int:
    return max(len(p) for p in _paths(value))


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def mutated(draw: st.DrawFn, seed: JSON) -> Any:
    obj = copy.deepcopy(seed)
    for _ in range(draw(st.integers(0, 3))):
        paths = [p for p in _paths(obj) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = obj
        for step in path[:-1]:
            parent = parent[step]
        shape = draw(st.sampled_from(["json", "json", "json", "deep", "long"]))
        if shape == "deep":
            replacement = _nested(draw(st.sampled_from([50, 99, 101, 300, 600])))
        elif shape == "long":
            replacement = "x" * draw(st.sampled_from([10, 70000]))
        else:
            replacement = draw(json_values)
        parent[path[-1]] = replacement
    return obj


@st.composite
def bodies(draw: st.DrawFn, seed: JSON) -> bytes:
    kind = draw(st.sampled_from(["object", "json-patch", "raw"]))
    if kind == "raw":
        return draw(st.binary(max_size=200))
    if kind == "json-patch":
        op = {
            "op": draw(st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "x"])),
            "path": draw(
                st.sampled_from(
                    [
                        "/spec",
                        "/metadata/labels/a",
                        "/spec/ingress/0",
                        "/spec/x/²",
                        "",
                        "/metadata/name",
                    ]
                )
                | st.text(max_size=10)
            ),
            "from": draw(st.sampled_from(["/spec", "/metadata", "/", "/nope"])),
            "value": draw(json_values),
        }
        value: Any = [op] * draw(st.integers(1, 30))
    else:
        value = draw(mutated(seed))
    if draw(st.booleans()):
        # YAML is a superset of JSON: deep values go as JSON text (the dumper recurses).
        return yaml.safe_dump(value).encode() if _depth(value) < 60 else json.dumps(value).encode()
    return json.dumps(value).encode()


queries = st.dictionaries(
    st.sampled_from(PARAMS) | st.text(max_size=5),
    st.sampled_from(
        [
            "",
            "0",
            "1",
            "true",
            "²",
            "-1",
            "1e300",
            "99999999999999999999",
            "9223372036854775807",
            "All",
            "Strict",
            "a=b",
            "x in (",
            "abc",
        ]
    )
    | st.text(max_size=10),
    max_size=4,
)


class Server:
    """An API server on its own event loop thread, driven by a blocking client."""

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.api = APIServer(port=0, data_dir=data_dir)
        self.call(self.api.start())
        self.ctx = ssl.create_default_context(cadata=self.api.ca_pem.decode())
        self.headers = {"Authorization": f"Bearer {self.api.admin_token}"}

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def request(
        self, method: str, path: str, body: bytes | None = None, ctype: str = "", accept: str = ""
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.api.port, context=self.ctx, timeout=20)
        try:
            headers = dict(self.headers)
            if ctype:
                headers["Content-Type"] = ctype
            if accept:
                headers["Accept"] = accept
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            if resp.getheader("Transfer-Encoding") == "chunked" and method == "GET":
                return resp.status, b""  # a watch stream: its status line is the answer
            return resp.status, resp.read()
        finally:
            conn.close()

    def close(self) -> None:
        self.call(self.api.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("fuzz") / "data")
    for base, seed in SEEDS.values():
        status, body = srv.request("POST", base, orjson.dumps(seed), "application/json")
        assert status == 201, body
    try:
        yield srv
    finally:
        srv.close()


def _check(status: int, payload: bytes) -> None:
    assert status < 500, payload[:500]
    if status >= 400 and payload:
        assert orjson.loads(payload)["kind"] == "Status", payload[:200]


FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.large_base_example,
        HealthCheck.data_too_large,
    ],
)


@FUZZ
@given(data=st.data())
def test_writes_never_fail_with_500(server: Server, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(SEEDS)))
    base, seed = SEEDS[name]
    verb = data.draw(st.sampled_from(["POST", "PUT", "PATCH", "DELETE"]))
    target = (
        base
        if verb == "POST" or (verb == "DELETE" and data.draw(st.booleans()))
        else (f"{base}/{seed['metadata']['name']}")
    )
    query = data.draw(queries)
    if verb == "DELETE" and target == base:
        # Keep the seeds: a collection delete only ever matches nothing.
        query["labelSelector"] = "fuzz-never=1"
    qs = "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
    body = data.draw(bodies(seed))
    ctype = data.draw(st.sampled_from(CTYPES))
    status, payload = server.request(verb, f"{target}?{qs}", body, ctype)
    _check(status, payload)
    if verb == "DELETE" and status < 300 and target != base:
        # Put the seed back so later examples have something to patch.
        server.request(verb, f"{target}?gracePeriodSeconds=0")
        server.request("POST", base, orjson.dumps(seed), "application/json")


@FUZZ
@given(data=st.data())
def test_reads_never_fail_with_500(server: Server, data: st.DataObject) -> None:
    base, seed = SEEDS[data.draw(st.sampled_from(sorted(SEEDS)))]
    target = data.draw(
        st.sampled_from([base, f"{base}/{seed['metadata']['name']}", base + "/nope"])
    )
    query = data.draw(queries)
    query.setdefault("timeoutSeconds", "1")
    qs = "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
    accept = data.draw(st.sampled_from(["", TABLE]))
    status, payload = server.request("GET", f"{target}?{qs}", accept=accept)
    _check(status, payload)


def test_store_is_servable_and_readable_afterwards(server: Server, tmp_path: Path) -> None:
    """Runs after the fuzzing (file order): every resource lists, watches and persists."""
    for kind, (base, _seed) in SEEDS.items():
        status, payload = server.request("GET", base)
        if kind == "gadget" and status == 404:
            continue  # the fuzzed CRD may no longer serve v1
        assert status == 200, payload[:300]
        for item in orjson.loads(payload)["items"]:
            name = quote(item["metadata"]["name"], safe="")
            status, got = server.request("GET", f"{base}/{name}")
            assert status == 200, (name, got[:300])
        status, got = server.request("GET", f"{base}?watch=1&resourceVersion=0&timeoutSeconds=1")
        assert status == 200, got[:300]
    data_dir = server.api.data_dir
    assert data_dir is not None
    rv, objects = Persistence(data_dir).load()
    assert rv > 0 and objects
    for _group, _resource, obj in objects:
        orjson.dumps(obj)
