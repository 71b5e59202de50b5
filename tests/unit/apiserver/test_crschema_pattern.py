"""CRD `pattern`s are evaluated in linear time with RE2 semantics, as kube-apiserver does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antrea.testbed.apiserver import crschema, regex

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "pattern": "^(a+)+$"}}}


@pytest.mark.timeout(60)
def test_catastrophic_pattern_does_not_hang() -> None:
    # With a backtracking engine this input takes ~2^5000 steps; RE2 answers at once. The
    # timeout only catches a hang, it does not measure speed.
    errs = crschema.validate(SCHEMA, {"name": "a" * 5000 + "!"})
    assert [e.path for e in errs] == ["name"]
    assert "should match '^(a+)+$'" in errs[0].detail


def test_matching_value_is_accepted() -> None:
    assert crschema.validate(SCHEMA, {"name": "aaaa"}) == []


def test_patterns_go_refuses_are_invalid_and_not_enforced() -> None:
    assert not regex.valid("(?<=a)b")  # look-behind: not RE2, Go refuses it too
    assert regex.matches("(?<=a)b", "ab") is None
    schema = {"type": "string", "pattern": "(?<=a)b"}
    assert crschema.validate(schema, "zzz") == []


@given(st.text(alphabet="ab.-_019", max_size=30))
def test_agrees_with_python_re_on_simple_patterns(value: str) -> None:
    import re

    for pattern in ("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "^[0-9]+$", "a.b", "^$"):
        assert regex.matches(pattern, value) is (re.search(pattern, value) is not None)
