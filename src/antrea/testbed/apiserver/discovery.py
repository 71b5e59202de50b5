"""Discovery documents (`/version`, `/api`, `/apis`, group/version resource lists) and the
OpenAPI v3 documents (schemas from `openapi`).

Why the PATCH paths: ``kubectl apply`` validates with ``--validate=strict`` by default. It asks
the server's OpenAPI v3 document whether the PATCH operation of the object's kind accepts the
``fieldValidation`` query parameter; if it does, validation is left to the server (for a
``kind: List`` it validates client-side against the v2 definitions). Every served kind gets
a PATCH path with that parameter. The documents deliberately do not advertise strategic merge
patch, which makes kubectl compute its patch from its compiled-in types (built-in kinds) or as
a JSON merge patch (custom resources). Schemas (``components.schemas``, each served kind
tagged with ``x-kubernetes-group-version-kind``) are what ``kubectl explain`` reads.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from antrea.testbed.apiserver import openapi
from antrea.testbed.apiserver.resources import Registry, ResourceType

JSON = dict[str, Any]

KUBERNETES_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-antrea",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

# Built-in groups in the order kube-apiserver lists them; custom groups follow, sorted.
_GROUP_ORDER = (
    "",
    "apiextensions.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "rbac.authorization.k8s.io",
    "networking.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
)


def api_versions(server_address: str) -> JSON:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group_entry(group: str, versions: list[str]) -> JSON:
    return {
        "name": group,
        "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
        "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]},
    }


def _ordered_groups(registry: Registry) -> list[tuple[str, list[str]]]:
    groups = registry.groups()
    order = {g: i for i, g in enumerate(_GROUP_ORDER)}
    names = sorted((g for g in groups if g), key=lambda g: (order.get(g, len(order)), g))
    return [(g, groups[g]) for g in names]


def api_group_list(registry: Registry) -> JSON:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_entry(g, v) for g, v in _ordered_groups(registry)],
    }


def api_group(registry: Registry, group: str) -> JSON | None:
    versions = registry.groups().get(group)
    if not versions or not group:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, versions)}


def resource_list(registry: Registry, group: str, version: str) -> JSON | None:
    if not registry.has_group_version(group, version):
        return None
    resources: list[JSON] = []
    for rt in sorted(registry.in_group_version(group, version), key=lambda r: r.resource):
        resources.extend(rt.discovery_entries())
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def root_paths(registry: Registry) -> JSON:
    paths = [
        "/api",
        "/api/v1",
        "/apis",
        "/healthz",
        "/livez",
        "/openapi/v2",
        "/openapi/v3",
        "/readyz",
        "/version",
    ]
    for group, versions in _ordered_groups(registry):
        paths.append(f"/apis/{group}")
        paths.extend(f"/apis/{group}/{v}" for v in versions)
    return {"paths": sorted(paths)}


# -- OpenAPI v3 ------------------------------------------------------------------------------


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _item_path(rt: ResourceType) -> str:
    prefix = f"/api/{rt.version}" if not rt.group else f"/apis/{rt.group}/{rt.version}"
    if rt.namespaced:
        return f"{prefix}/namespaces/{{namespace}}/{rt.resource}/{{name}}"
    return f"{prefix}/{rt.resource}/{{name}}"


def openapi_v3_doc(registry: Registry, group: str, version: str) -> JSON | None:
    if not registry.has_group_version(group, version):
        return None
    paths: JSON = {}
    for rt in sorted(registry.in_group_version(group, version), key=lambda r: r.resource):
        if rt.virtual:
            continue
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        patch = {
            "operationId": f"patch{rt.kind}",
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [
                {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
            ],
            "requestBody": {
                "content": {
                    "application/json-patch+json": {"schema": {"type": "object"}},
                    "application/merge-patch+json": {"schema": {"type": "object"}},
                },
                "required": True,
            },
            "responses": {"200": {"description": "OK"}},
        }
        ok: JSON = {"description": "OK"}
        ref = openapi.kind_ref(rt)
        if ref is not None:
            ok["content"] = {"application/json": {"schema": {"$ref": ref}}}
        get = {
            "operationId": f"read{rt.kind}",
            "x-kubernetes-action": "get",
            "x-kubernetes-group-version-kind": gvk,
            "responses": {"200": ok},
        }
        paths[_item_path(rt)] = {"get": get, "patch": patch}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": openapi.components(registry, group, version)},
    }


def openapi_v3_index(registry: Registry) -> JSON:
    index: JSON = {}
    gvs = [("", "v1")] + [(g, v) for g, vs in _ordered_groups(registry) for v in vs]
    for group, version in gvs:
        doc = openapi_v3_doc(registry, group, version)
        digest = hashlib.sha512(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()[:64]
        path = _gv_path(group, version)
        index[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest.upper()}"}
    return {"paths": index}
