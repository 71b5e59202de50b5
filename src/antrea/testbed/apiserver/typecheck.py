"""Structural typing of built-in kinds: every field's JSON type, as kube-apiserver decodes it.

kube-apiserver decodes a body into the kind's Go struct before anything else, so a field of
the wrong JSON type (``ingress`` as an object, ``policyTypes`` as a string, ``port`` as a
list) is refused with 400 ``cannot unmarshal ... into Go struct field`` and never stored,
and fields the struct does not declare are dropped (or refused with ``fieldValidation=Strict``).

The type tables come from the Kubernetes client library we already depend on
(``kubernetes_asyncio``): each generated model lists its fields' JSON names and types. Its
``object`` fields are either IntOrString (`_INT_OR_STRING`) or free JSON, and Quantities,
typed as strings there, also accept numbers (`_QUANTITY`), as the Go decoder does. JSON
``null`` is accepted everywhere (Go leaves the zero value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from kubernetes_asyncio.client import models

from antrea.testbed.apiserver.crschema import openapi_type

JSON = dict[str, Any]

_INT_OR_STRING = {
    ("V1NetworkPolicyPort", "port"),
    ("V1ServicePort", "target_port"),
    ("V1HTTPGetAction", "port"),
    ("V1TCPSocketAction", "port"),
    ("V1RollingUpdateDeployment", "max_surge"),
    ("V1RollingUpdateDeployment", "max_unavailable"),
    ("V1RollingUpdateDaemonSet", "max_surge"),
    ("V1RollingUpdateDaemonSet", "max_unavailable"),
}
_QUANTITY = {
    ("V1ResourceRequirements", "limits"),
    ("V1ResourceRequirements", "requests"),
    ("V1VolumeResourceRequirements", "limits"),
    ("V1VolumeResourceRequirements", "requests"),
    ("V1NodeStatus", "capacity"),
    ("V1NodeStatus", "allocatable"),
    ("V1PodSpec", "overhead"),
    ("V1PodStatus", "allocated_resources"),
    ("V1ContainerStatus", "allocated_resources"),
    ("V1EmptyDirVolumeSource", "size_limit"),
    ("V1ResourceFieldSelector", "divisor"),
}
# Kinds whose model name is not "<Version><Kind>".
_MODEL_NAMES = {("", "v1", "Event"): "CoreV1Event"}
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)


@dataclass(frozen=True, slots=True)
class _Type:
    """One field's type: a scalar name, a list/map of ``item``, or a ``model``."""

    kind: str  # string int float bool time any intorstr quantity list map model
    item: _Type | None = None
    model: str = ""

    def describe(self) -> str:
        if self.kind == "list":
            assert self.item is not None
            return f"[]{self.item.describe()}"
        if self.kind == "map":
            assert self.item is not None
            return f"map[string]{self.item.describe()}"
        if self.kind == "model":
            return _go_name(self.model)
        return {
            "int": "int64",
            "float": "float64",
            "time": "v1.Time",
            "intorstr": "intstr.IntOrString",
            "quantity": "resource.Quantity",
        }.get(self.kind, self.kind)


def _go_name(model: str) -> str:
    match = re.match(r"^(?:[A-Z][a-z]+)?(V\d+(?:alpha|beta)?\d*)(\w+)$", model)
    return f"{match.group(1).lower()}.{match.group(2)}" if match else model


def _parse(type_name: str, owner: str, attr: str) -> _Type:
    if type_name.startswith("list["):
        return _Type("list", _parse(type_name[5:-1], owner, attr))
    if type_name.startswith("dict("):
        return _Type("map", _parse(type_name[type_name.index(",") + 1 : -1].strip(), owner, attr))
    if (owner, attr) in _QUANTITY:
        return _Type("quantity")
    if type_name == "object":
        return _Type("intorstr" if (owner, attr) in _INT_OR_STRING else "any")
    scalar = {
        "str": "string",
        "int": "int",
        "float": "float",
        "bool": "bool",
        "datetime": "time",
        "date": "string",
    }
    if type_name in scalar:
        return _Type(scalar[type_name])
    if hasattr(models, type_name):
        return _Type("model", model=type_name)
    return _Type("any")


@cache
def _fields(model: str) -> dict[str, _Type]:
    """JSON field name -> type, for one generated model."""
    cls = getattr(models, model)
    names: dict[str, str] = cls.attribute_map
    return {names[attr]: _parse(t, model, attr) for attr, t in cls.openapi_types.items()}


def model_for(group: str, version: str, kind: str) -> str | None:
    """The client model describing ``kind`` (None for kinds without one, e.g. custom)."""
    name = _MODEL_NAMES.get((group, version, kind), version.capitalize() + kind)
    return name if hasattr(models, name) else None


