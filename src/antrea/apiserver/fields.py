"""Unknown-field detection for ``fieldValidation`` (Strict rejects, Warn warns).

kubectl sends ``fieldValidation=Strict``; a real server then rejects a misspelt field instead of
silently dropping it. For a NetworkPolicy that matters (``ingres:`` would otherwise yield a
policy that isolates and allows nothing), so the kinds whose typos change behaviour here are
described field by field; other kinds are only checked at the top level and in metadata.
"""

from __future__ import annotations

from typing import Any

# A schema is a dict of known keys -> sub-schema; None accepts anything (scalars, maps);
# a one-element list means "list of" that schema.
Schema = dict[str, Any]

_SELECTOR: Schema = {
    "matchLabels": None,
    "matchExpressions": [{"key": None, "operator": None, "values": None}],
}
OBJECT_META: Schema = dict.fromkeys(
    [
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    ]
)
_PEER: Schema = {
    "podSelector": _SELECTOR,
    "namespaceSelector": _SELECTOR,
    "ipBlock": {"cidr": None, "except": None},
}
_NP_PORT: Schema = {"protocol": None, "port": None, "endPort": None}
_TOP = {"apiVersion": None, "kind": None, "metadata": OBJECT_META}

SCHEMAS: dict[tuple[str, str], Schema] = {
    ("networking.k8s.io", "NetworkPolicy"): {
        **_TOP,
        "spec": {
            "podSelector": _SELECTOR,
            "policyTypes": None,
            "ingress": [{"from": [_PEER], "ports": [_NP_PORT]}],
            "egress": [{"to": [_PEER], "ports": [_NP_PORT]}],
        },
        "status": None,
    },
    ("", "Pod"): {**_TOP, "spec": None, "status": None},
    ("", "Service"): {**_TOP, "spec": None, "status": None},
    ("", "Node"): {**_TOP, "spec": None, "status": None},
    ("", "Namespace"): {**_TOP, "spec": None, "status": None},
    ("", "ConfigMap"): {**_TOP, "data": None, "binaryData": None, "immutable": None},
    ("", "Secret"): {
        **_TOP,
        "data": None,
        "stringData": None,
        "type": None,
        "immutable": None,
    },
    ("", "Endpoints"): {**_TOP, "subsets": None},
    ("coordination.k8s.io", "Lease"): {**_TOP, "spec": None},
}


def unknown_fields(group: str, kind: str, obj: Any) -> list[str]:
    """Dotted paths of fields the kind does not declare (``spec.ingres``)."""
    schema = SCHEMAS.get((group, kind))
    if schema is None:
        return []
    out: list[str] = []
    _walk(obj, schema, "", out)
    return out


def _walk(value: Any, schema: Any, path: str, out: list[str]) -> None:
    if schema is None:
        return
    if isinstance(schema, list):
        if isinstance(value, list):
            for i, item in enumerate(value):
                _walk(item, schema[0], f"{path}[{i}]", out)
        return
    if not isinstance(value, dict):
        return
    for key, sub in value.items():
        child = f"{path}.{key}" if path else key
        if key not in schema:
            out.append(child)
        else:
            _walk(sub, schema[key], child, out)
