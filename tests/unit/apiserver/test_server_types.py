"""Structural typing: every field of every served kind has a JSON type, as in kube-apiserver.

The issue's cases (NetworkPolicy ``from``/``ports``/``ingress`` as an object or string,
``policyTypes`` a string, ``to`` an integer, ``except`` a string) are 400 on create and update
and 422 on patch, name the field, and store nothing. A property test walks the type tables of
every served built-in kind and puts a wrongly typed value at a random field.
"""

from __future__ import annotations

import copy
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antrea.testbed.apiserver import decoding, errors, typecheck
from antrea.testbed.apiserver.resources import BUILTINS, ResourceType
from antrea.testbed.apiserver.server import APIServer

JSON = dict[str, Any]
NP = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies"

VALID: JSON = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "np"},
    "spec": {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {
                "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                "ports": [{"protocol": "TCP", "port": 80}],
            }
        ],
        "egress": [{"to": [{"podSelector": {}}], "ports": [{"port": "http"}]}],
    },
}

# (field path to replace, bad value) -- the 8 accepted inputs and a few more.
BAD: list[tuple[tuple[Any, ...], Any]] = [
    (("spec", "ingress", 0, "from"), {"podSelector": {}}),
    (("spec", "ingress", 0, "from"), "everyone"),
    (("spec", "ingress", 0, "ports"), {"port": 80}),
    (("spec", "ingress", 0, "ports"), "80"),
    (("spec", "ingress"), {"from": []}),
    (("spec", "ingress"), "all"),
    (("spec", "policyTypes"), "Ingress"),
    (("spec", "egress", 0, "to"), 5),
    (("spec", "ingress", 0, "from", 0, "ipBlock", "except"), "10.1.0.0/16"),
    (("spec", "ingress", 0, "ports", 0, "port"), [80]),
    (("spec", "ingress", 0, "ports", 0, "endPort"), "90"),
    (("spec", "ingress", 0, "ports", 0, "endPort"), 90.5),
    (("spec", "podSelector", "matchLabels"), {"a": 1}),
    (("spec", "podSelector"), []),
    (("metadata", "annotations"), "x"),
]


def _set(obj: JSON, path: tuple[Any, ...], value: Any) -> JSON:
    out = copy.deepcopy(obj)
    parent: Any = out
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return out


def _dotted(path: tuple[Any, ...]) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


class Api:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def send(
        self, method: str, path: str, body: Any, ctype: str = "application/json"
    ) -> tuple[int, JSON]:
        async with self.session.request(
            method, path, data=orjson.dumps(body), headers={"Content-Type": ctype}
        ) as resp:
            return resp.status, orjson.loads(await resp.read())


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    server = APIServer(port=0)
    await server.start()
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    session = aiohttp.ClientSession(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.admin_token}"},
        connector=aiohttp.TCPConnector(ssl=ctx),
    )
    try:
        yield Api(session)
    finally:
        await session.close()
        await server.stop()


@pytest.mark.parametrize(("path", "value"), BAD, ids=[f"{_dotted(p)}={v!r}" for p, v in BAD])
async def test_wrongly_typed_networkpolicy_fields_are_refused(
    api: Api, path: tuple[Any, ...], value: Any
) -> None:
    field = _dotted(path)
    status, body = await api.send("POST", NP, _set(VALID, path, value))
    assert status == 400, body
    assert body["reason"] == "BadRequest"
    assert field in body["message"]
    assert any(c["field"].startswith(field) for c in body["details"]["causes"])
    assert (await api.send("GET", NP, None))[1]["items"] == []

    status, stored = await api.send("POST", NP, VALID)
    assert status == 201
    update = _set(stored, path, value)
    status, body = await api.send("PUT", f"{NP}/np", update)
    assert status == 400 and field in body["message"], body
    # A merge patch setting the field: the patched object is refused (422, as upstream).
    patch: Any = value
    for step in reversed(path):
        if isinstance(step, int):
            break
        patch = {step: patch}
    if not any(isinstance(step, int) for step in path):
        status, body = await api.send(
            "PATCH", f"{NP}/np", patch, ctype="application/merge-patch+json"
        )
        assert status == 422 and body["reason"] == "Invalid", body
        assert field in body["message"]
    ops = [{"op": "add", "path": "/" + "/".join(map(str, path)), "value": value}]
    status, body = await api.send("PATCH", f"{NP}/np", ops, ctype="application/json-patch+json")
    assert status == 422 and field in body["message"], body
    status, now = await api.send("GET", f"{NP}/np", None)
    assert now == stored