def json_type(value: Any) -> str:
    """The JSON type name Go's encoding/json puts in an unmarshal error: `openapi_type`'s, but
    "bool" for "boolean" and "number" for any number."""
    t = openapi_type(value)
    return {"boolean": "bool", "integer": "number"}.get(t, t)


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A field whose JSON type is not its declared type."""

    path: str
    got: str
    expected: str
    model: str

    def message(self) -> str:
        return (
            f"json: cannot unmarshal {self.got} into Go struct field {_go_name(self.model)}."
            f"{self.path} of type {self.expected}"
        )


@dataclass(slots=True)
class Result:
    mismatches: list[Mismatch]
    unknown: list[str]


def _scalar_ok(t: _Type, value: Any) -> bool:
    k = t.kind
    if k == "any":
        return True
    if k == "string":
        return isinstance(value, str)
    if k == "bool":
        return isinstance(value, bool)
    if k == "int":
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if k == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if k == "time":
        return isinstance(value, str) and _RFC3339.match(value) is not None
    if k in ("intorstr", "quantity"):
        if isinstance(value, bool):
            return False
        if k == "intorstr":
            return isinstance(value, int | str)
        return isinstance(value, int | float | str)
    return False


# Where a value sits, built only when a mismatch or unknown field needs it: the body's path
# (a str), or (parent, field name, True) / (parent, list index or map key, False).
_Where = str | tuple[Any, Any, bool]
_SCALAR_KINDS = frozenset({"string", "int", "float", "bool", "time", "any", "intorstr", "quantity"})


def _path(where: _Where) -> str:
    pieces: list[tuple[Any, bool]] = []
    while isinstance(where, tuple):
        where, piece, field = where
        pieces.append((piece, field))
    path = where
    for piece, field in reversed(pieces):
        path = (f"{path}.{piece}" if path else piece) if field else f"{path}[{piece}]"
    return path


def check(model: str, obj: Any, *, prune: bool = False, path: str = "") -> Result:
    """Type mismatches and unknown fields of ``obj`` as a ``model`` (``path`` is where it
    sits in the body); with ``prune`` the unknown fields are removed from ``obj`` in place.

    Paths are rendered only for what is reported, and a model's scalar fields are checked
    where the model is, so a large valid body costs one visit per object or list.
    """
    result = Result([], [])
    stack: list[tuple[Any, _Type, _Where, str]] = [(obj, _Type("model", model=model), path, model)]

    def mismatch(where: _Where, value: Any, t: _Type, owner: str) -> None:
        result.mismatches.append(Mismatch(_path(where), json_type(value), t.describe(), owner))

    def visit(value: Any, t: _Type, where: _Where, owner: str) -> None:
        """One object of model ``t``: its scalars checked here, the rest pushed."""
        if not isinstance(value, dict):
            mismatch(where, value, t, owner)
            return
        fields = _fields(t.model)
        for key in list(value) if prune else value:
            sub = fields.get(key)
            if sub is None:
                result.unknown.append(_path((where, key, True)))
                if prune:
                    del value[key]
                continue
            item = value[key]
            if item is None or (sub.kind == "string" and isinstance(item, str)):
                continue
            if sub.kind in _SCALAR_KINDS:
                if not _scalar_ok(sub, item):
                    mismatch((where, key, True), item, sub, t.model)
                continue
            stack.append((item, sub, (where, key, True), t.model))

    while stack:
        value, t, where, owner = stack.pop()
        if value is None:
            continue
        kind = t.kind
        if kind == "model":
            visit(value, t, where, owner)
        elif kind == "list":
            if not isinstance(value, list):
                mismatch(where, value, t, owner)
                continue
            item_t = t.item
            assert item_t is not None
            if item_t.kind == "model":
                for i, item in enumerate(value):
                    if item is not None:
                        visit(item, item_t, (where, i, False), owner)
            elif item_t.kind in _SCALAR_KINDS:
                for i, item in enumerate(value):
                    if item is not None and not _scalar_ok(item_t, item):
                        mismatch((where, i, False), item, item_t, owner)
            else:
                stack.extend((v, item_t, (where, i, False), owner) for i, v in enumerate(value))
        elif kind == "map":
            if not isinstance(value, dict):
                mismatch(where, value, t, owner)
                continue
            item_t = t.item
            assert item_t is not None
            stack.extend((item, item_t, (where, key, False), owner) for key, item in value.items())
        elif not _scalar_ok(t, value):
            mismatch(where, value, t, owner)
    result.mismatches.sort(key=lambda m: m.path)
    result.unknown.sort()
    return result


FieldType = _Type


def model_fields(model: str) -> dict[str, _Type]:
    """JSON field name -> type of one generated model (the table `check` decodes against)."""
    return _fields(model)


def field_type(model: str, json_name: str) -> _Type:
    return _fields(model)[json_name]
