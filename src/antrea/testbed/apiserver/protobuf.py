"""Decoding of the Kubernetes protobuf envelope for the few kinds kubectl sends that way.

kubectl's typed clients (``kubectl create namespace|configmap|secret|serviceaccount|service``)
send ``application/vnd.kubernetes.protobuf`` bodies and do not retry with JSON, so the server
must read them. The envelope is ``k8s\\0`` followed by a ``runtime.Unknown`` message whose
``raw`` field holds the object. Each supported kind is described below by field number,
taken from the upstream ``generated.proto`` files; unknown fields are skipped. Responses are
always JSON (clients also accept it).
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from antrea.errors import AntreaError

JSON = dict[str, Any]
MAGIC = b"k8s\x00"


class ProtobufError(AntreaError, ValueError):
    pass


# A field spec is (json name, type, repeated). Types: "string", "int", "bool", "bytes",
# "time", "intorstr", "map" (string->string), "bmap" (string->bytes) or a nested schema dict.
Schema = dict[int, tuple[str, Any, bool]]

_TIME: Schema = {}
_OWNER_REF: Schema = {
    1: ("kind", "string", False),
    3: ("name", "string", False),
    4: ("uid", "string", False),
    5: ("apiVersion", "string", False),
    6: ("controller", "bool", False),
    7: ("blockOwnerDeletion", "bool", False),
}
OBJECT_META: Schema = {
    1: ("name", "string", False),
    2: ("generateName", "string", False),
    3: ("namespace", "string", False),
    5: ("uid", "string", False),
    6: ("resourceVersion", "string", False),
    7: ("generation", "int", False),
    8: ("creationTimestamp", "time", False),
    9: ("deletionTimestamp", "time", False),
    10: ("deletionGracePeriodSeconds", "int", False),
    11: ("labels", "map", False),
    12: ("annotations", "map", False),
    13: ("ownerReferences", _OWNER_REF, True),
    14: ("finalizers", "string", True),
}
_OBJECT_REF: Schema = {
    1: ("kind", "string", False),
    2: ("namespace", "string", False),
    3: ("name", "string", False),
    4: ("uid", "string", False),
    5: ("apiVersion", "string", False),
    6: ("resourceVersion", "string", False),
    7: ("fieldPath", "string", False),
}
_SERVICE_PORT: Schema = {
    1: ("name", "string", False),
    2: ("protocol", "string", False),
    3: ("port", "int", False),
    4: ("targetPort", "intorstr", False),
    5: ("nodePort", "int", False),
    6: ("appProtocol", "string", False),
}
_SERVICE_SPEC: Schema = {
    1: ("ports", _SERVICE_PORT, True),
    2: ("selector", "map", False),
    3: ("clusterIP", "string", False),
    4: ("type", "string", False),
    5: ("externalIPs", "string", True),
    7: ("sessionAffinity", "string", False),
    8: ("loadBalancerIP", "string", False),
    9: ("loadBalancerSourceRanges", "string", True),
    10: ("externalName", "string", False),
    11: ("externalTrafficPolicy", "string", False),
    18: ("clusterIPs", "string", True),
    19: ("ipFamilies", "string", True),
}
_RESOURCE_ATTRIBUTES: Schema = {
    1: ("namespace", "string", False),
    2: ("verb", "string", False),
    3: ("group", "string", False),
    4: ("version", "string", False),
    5: ("resource", "string", False),
    6: ("subresource", "string", False),
    7: ("name", "string", False),
}
KINDS: dict[tuple[str, str], Schema] = {
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): {
        1: ("metadata", OBJECT_META, False),
        2: (
            "spec",
            {
                1: ("resourceAttributes", _RESOURCE_ATTRIBUTES, False),
                2: (
                    "nonResourceAttributes",
                    {1: ("path", "string", False), 2: ("verb", "string", False)},
                    False,
                ),
            },
            False,
        ),
    },
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): {
        1: ("metadata", OBJECT_META, False),
        2: ("spec", {1: ("namespace", "string", False)}, False),
    },
    ("v1", "Namespace"): {
        1: ("metadata", OBJECT_META, False),
        2: ("spec", {1: ("finalizers", "string", True)}, False),
        3: ("status", {1: ("phase", "string", False)}, False),
    },
    ("v1", "ConfigMap"): {
        1: ("metadata", OBJECT_META, False),
        2: ("data", "map", False),
        3: ("binaryData", "bmap", False),
        4: ("immutable", "bool", False),
    },
    ("v1", "Secret"): {
        1: ("metadata", OBJECT_META, False),
        2: ("data", "bmap", False),
        3: ("type", "string", False),
        4: ("stringData", "map", False),
        5: ("immutable", "bool", False),
    },
    ("v1", "ServiceAccount"): {
        1: ("metadata", OBJECT_META, False),
        2: ("secrets", _OBJECT_REF, True),
        3: ("imagePullSecrets", {1: ("name", "string", False)}, True),
        4: ("automountServiceAccountToken", "bool", False),
    },
    ("v1", "Service"): {
        1: ("metadata", OBJECT_META, False),
        2: ("spec", _SERVICE_SPEC, False),
    },
}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) for each field; value is int or bytes."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ProtobufError("truncated field")
            value = buf[pos : pos + length]
            pos += length
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.append((num, wire, value))
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _map_entry(raw: bytes, *, binary: bool) -> tuple[str, str]:
    key = value = ""
    for num, _, v in _fields(raw):
        if num == 1:
            key = v.decode()
        elif num == 2:
            value = base64.b64encode(v).decode() if binary else v.decode()
    return key, value


def _scalar(kind: Any, raw: Any) -> Any:
    if kind == "string":
        return raw.decode()
    if kind == "int":
        return _signed(raw)
    if kind == "bool":
        return bool(raw)
    if kind == "bytes":
        return base64.b64encode(raw).decode()
    if kind == "time":
        seconds = 0
        for num, _, v in _fields(raw):
            if num == 1:
                seconds = _signed(v)
        return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == "intorstr":
        typ, ival, sval = 0, 0, ""
        for num, _, v in _fields(raw):
            if num == 1:
                typ = v
            elif num == 2:
                ival = _signed(v)
            elif num == 3:
                sval = v.decode()
        return sval if typ == 1 else ival
    if isinstance(kind, dict):
        return decode_message(raw, kind)
    raise ProtobufError(f"unknown field type {kind!r}")


def decode_message(buf: bytes, schema: Schema) -> JSON:
    out: JSON = {}
    for num, _, raw in _fields(buf):
        spec = schema.get(num)
        if spec is None:
            continue
        name, kind, repeated = spec
        if kind in ("map", "bmap"):
            k, v = _map_entry(raw, binary=kind == "bmap")
            out.setdefault(name, {})[k] = v
        elif repeated:
            out.setdefault(name, []).append(_scalar(kind, raw))
        else:
            value = _scalar(kind, raw)
            # Go writes zero values of non-pointer fields; JSON would omit them.
            if isinstance(value, dict) or value not in ("", 0, False):
                out[name] = value
    return out


def decode(body: bytes) -> JSON:
    """Decode an enveloped object into its JSON form (with apiVersion and kind)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing protobuf envelope")
    api_version = kind = ""
    raw = b""
    for num, _, value in _fields(body[len(MAGIC) :]):
        if num == 1:
            for n2, _, v2 in _fields(value):
                if n2 == 1:
                    api_version = v2.decode()
                elif n2 == 2:
                    kind = v2.decode()
        elif num == 2:
            raw = value
    schema = KINDS.get((api_version, kind))
    if schema is None:
        raise ProtobufError(f"protobuf bodies of {api_version} {kind} are not supported; send JSON")
    obj = decode_message(raw, schema)
    obj.setdefault("metadata", {})
    return {"apiVersion": api_version, "kind": kind, **obj}
