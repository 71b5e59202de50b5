"""``field.Error`` and the 422 Status kube-apiserver answers with when validation fails.

Messages are rendered exactly as Go's ``field.Error`` renders them, so clients that match on
them (kubectl, the lab, tests) see the same text as from a real cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
NOT_FOUND = "FieldValueNotFound"

_TYPE_TEXT = {
    REQUIRED: "Required value",
    INVALID: "Invalid value",
    NOT_SUPPORTED: "Unsupported value",
    DUPLICATE: "Duplicate value",
    FORBIDDEN: "Forbidden",
    TOO_LONG: "Too long",
    TOO_MANY: "Too many",
    NOT_FOUND: "Not found",
    "FieldValueTypeInvalid": "Invalid value",
    "InternalError": "Internal error",
}
# Types whose message never shows the offending value (as in field.Error.ErrorBody).
_VALUELESS = frozenset({REQUIRED, FORBIDDEN, TOO_LONG, "InternalError"})


def _go_value(value: object) -> str:
    """Render a bad value the way Go's field.Error does (%q strings, %v scalars, %#v others)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(json.dumps(v, ensure_ascii=False) for v in value) + "}"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass
class FieldError:
    """One ``field.Error``: where, what kind of problem, why, and the offending value."""

    path: str
    type: str
    detail: str
    value: object = None

    def body(self) -> str:
        """``ErrorBody()``: the message without the field path (a Status cause's message)."""
        text = _TYPE_TEXT.get(self.type, self.type)
        if self.type not in _VALUELESS:
            text = f"{text}: {_go_value(self.value)}"
        if self.detail:
            text += f": {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.path}: {self.body()}"


def required(path: str, detail: str = "") -> FieldError:
    return FieldError(path, REQUIRED, detail)


def invalid(path: str, value: object, detail: str) -> FieldError:
    return FieldError(path, INVALID, detail, value)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(path, FORBIDDEN, detail)


def duplicate(path: str, value: object) -> FieldError:
    return FieldError(path, DUPLICATE, "", value)


def not_supported(path: str, value: object, supported: Iterable[str]) -> FieldError:
    detail = "supported values: " + ", ".join(json.dumps(s) for s in supported)
    return FieldError(path, NOT_SUPPORTED, detail, value)


def field_errors_to_status(
    kind: str, name: str, errors: list[FieldError], *, group: str = ""
) -> JSON:
    """The ``metav1.Status`` of ``apierrors.NewInvalid``: HTTP 422, reason Invalid."""
    qualified = f"{kind}.{group}" if group else kind
    seen: set[str] = set()
    messages: list[str] = []
    for err in errors:  # utilerrors.NewAggregate drops repeated messages
        msg = str(err)
        if msg not in seen:
            seen.add(msg)
            messages.append(msg)
    quoted = json.dumps(name)
    if not messages:
        message = f"{qualified} {quoted} is invalid"
    elif len(messages) == 1:
        message = f"{qualified} {quoted} is invalid: {messages[0]}"
    else:
        message = f"{qualified} {quoted} is invalid: [{', '.join(messages)}]"
    details: JSON = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [{"reason": e.type, "message": e.body(), "field": e.path} for e in errors]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Invalid",
        "details": details,
        "code": 422,
    }
