"""The OpenAPI v2 document in the protobuf form kubectl asks for.

client-go fetches ``/openapi/v2`` only as
``application/com.github.proto-openapi.spec.v2@v1.0+protobuf`` (gnostic's
``openapi.v2.Document``), so the JSON-schema dicts from `openapi` are encoded here with the
message and field numbers of gnostic's ``OpenAPIv2.proto``. Only what kubectl reads
is encoded: the document header and ``definitions`` (``$ref``, type, format, description,
required, enum, items, properties, additionalProperties, bounds, ``x-`` vendor extensions,
which gnostic carries as YAML text).

Custom resource schemas are made v2-safe as kube-apiserver does for its v2 document: nodes
that keep unknown fields or are int-or-string lose their type (any value is valid), and v3-only
keywords (``oneOf``, ``anyOf``, ``not``, ``nullable``) are dropped.
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

JSON = dict[str, Any]


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _str(field: int, value: str) -> bytes:
    return _bytes(field, value.encode()) if value else b""


def _bool(field: int, value: bool) -> bytes:
    return _varint(field << 3) + b"\x01" if value else b""


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _double(field: int, value: float) -> bytes:
    return _varint(field << 3 | 1) + struct.pack("<d", float(value))


def _any(value: Any) -> bytes:
    # gnostic Any: {google.protobuf.Any value = 1; string yaml = 2}; JSON is valid YAML.
    return _str(2, orjson.dumps(value).decode())


def _named_any(name: str, value: Any) -> bytes:
    return _str(1, name) + _bytes(2, _any(value))


def v2_safe(schema: JSON) -> JSON:
    """A v3 (CRD) schema as kube-apiserver publishes it in v2."""
    out: JSON = {}
    arbitrary = bool(
        schema.get("x-kubernetes-preserve-unknown-fields")
        or schema.get("x-kubernetes-int-or-string")
    )
    for key, value in schema.items():
        if key in ("oneOf", "anyOf", "not", "nullable"):
            continue
        if arbitrary and key in ("type", "properties", "additionalProperties", "required"):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {k: v2_safe(v) for k, v in value.items() if isinstance(v, dict)}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = v2_safe(value)
        elif key == "allOf" and isinstance(value, list):
            out[key] = [v2_safe(v) for v in value if isinstance(v, dict)]
        else:
            out[key] = value
    return out


def encode_schema(schema: JSON) -> bytes:
    parts: list[bytes] = []
    if "$ref" in schema:
        parts.append(_str(1, schema["$ref"]))
    parts.append(_str(2, str(schema.get("format", ""))))
    parts.append(_str(3, str(schema.get("title", ""))))
    parts.append(_str(4, str(schema.get("description", ""))))
    if "default" in schema:
        parts.append(_bytes(5, _any(schema["default"])))
    for key, field in (("maximum", 7), ("minimum", 9)):
        if isinstance(schema.get(key), int | float) and not isinstance(schema.get(key), bool):
            parts.append(_double(field, schema[key]))
    for key, field in (("maxLength", 11), ("minLength", 12), ("maxItems", 14), ("minItems", 15)):
        if isinstance(schema.get(key), int) and not isinstance(schema.get(key), bool):
            parts.append(_int(field, schema[key]))
    parts.append(_str(13, str(schema.get("pattern", ""))))
    for name in schema.get("required") or ():
        parts.append(_str(19, str(name)))
    for value in schema.get("enum") or ():
        parts.append(_bytes(20, _any(value)))
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        parts.append(_bytes(21, _bytes(1, encode_schema(extra))))
    elif isinstance(extra, bool):
        parts.append(_bytes(21, _varint(2 << 3) + (b"\x01" if extra else b"\x00")))
    kind = schema.get("type")
    if isinstance(kind, str) and kind:
        parts.append(_bytes(22, _str(1, kind)))
    items = schema.get("items")
    if isinstance(items, dict):
        parts.append(_bytes(23, _bytes(1, encode_schema(items))))
    for sub in schema.get("allOf") or ():
        parts.append(_bytes(24, encode_schema(sub)))
    props = schema.get("properties")
    if isinstance(props, dict):
        named = b"".join(
            _bytes(1, _str(1, name) + _bytes(2, encode_schema(sub))) for name, sub in props.items()
        )
        parts.append(_bytes(25, named))
    for key, value in schema.items():
        if key.startswith("x-"):
            parts.append(_bytes(31, _named_any(key, value)))
    return b"".join(parts)


def encode_document(doc: JSON) -> bytes:
    """gnostic ``openapi.v2.Document`` (swagger, info, definitions)."""
    info = doc.get("info", {})
    definitions = b"".join(
        _bytes(1, _str(1, name) + _bytes(2, encode_schema(schema)))
        for name, schema in doc.get("definitions", {}).items()
    )
    return (
        _str(1, doc.get("swagger", "2.0"))
        + _bytes(2, _str(1, info.get("title", "")) + _str(2, info.get("version", "")))
        + _bytes(9, definitions)
    )