async def test_unknown_fields_are_dropped_not_stored(api: Api) -> None:
    """As kube-apiserver: unknown fields of built-in kinds are pruned (with a warning)."""
    body = _set(VALID, ("spec", "ingress", 0, "bogus"), {"deep": [1, 2]})
    body["spec"]["x"] = 1
    status, stored = await api.send("POST", NP, body)
    assert status == 201
    assert "bogus" not in stored["spec"]["ingress"][0] and "x" not in stored["spec"]


# -- every field of every served kind ------------------------------------------------------

SERVED = [rt for rt in BUILTINS if not rt.virtual]
_WRONG: dict[str, list[Any]] = {
    "string": [1, True, [], {}],
    "int": ["1", 1.5, True, [], {}],
    "float": ["1", True, [], {}],
    "bool": ["true", 0, [], {}],
    "time": [0, "yesterday", [], {}],
    "intorstr": [1.5, True, [], {}],
    "quantity": [True, [], {}],
    "list": ["x", 1, {}],
    "map": ["x", 1, []],
    "model": ["x", 1, True, []],
}


@st.composite
def wrongly_typed(draw: st.DrawFn) -> tuple[ResourceType, JSON, str]:
    """A body for a served kind with one field, reached through the type tables, mistyped."""
    rt = draw(st.sampled_from(SERVED))
    model = typecheck.model_for(rt.group, rt.version, rt.kind)
    assert model is not None, rt.kind
    root: JSON = {"metadata": {"name": "x"}}
    parent: Any = root
    t = typecheck._Type("model", model=model)
    path = ""
    while True:
        if t.kind == "model":
            fields = typecheck._fields(t.model)
            key = draw(st.sampled_from(sorted(fields)))
            sub = fields[key]
            if sub.kind == "any" or (key in ("apiVersion", "kind") and parent is root):
                continue
            path = f"{path}.{key}" if path else key
            if sub.kind in ("model", "list", "map") and draw(st.booleans()):
                child: Any = {} if sub.kind != "list" else []
                parent[key] = child
                parent, t = child, sub
                continue
            parent[key] = draw(st.sampled_from(_WRONG[sub.kind]))
            return rt, root, path
        item = t.item
        assert item is not None
        if t.kind == "list":
            path += "[0]"
            if item.kind in ("model", "list", "map") and draw(st.booleans()):
                child = {} if item.kind != "list" else []
                parent.append(child)
                parent, t = child, item
                continue
            if item.kind == "any":
                parent.append(None)
                return rt, root, ""
            parent.append(draw(st.sampled_from(_WRONG[item.kind])))
            return rt, root, path
        # map
        path += "[k]"
        if item.kind in ("model", "list", "map") and draw(st.booleans()):
            child = {} if item.kind != "list" else []
            parent["k"] = child
            parent, t = child, item
            continue
        if item.kind == "any":
            return rt, root, ""
        parent["k"] = draw(st.sampled_from(_WRONG[item.kind]))
        return rt, root, path


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
)
@given(wrongly_typed())
def test_every_field_of_every_served_kind_is_type_checked(
    case: tuple[ResourceType, JSON, str],
) -> None:
    rt, body, path = case
    if not path:
        return
    with pytest.raises(errors.APIError) as info:
        decoding.check_body(rt, body, "Warn")
    assert info.value.code == 400
    assert path in {c["field"] for c in info.value.body["details"]["causes"]}, body
    with pytest.raises(errors.APIError) as info:
        decoding.check_body(rt, body, "Warn", patch=True)
    assert info.value.code == 422


def test_every_served_kind_has_a_type_table() -> None:
    for rt in SERVED:
        assert typecheck.model_for(rt.group, rt.version, rt.kind) is not None, rt.kind


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {"token": 5}}),
        ("/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {"audiences": "x"}}),
        (
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {"spec": {"resourceAttributes": {"verb": ["get"]}}},
        ),
        ("/apis/authorization.k8s.io/v1/subjectaccessreviews", {"spec": {"groups": "x"}}),
        ("/api/v1/namespaces/default/pods/p/binding", {"target": {"name": 5}}),
        ("/api/v1/namespaces/default/pods/p/binding", {"target": "n1"}),
    ],
)
async def test_review_bodies_are_type_checked(api: Api, path: str, body: JSON) -> None:
    status, answer = await api.send("POST", path, body)
    assert status == 400 and answer["reason"] == "BadRequest", answer
