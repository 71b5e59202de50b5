"""CustomResourceDefinition checks and status, as the apiextensions server keeps them.

The structural checks here are the ones that matter for serving: the name must be
``<plural>.<group>``, the names must be present, and exactly one version is the storage
version. Schemas are stored but not enforced.
"""

from __future__ import annotations

from typing import Any

from antrea.apiserver import errors

JSON = dict[str, Any]


def _cause(field: str, message: str, reason: str = "FieldValueInvalid") -> JSON:
    return {"reason": reason, "field": field, "message": message}


def check_crd(obj: JSON) -> None:
    """Raise a 422 for a CRD the server could not serve."""
    name = obj["metadata"].get("name", "")
    spec = obj.get("spec")
    causes: list[JSON] = []
    if not isinstance(spec, dict):
        causes.append(_cause("spec", "Required value", "FieldValueRequired"))
    else:
        group = spec.get("group") or ""
        names_value = spec.get("names")
        names: JSON = names_value if isinstance(names_value, dict) else {}
        plural = names.get("plural") or ""
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
