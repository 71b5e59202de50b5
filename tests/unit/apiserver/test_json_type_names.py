"""The two vocabularies for a JSON value's type: OpenAPI schema validation's (CRDs) and Go
encoding/json's (built-in types), both from one classification."""

from __future__ import annotations

from typing import Any

import pytest

from antrea.testbed.apiserver.crschema import openapi_type
from antrea.testbed.apiserver.typecheck import json_type

CASES: list[tuple[Any, str, str]] = [
    (True, "boolean", "bool"),
    (False, "boolean", "bool"),
    (0, "integer", "number"),
    (2**70, "integer", "number"),
    (1.5, "number", "number"),
    ("x", "string", "string"),
    ([], "array", "array"),
    ({}, "object", "object"),
    (None, "null", "null"),
]


@pytest.mark.parametrize(("value", "openapi", "go_json"), CASES)
def test_type_names(value: Any, openapi: str, go_json: str) -> None:
    assert openapi_type(value) == openapi
    assert json_type(value) == go_json
