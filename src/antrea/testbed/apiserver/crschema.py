"""Structural-schema handling for custom resources: pruning, defaulting, validation.

A CRD's ``openAPIV3Schema`` is what stands between a typo and a controller crash, so custom
resources get what the apiextensions server does on every write: fields the schema does not
declare are pruned (unless ``x-kubernetes-preserve-unknown-fields``), ``default`` values fill
missing properties, and type/enum/range/pattern/required violations become a 422 with the
field path (messages as upstream's OpenAPI validator words them). ``oneOf``/``anyOf``/
``allOf``/``not`` and CEL rules are not evaluated.
"""

from __future__ import annotations

import copy
from typing import Any

from antrea.testbed.apiserver import regex
from antrea.testbed.apiserver.validation import FieldError, invalid, not_supported, required

JSON = dict[str, Any]
_ROOT_KEEP = ("apiVersion", "kind", "metadata")


def _is_object_schema(schema: JSON) -> bool:
    return (
        schema.get("type") == "object" or "properties" in schema or "additionalProperties" in schema
    )


def unknown_fields(schema: JSON | None, value: Any) -> list[str]:
    """Paths pruning would drop (what ``fieldValidation=Strict`` reports)."""
    out: list[str] = []
    prune_and_default(schema, value, pruned=out)
    return out


def prune_and_default(
    schema: JSON | None,
    value: Any,
    *,
    root: bool = True,
    pruned: list[str] | None = None,
    path: str = "",
) -> Any:
    """A copy of ``value`` with unknown fields dropped and defaults filled in."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict) and _is_object_schema(schema):
        props: JSON = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        keep_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields")) or addl is True
        out: JSON = {}
        for key, item in value.items():
            if root and key in _ROOT_KEEP:
                out[key] = item
                continue
            child = f"{path}.{key}" if path else key
            sub = props.get(key) if key in props else addl if isinstance(addl, dict) else None
            if sub is None and not keep_unknown:
                if pruned is not None:
                    pruned.append(child)
                continue
            if item is None and isinstance(sub, dict) and not sub.get("nullable"):
                continue  # null for a non-nullable field: pruned, then defaulted
            out[key] = (
                prune_and_default(sub, item, root=False, pruned=pruned, path=child)
                if sub is not None
                else item
            )
        for key, sub in props.items():
            if key not in out and isinstance(sub, dict) and "default" in sub:
                out[key] = prune_and_default(sub, copy.deepcopy(sub["default"]), root=False)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [
            prune_and_default(schema["items"], v, root=False, pruned=pruned, path=f"{path}[{i}]")
            for i, v in enumerate(value)
        ]
    return value


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def openapi_type(value: Any) -> str:
    """The OpenAPI type name of a decoded JSON value, as kube-apiserver's schema validation
    names it ("boolean", "integer", "number", "string", "array", "object", "null")."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def validate(
    schema: JSON | None, value: Any, path: str = "", *, root: bool = True
) -> list[FieldError]:
    """Every violation of ``schema`` in ``value`` (paths like ``spec.ports[0].port``)."""
    if not isinstance(schema, dict):
        return []
    errs: list[FieldError] = []
    label = path or "<root>"
    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            errs.append(
                invalid(label, value, f'{label} in body must be of type {schema["type"]}: "null"')
            )
        return errs
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            errs.append(
                invalid(
                    label,
                    value,
                    f'{label} in body must be of type integer,string: "{openapi_type(value)}"',
                )
            )
            return errs
    else:
        typ = schema.get("type")
        expected = _TYPES.get(typ) if isinstance(typ, str) else None
        if expected is not None and (
            not isinstance(value, expected) or (isinstance(value, bool) and typ != "boolean")
        ):
            errs.append(
                invalid(
                    label, value, f'{label} in body must be of type {typ}: "{openapi_type(value)}"'
                )
            )
            return errs
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        errs.append(not_supported(label, value, [str(e) for e in enum]))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errs.append(
                invalid(
                    label,
                    value,
                    f"{label} in body should be at least {schema['minLength']} chars long",
                )
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errs.append(
                invalid(
                    label,
                    value,
                    f"{label} in body should be at most {schema['maxLength']} chars long",
                )
            )
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and regex.matches(pattern, value) is False:
            errs.append(invalid(label, value, f"{label} in body should match '{pattern}'"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema:
            lo = schema["minimum"]
            if value < lo or (schema.get("exclusiveMinimum") and value == lo):
                op = (
                    "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
                )
                errs.append(invalid(label, value, f"{label} in body should be {op} {lo}"))
        if "maximum" in schema:
            hi = schema["maximum"]
            if value > hi or (schema.get("exclusiveMaximum") and value == hi):
                op = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
                errs.append(invalid(label, value, f"{label} in body should be {op} {hi}"))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errs.append(
                invalid(
                    label, value, f"{label} in body should have at least {schema['minItems']} items"
                )
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errs.append(
                invalid(
                    label, value, f"{label} in body should have at most {schema['maxItems']} items"
                )
            )
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                errs.extend(validate(items, item, f"{path}[{i}]", root=False))
    if isinstance(value, dict):
        props: JSON = schema.get("properties") or {}
        for key in schema.get("required") or ():
            if key not in value:
                errs.append(required(f"{path}.{key}" if path else key))
        addl = schema.get("additionalProperties")
        for key, item in value.items():
            if root and key in _ROOT_KEEP:
                continue
            child = f"{path}.{key}" if path else key
            if key in props:
                errs.extend(validate(props[key], item, child, root=False))
            elif isinstance(addl, dict):
                errs.extend(validate(addl, item, child, root=False))
    return errs
