"""OpenAPI schemas of every served kind, generated from the type tables ``typecheck`` uses.

One source of truth: built-in kinds are described by the Kubernetes client library's generated
models (the same field/type tables that structural validation decodes against), custom
resources by their CRD version's ``openAPIV3Schema``. From these we build JSON-schema
definitions named like kube-apiserver's (``io.k8s.api.<pkg>.<version>.<Kind>``), each served
kind tagged with ``x-kubernetes-group-version-kind``, which is what ``kubectl explain`` and
kubectl's client-side validation look up.

`definitions` answers v2 style (``#/definitions/...`` references; `openapi_pb` encodes it as
the protobuf document kubectl asks for); `components` answers v3 style
(``#/components/schemas/...``) for one group/version.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Any

from kubernetes_asyncio.client import models

from antrea.testbed.apiserver import typecheck
from antrea.testbed.apiserver.openapi_pb import v2_safe
from antrea.testbed.apiserver.resources import Registry, ResourceType

JSON = dict[str, Any]

V2_PREFIX = "#/definitions/"
V3_PREFIX = "#/components/schemas/"

_MODEL_RE = re.compile(r"^([A-Z][a-z]+)?(V\d+(?:alpha|beta)?\d*)(\w+)$")
# Model families that live in apimachinery upstream (explain prints the last segment only).
_META = {
    "ObjectMeta",
    "ListMeta",
    "LabelSelector",
    "LabelSelectorRequirement",
    "OwnerReference",
    "ManagedFieldsEntry",
    "Status",
    "StatusDetails",
    "StatusCause",
    "Condition",
    "DeleteOptions",
    "Preconditions",
}
# Scalars kube-apiserver's v3 documents give a named schema (explain prints the name).
_NAMED_SCALARS: dict[str, tuple[str, JSON]] = {
    "intorstr": (
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        {"type": "string", "format": "int-or-string"},
    ),
    "quantity": ("io.k8s.apimachinery.pkg.api.resource.Quantity", {"type": "string"}),
    "time": (
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
        {"type": "string", "format": "date-time"},
    ),
}
_NOQA = re.compile(r"\s*# noqa: E501")


def definition_name(model: str) -> str:
    """``V1NetworkPolicySpec`` -> ``io.k8s.api.v1.NetworkPolicySpec`` (the client library
    prefixes a model with its group only where names collide, e.g. ``CoreV1Event``)."""
    match = _MODEL_RE.match(model)
    if not match:
        return f"io.k8s.api.{model}"
    prefix, version, kind = match.groups()
    if kind in _META:
        return f"io.k8s.apimachinery.pkg.apis.meta.{version.lower()}.{kind}"
    pkg = f"{prefix.lower()}." if prefix else ""
    return f"io.k8s.api.{pkg}{version.lower()}.{kind}"


def _description(model: str, attr: str) -> str:
    doc = getattr(getattr(models, model), attr, None).__doc__ or ""
    paragraphs = [_NOQA.sub("", p).strip() for p in doc.split("\n\n")]
    # "Gets the x of this M." / description / ":return: ..."
    middle = [p for p in paragraphs[1:] if p and not p.startswith(":return:")]
    return " ".join(" ".join(p.split()) for p in middle)


def _field_schema(t: typecheck.FieldType, prefix: str) -> JSON:
    k = t.kind
    if k == "model":
        return {"$ref": prefix + definition_name(t.model)}
    if k in ("list", "map"):
        assert t.item is not None
        sub = _field_schema(t.item, prefix)
        if k == "list":
            return {"type": "array", "items": sub}
        return {"type": "object", "additionalProperties": sub}
    if k in _NAMED_SCALARS and prefix == V3_PREFIX:
        return {"$ref": prefix + _NAMED_SCALARS[k][0]}
    return {
        "string": {"type": "string"},
        "int": {"type": "integer", "format": "int64"},
        "float": {"type": "number", "format": "double"},
        "bool": {"type": "boolean"},
        "time": {"type": "string", "format": "date-time"},
        "intorstr": {"type": "string", "format": "int-or-string"},
        "quantity": {"type": "string", "format": "quantity"},
    }.get(k, {})


def _model_schema(model: str, prefix: str) -> JSON:
    cls = getattr(models, model)
    names: dict[str, str] = cls.attribute_map
    props: JSON = {}
    for attr, json_name in names.items():
        schema = dict(_field_schema(typecheck.field_type(model, json_name), prefix))
        desc = _description(model, attr)
        if desc:
            if "$ref" in schema and prefix == V3_PREFIX:
                schema = {"allOf": [schema], "description": desc}
            else:
                schema["description"] = desc
        props[json_name] = schema
    return {"type": "object", "properties": props}


def _closure(roots: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    stack = list(roots)
    while stack:
        model = stack.pop()
        if model in seen or not hasattr(models, model):
            continue
        seen[model] = None
        for field in typecheck.model_fields(model).values():
            t = field
            while t.item is not None:
                t = t.item
            if t.kind == "model":
                stack.append(t.model)
    return list(seen)


def _gvk(rt: ResourceType, kind: str) -> JSON:
    return {"group": rt.group, "version": rt.version, "kind": kind}


@cache
def _builtin_definitions(prefix: str, kinds: tuple[tuple[str, str, str], ...]) -> JSON:
    roots: dict[str, list[JSON]] = {}
    for group, version, kind in kinds:
        for k in (kind, kind + "List"):
            model = typecheck.model_for(group, version, k)
            if model is not None:
                gvk = {"group": group, "version": version, "kind": k}
                roots.setdefault(model, []).append(gvk)
    out: JSON = {}
    for model in _closure(sorted(roots)):
        schema = _model_schema(model, prefix)
        if model in roots:
            schema["x-kubernetes-group-version-kind"] = roots[model]
        out[definition_name(model)] = schema
    if prefix == V3_PREFIX:
        out.update(dict(_NAMED_SCALARS.values()))
    return out


def _crd_definition(rt: ResourceType, prefix: str) -> JSON:
    schema: JSON = copy.deepcopy(rt.schema) if rt.schema else {"type": "object"}
    if prefix == V2_PREFIX:
        schema = v2_safe(schema)
    schema.setdefault("type", "object")
    props = schema.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string", "description": "APIVersion of the object."})
    props.setdefault("kind", {"type": "string", "description": "Kind of the object."})
    props["metadata"] = {"$ref": prefix + definition_name("V1ObjectMeta")}
    schema["x-kubernetes-group-version-kind"] = [_gvk(rt, rt.kind)]
    return schema


def _crd_list_definition(rt: ResourceType, item_name: str, prefix: str) -> JSON:
    return {
        "type": "object",
        "description": f"{rt.kind}List is a list of {rt.kind}",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": prefix + item_name}},
            "metadata": {"$ref": prefix + definition_name("V1ListMeta")},
        },
        "x-kubernetes-group-version-kind": [_gvk(rt, rt.kind + "List")],
    }


def _crd_name(rt: ResourceType) -> str:
    parts = rt.group.split(".")
    return ".".join(reversed(parts)) + f".{rt.version}.{rt.kind}"


def definitions(
    registry: Registry, prefix: str = V2_PREFIX, types: list[ResourceType] | None = None
) -> JSON:
    """Schemas of ``types`` (default: every served type) and everything they reference."""
    served = [rt for rt in (types if types is not None else _all(registry)) if not rt.virtual]
    builtin = tuple(sorted({(rt.group, rt.version, rt.kind) for rt in served if not rt.custom}))
    out = dict(_builtin_definitions(prefix, builtin))
    for rt in served:
        if rt.custom:
            name = _crd_name(rt)
            out[name] = _crd_definition(rt, prefix)
            out[name + "List"] = _crd_list_definition(rt, name, prefix)
    if any(rt.custom for rt in served):
        for model in _closure(["V1ObjectMeta", "V1ListMeta"]):
            out.setdefault(definition_name(model), _model_schema(model, prefix))
    return out


def _all(registry: Registry) -> list[ResourceType]:
    gvs = [("", "v1")] + [(g, v) for g, vs in registry.groups().items() if g for v in vs]
    return [rt for g, v in gvs for rt in registry.in_group_version(g, v)]


def components(registry: Registry, group: str, version: str) -> JSON:
    """v3 ``components.schemas`` for one group/version."""
    return definitions(registry, V3_PREFIX, registry.in_group_version(group, version))


def kind_ref(rt: ResourceType, prefix: str = V3_PREFIX) -> str | None:
    if rt.custom:
        return prefix + _crd_name(rt)
    model = typecheck.model_for(rt.group, rt.version, rt.kind)
    return prefix + definition_name(model) if model else None


def swagger_v2(registry: Registry, version: str) -> JSON:
    """The v2 document (definitions only: kubectl reads definitions for validation; without
    PATCH paths it keeps computing patches from its compiled-in types)."""
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": version},
        "paths": {},
        "definitions": definitions(registry),
    }
