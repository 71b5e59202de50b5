"""What kube-apiserver's decoder does to a body before the registry sees it.

A built-in kind is decoded into its Go struct: a field of the wrong JSON type fails the
request (400 for a create or update, 422 ``Invalid`` for a patch, whose result is decoded the
same way) and nothing is stored; fields the struct does not declare are dropped, with a
``Warning`` header under ``fieldValidation=Warn`` (the default) or a 400 under ``Strict``.
Custom resources get the same unknown-field treatment from their CRD schema (`crschema`),
which also checks their types (on validation, 422).
"""

from __future__ import annotations

from typing import Any

from antrea.testbed.apiserver import crschema, errors, typecheck
from antrea.testbed.apiserver.resources import ResourceType

JSON = dict[str, Any]
FIELD_VALIDATION = ("Ignore", "Warn", "Strict")


def type_error(
    rt: ResourceType, obj: Any, mismatches: list[typecheck.Mismatch], *, patch: bool
) -> errors.APIError:
    first = mismatches[0]
    message = (
        f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {first.message()}'
    )
    causes = [
        {"reason": "FieldValueTypeInvalid", "message": m.message(), "field": m.path}
        for m in mismatches
    ]
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    details: JSON = {
        "name": name if isinstance(name, str) else "",
        "kind": rt.kind,
        "causes": causes,
    }
    if rt.group:
        details["group"] = rt.group
    if patch:
        return errors.APIError(
            errors.status_body(code=422, reason="Invalid", message=message, details=details)
        )
    return errors.APIError(
        errors.status_body(code=400, reason="BadRequest", message=message, details=details)
    )


def check_body(rt: ResourceType, obj: JSON, mode: str, *, patch: bool = False) -> list[str]:
    """Type-check ``obj`` (raising the Status kube-apiserver answers), drop unknown fields
    per ``mode`` (``fieldValidation``) and return the warnings to send."""
    if rt.custom:
        # The schema covers everything but the object's metadata, which is an ObjectMeta.
        meta = typecheck.check(
            "V1ObjectMeta", obj.get("metadata"), prune=mode != "Strict", path="metadata"
        )
        if meta.mismatches:
            raise type_error(rt, obj, meta.mismatches, patch=patch)
        unknown = meta.unknown
        if rt.schema is not None:
            unknown += crschema.unknown_fields(rt.schema, obj)
    else:
        model = typecheck.model_for(rt.group, rt.version, rt.kind)
        if model is None:
            unknown = []
        else:
            result = typecheck.check(model, obj, prune=mode != "Strict")
            if result.mismatches:
                raise type_error(rt, obj, result.mismatches, patch=patch)
            unknown = result.unknown
    if not unknown or mode == "Ignore":
        return []
    if mode == "Strict":
        listed = ", ".join(f'unknown field "{u}"' for u in unknown)
        raise errors.bad_request(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
            f"strict decoding error: {listed}"
        )
    return [f'unknown field "{u}"' for u in unknown]
