"""Query parameters parsed as kube-apiserver's parameter codec does.

Integers (``limit``, ``timeoutSeconds``, ``gracePeriodSeconds``) are Go ``int64``: ASCII
digits with an optional sign, in range, or the request is a 400 whose message is Go's
``strconv.ParseInt`` error. Booleans are false only when absent, ``0`` or ``false`` (any
case); any other value, even empty, is true. ``dryRun`` and ``fieldValidation`` only take
their documented values (422 ``Invalid``, as upstream's options validation answers).
"""

from __future__ import annotations

import re

from aiohttp import web

from antrea.testbed.apiserver import errors

_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
FIELD_VALIDATION = ("Ignore", "Warn", "Strict")
OPTIONS_KIND = {
    "POST": "CreateOptions",
    "PUT": "UpdateOptions",
    "PATCH": "PatchOptions",
    "DELETE": "DeleteOptions",
}


def int64(request: web.Request, name: str) -> int | None:
    """The ``name`` parameter as an int64, or None when absent."""
    text = request.query.get(name)
    if text is None:
        return None
    if not _INT.fullmatch(text):
        raise errors.bad_request(f'{name}: strconv.ParseInt: parsing "{text}": invalid syntax')
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise errors.bad_request(f'{name}: strconv.ParseInt: parsing "{text}": value out of range')
    return value


def is_true(text: str | None) -> bool:
    """A boolean parameter's value (``text`` None when absent)."""
    return text is not None and text != "0" and text.lower() != "false"


def flag(request: web.Request, name: str) -> bool:
    return is_true(request.query.get(name))


def _invalid_options(
    kind: str, field: str, value: str, supported: tuple[str, ...]
) -> errors.APIError:
    listed = ", ".join(f'"{s}"' for s in supported)
    message = f'{field}: Unsupported value: "{value}": supported values: {listed}'
    return errors.APIError(
        errors.status_body(
            code=422,
            reason="Invalid",
            message=f'{kind}.meta.k8s.io "" is invalid: {message}',
            details={
                "group": "meta.k8s.io",
                "kind": kind,
                "causes": [
                    {"reason": "FieldValueNotSupported", "message": message, "field": field}
                ],
            },
        )
    )


def dry_run(request: web.Request) -> bool:
    """Whether ``dryRun`` asks for a dry run (every value must be ``All``)."""
    values = request.query.getall("dryRun", [])
    for value in values:
        if value != "All":
            raise _invalid_options(_options(request), "dryRun", value, ("All",))
    return bool(values)


def field_validation(request: web.Request) -> str:
    value = request.query.get("fieldValidation") or "Warn"
    if value not in FIELD_VALIDATION:
        raise _invalid_options(_options(request), "fieldValidation", value, FIELD_VALIDATION)
    return value


def _options(request: web.Request) -> str:
    return OPTIONS_KIND.get(request.method, "ListOptions")
