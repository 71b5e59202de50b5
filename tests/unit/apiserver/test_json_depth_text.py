"""`limits.check_json_text` decides exactly what `limits.check_json` decides on the decoded value.

The text form skips the walk over the decoded body (2.5 ms for a 2,500-rule NetworkPolicy,
~0.7 ms from the text), so it must agree on every text orjson accepts: strings holding
brackets, quotes, backslashes and escapes, any whitespace, any depth around the limit.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antrea.testbed.apiserver.limits import (
    MAX_DEPTH,
    ShapeError,
    check_json,
    check_json_text,
    depth_of,
)

_TRICKY = st.text(alphabet=st.sampled_from('[]{}"\\/:,ab \n\té\u2028'), max_size=8)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    _TRICKY,
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_TRICKY, inner, max_size=4)
    ),
    max_leaves=40,
)


def _refused(check: Any, arg: Any, limit: int) -> bool:
    try:
        check(arg, max_depth=limit)
    except ShapeError:
        return True
    return False


def _texts(value: Any) -> list[bytes]:
    """The same value as different writers spell it."""
    return [
        orjson.dumps(value),
        json.dumps(value).encode(),
        json.dumps(value, ensure_ascii=False, indent=1).encode(),
        json.dumps(value, separators=(" , ", " : ")).encode(),
    ]


@settings(max_examples=400, deadline=None)
@given(_VALUES, st.integers(min_value=0, max_value=8))
def test_text_check_agrees_with_the_walk(value: Any, limit: int) -> None:
    expected = _refused(check_json, value, limit)
    for text in _texts(value):
        assert _refused(check_json_text, text, limit) == expected, text


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=60), st.integers(min_value=0, max_value=60))
def test_deep_texts_are_measured_exactly(depth: int, limit: int) -> None:
    """Past the peeling passes (16) the running sum measures the rest."""
    value: Any = "x[{"
    for i in range(depth):
        value = [value, {"k]": 1}] if i % 2 else {"a{": value, "b": []}
    expected = _refused(check_json, value, limit)
    assert expected == (depth_of(value) > limit)
    for text in _texts(value):
        assert _refused(check_json_text, text, limit) == expected


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        (b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, False),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), True),
        (b'["' + b"[" * 500 + b'"]', False),  # brackets in a string are text
        (
            b'["\\\\", ' + b"[" * 101 + b"]" * 101 + b"]",
            True,
        ),  # an escaped backslash ends no string
        (b'["\\"[[[", ' + b"[" * 99 + b"]" * 99 + b"]", False),  # an escaped quote does not end it
        (b'{"a":' * 101 + b"1" + b"}" * 101, True),
    ],
)
def test_examples(text: bytes, refused: bool) -> None:
    value = orjson.loads(text)
    assert _refused(check_json, value, MAX_DEPTH) == refused
    assert _refused(check_json_text, text, MAX_DEPTH) == refused
