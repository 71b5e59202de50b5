"""The plugin's import-light JSON codec agrees with the json module."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antrea.apis.cni import _json

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(values)
def test_dumps_matches_json(value):
    assert _json.dumps(value) == json.dumps(value, separators=(",", ":"))
    assert _json.dumps(value, indent=4) == json.dumps(value, indent=4)


@given(values)
def test_loads_matches_json(value):
    text = json.dumps(value, ensure_ascii=False)
    assert _json.loads(text.encode()) == json.loads(text)
    assert _json.loads(f" \n{text}\t ") == json.loads(text)


@pytest.mark.parametrize(
    "bad", [b"", b"{", b"{not json", b"[1,]", b"{} {}", b"NaN", b"-Infinity", b"\xff", b"'x'"]
)
def test_loads_rejects_what_is_not_json(bad):
    with pytest.raises(ValueError):
        _json.loads(bad)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1: 2}, {"a": object()}])
def test_dumps_rejects_what_is_not_json(bad):
    with pytest.raises((ValueError, TypeError)):
        _json.dumps(bad)
