"""CustomResourceDefinition checks and status, as the apiextensions server keeps them.

The structural checks here are the ones that matter for serving: the name must be
``<plural>.<group>``, the names must be present, and exactly one version is the storage
version. Schemas are stored but not enforced.
"""

from __future__ import annotations

from typing import Any

from antrea.testbed.apiserver import errors

JSON = dict[str, Any]


def _cause(field: str, message: str, reason: str = "FieldValueInvalid") -> JSON:
    return {"reason": reason, "field": field, "message": message}


def _type_causes(spec: JSON) -> list[JSON]:
    """Fields the server reads to serve the CRD must have the right JSON types."""
    causes: list[JSON] = []

    def want(value: Any, typ: type | tuple[type, ...], field: str, what: str) -> bool:
        if value is None or isinstance(value, typ):
            return True
        causes.append(_cause(field, f"Invalid value: must be {what}"))
        return False

    want(spec.get("group"), str, "spec.group", "a string")
    want(spec.get("scope"), str, "spec.scope", "a string")
    names = spec.get("names")
    if want(names, dict, "spec.names", "an object") and isinstance(names, dict):
        for key in ("plural", "singular", "kind", "listKind"):
            want(names.get(key), str, f"spec.names.{key}", "a string")
        for key in ("shortNames", "categories"):
            value = names.get(key)
            if want(value, list, f"spec.names.{key}", "a list of strings") and value:
                for i, item in enumerate(value):
                    want(item, str, f"spec.names.{key}[{i}]", "a string")
    versions = spec.get("versions")
    if want(versions, list, "spec.versions", "a list") and isinstance(versions, list):
        for i, ver in enumerate(versions):
            path = f"spec.versions[{i}]"
            if not want(ver, dict, path, "an object") or not isinstance(ver, dict):
                continue
            want(ver.get("name"), str, f"{path}.name", "a string")
            want(ver.get("served"), bool, f"{path}.served", "a boolean")
            want(ver.get("storage"), bool, f"{path}.storage", "a boolean")
            want(ver.get("subresources"), dict, f"{path}.subresources", "an object")
            schema = ver.get("schema")
            if want(schema, dict, f"{path}.schema", "an object") and isinstance(schema, dict):
                want(
                    schema.get("openAPIV3Schema"),
                    dict,
                    f"{path}.schema.openAPIV3Schema",
                    "an object",
                )
            columns = ver.get("additionalPrinterColumns")
            if want(columns, list, f"{path}.additionalPrinterColumns", "a list") and columns:
                for j, col in enumerate(columns):
                    cpath = f"{path}.additionalPrinterColumns[{j}]"
                    if want(col, dict, cpath, "an object") and isinstance(col, dict):
                        for key in ("name", "type", "jsonPath"):
                            want(col.get(key), str, f"{cpath}.{key}", "a string")
                        want(col.get("priority"), int, f"{cpath}.priority", "an integer")
    return causes


def check_crd(obj: JSON) -> None:
    """Raise a 422 for a CRD the server could not serve."""
    name = obj["metadata"].get("name", "")
    spec = obj.get("spec")
    causes: list[JSON] = []
    if not isinstance(spec, dict):
        causes.append(_cause("spec", "Required value", "FieldValueRequired"))
    else:
        causes.extend(_type_causes(spec))
        group = spec.get("group") if isinstance(spec.get("group"), str) else ""
        names_value = spec.get("names")
        names: JSON = names_value if isinstance(names_value, dict) else {}
        plural = names.get("plural") if isinstance(names.get("plural"), str) else ""
        if not group:
            causes.append(_cause("spec.group", "Required value", "FieldValueRequired"))
        elif "." not in group:
            causes.append(
                _cause(
                    "spec.group",
                    f'Invalid value: "{group}": should be a domain with at least one dot',
                )
            )
        if not plural:
            causes.append(_cause("spec.names.plural", "Required value", "FieldValueRequired"))
        if not names.get("kind"):
            causes.append(_cause("spec.names.kind", "Required value", "FieldValueRequired"))
        if group and plural and name != f"{plural}.{group}":
            causes.append(
                _cause(
                    "metadata.name",
                    f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                )
            )
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            causes.append(
                _cause(
                    "spec.scope",
                    f'Unsupported value: "{spec.get("scope")}": '
                    'supported values: "Cluster", "Namespaced"',
                    "FieldValueNotSupported",
                )
            )
        versions = spec.get("versions")
        if not isinstance(versions, list) or not versions:
            causes.append(_cause("spec.versions", "Required value", "FieldValueRequired"))
        else:
            storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
            if len(storage) != 1:
                causes.append(
                    _cause(
                        "spec.versions",
                        "Invalid value: must have exactly one version marked as storage version",
                    )
                )
            for i, ver in enumerate(versions):
                if not isinstance(ver, dict) or not ver.get("name"):
                    causes.append(
                        _cause(f"spec.versions[{i}].name", "Required value", "FieldValueRequired")
                    )
    if causes:
        detail = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
        raise errors.invalid(
            group="apiextensions.k8s.io",
            kind="CustomResourceDefinition",
            name=name,
            causes=causes,
            message=f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is invalid: {detail}',
        )


def crd_status(obj: JSON, old_status: JSON | None, now: str) -> JSON:
    """Accepted names, Established condition and stored versions for a served CRD."""
    spec = obj.get("spec") or {}
    stored = list((old_status or {}).get("storedVersions") or [])
    for ver in spec.get("versions") or ():
        if ver.get("storage") and ver.get("name") not in stored:
            stored.append(ver["name"])
    conditions = [
        {
            "type": "NamesAccepted",
            "status": "True",
            "lastTransitionTime": now,
            "reason": "NoConflicts",
            "message": "no conflicts found",
        },
        {
            "type": "Established",
            "status": "True",
            "lastTransitionTime": now,
            "reason": "InitialNamesAccepted",
            "message": "the initial names have been accepted",
        },
    ]
    if old_status and old_status.get("conditions"):
        conditions = old_status["conditions"]
    return {
        "acceptedNames": spec.get("names") or {},
        "conditions": conditions,
        "storedVersions": stored,
    }
