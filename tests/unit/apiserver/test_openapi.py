"""OpenAPI documents generated from the type tables: complete, self-consistent, encodable."""

from __future__ import annotations

from typing import Any

import pytest

from antrea.testbed.apiserver import openapi, openapi_pb, typecheck
from antrea.testbed.apiserver.resources import Registry

CRD = {
    "metadata": {"name": "widgets.example.org"},
    "spec": {
        "group": "example.org",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
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
                                "x-kubernetes-preserve-unknown-fields": True,
                                "properties": {"a": {"type": "string"}},
                            },
                            "port": {"x-kubernetes-int-or-string": True, "anyOf": []},
                        },
                    }
                },
            }
        ],
    },
}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return out + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.mark.parametrize("prefix", [openapi.V2_PREFIX, openapi.V3_PREFIX])
def test_every_served_kind_is_described_and_every_ref_resolves(prefix: str) -> None:
    registry = Registry()
    registry.register_crd(CRD)
    defs = openapi.definitions(registry, prefix)
    gvks = {
        (g["group"], g["version"], g["kind"])
        for d in defs.values()
        for g in d.get("x-kubernetes-group-version-kind", ())
    }
    for rt in openapi._all(registry):
        if rt.virtual:
            continue
        if rt.custom or typecheck.model_for(rt.group, rt.version, rt.kind):
            assert (rt.group, rt.version, rt.kind) in gvks, rt
    for ref in _refs(defs):
        assert ref.startswith(prefix) and ref[len(prefix) :] in defs, ref


def test_schema_fields_are_the_decoder_fields() -> None:
    """What kubectl validates against is exactly what the server decodes into."""
    defs = openapi.definitions(Registry())
    for model in openapi._closure(["V1NetworkPolicy", "V1Pod"]):
        props = defs[openapi.definition_name(model)]["properties"]
        assert set(props) == set(typecheck.model_fields(model))
    spec = defs[openapi.definition_name("V1NetworkPolicySpec")]["properties"]
    assert spec["ingress"]["items"] == {
        "$ref": "#/definitions/io.k8s.api.networking.v1.NetworkPolicyIngressRule"
    } or spec["ingress"]["items"]["$ref"].endswith("NetworkPolicyIngressRule")
    assert "ingress rules" in spec["ingress"]["description"]


def test_crd_schema_is_made_v2_safe() -> None:
    registry = Registry()
    registry.register_crd(CRD)
    widget = openapi.definitions(registry)["org.example.v1.Widget"]
    assert "properties" not in widget["properties"]["spec"]  # keeps unknown fields: any value
    assert (
        "type" not in widget["properties"]["port"] and "anyOf" not in widget["properties"]["port"]
    )


def _decode(buf: bytes) -> list[tuple[int, int, Any]]:
    out: list[tuple[int, int, Any]] = []
    i = 0
    while i < len(buf):
        key, shift = 0, 0
        while True:
            b = buf[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        field, wire = key >> 3, key & 7
        if wire == 2:
            n, shift = 0, 0
            while True:
                b = buf[i]
                i += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            out.append((field, wire, buf[i : i + n]))
            i += n
        elif wire == 0:
            while buf[i] & 0x80:
                i += 1
            i += 1
            out.append((field, wire, None))
        else:
            assert wire == 1
            i += 8
            out.append((field, wire, None))
    return out


def test_v2_protobuf_document_names_every_definition() -> None:
    doc = openapi.swagger_v2(Registry(), "v1.32.0")
    top = _decode(openapi_pb.encode_document(doc))
    assert top[0] == (1, 2, b"2.0")
    definitions = next(v for f, _, v in top if f == 9)
    names = [_decode(d)[0][2] for _, _, d in _decode(definitions)]
    assert [n.decode() for n in names] == list(doc["definitions"])
    np = _decode(
        openapi_pb.encode_schema(doc["definitions"][openapi.definition_name("V1NetworkPolicy")])
    )
    fields = {f for f, _, _ in np}
    assert {22, 25, 31} <= fields  # type, properties, x-kubernetes-group-version-kind
