"""One label-selector module for the controller's compiler and the embedded API server: the dict
form, the query syntax and the matcher agree (hypothesis), and the lenient reading the compiler
uses equals the validated one wherever the API server would accept the selector."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antrea.k8s.labels import (
    EVERYTHING,
    INVALID,
    SelectorError,
    compile_matcher,
    label_selector_from_dict,
    normalize_selector,
    parse_label_selector,
    parse_selector,
    selector_text,
    validated_selector,
)

KEYS = ["a", "b", "x.io/c"]
VALUES = ["", "1", "2", "v"]
OPS = ["In", "NotIn", "Exists", "DoesNotExist"]


@st.composite
def selectors(draw: st.DrawFn) -> dict[str, Any]:
    """Valid metav1.LabelSelector dicts (what the API server admits)."""
    sel: dict[str, Any] = {}
    ml = draw(st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2))
    if bool(ml) or draw(st.booleans()):
        sel["matchLabels"] = ml
    exprs = []
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(OPS))
        e: dict[str, Any] = {"key": draw(st.sampled_from(KEYS)), "operator": op}
        if op in ("In", "NotIn"):
            e["values"] = draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=3))
        exprs.append(e)
    if exprs:
        sel["matchExpressions"] = exprs
    return sel


def reference(sel: dict[str, Any], labels: dict[str, str]) -> bool:
    """metav1's definition, read directly."""
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or ():
        k, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and not (k in labels and labels[k] in values):
            return False
        if op == "NotIn" and k in labels and labels[k] in values:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


labels_st = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3)


@given(sel=selectors(), labels=labels_st)
def test_dict_query_syntax_and_matcher_agree(sel: dict[str, Any], labels: dict[str, str]) -> None:
    lenient = normalize_selector(sel)
    assert validated_selector(sel) == lenient  # the compiler's reading is the server's
    text = selector_text(lenient)
    assert parse_selector(text) == lenient  # the query syntax round-trips
    expected = reference(sel, labels)
    assert compile_matcher(lenient)(labels) is expected
    assert parse_label_selector(text).matches(labels) is expected
    assert label_selector_from_dict(sel).matches(labels) is expected


@given(sel=selectors(), labels=labels_st)
def test_equal_selectors_are_equal_however_written(
    sel: dict[str, Any], labels: dict[str, str]
) -> None:
    """Spelling matchLabels as In expressions (values shuffled, duplicated) changes nothing."""
    exprs = [
        {"key": k, "operator": "In", "values": [v, v]}
        for k, v in (sel.get("matchLabels") or {}).items()
    ]
    for e in reversed(sel.get("matchExpressions") or []):
        exprs.append({**e, "values": list(reversed(e.get("values") or []))} if "values" in e else e)
    other = {"matchExpressions": exprs}
    assert normalize_selector(other) == normalize_selector(sel)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a=1", (("a", "In", ("1",)),)),
        ("a==1", (("a", "In", ("1",)),)),
        ("a in (1)", (("a", "In", ("1",)),)),
        ("a!=1", (("a", "NotIn", ("1",)),)),
        ("b notin (2,1),a", (("a", "Exists", ()), ("b", "NotIn", ("1", "2")))),
        ("!a", (("a", "DoesNotExist", ()),)),
        ("a>1,a<5", (("a", "Gt", ("1",)), ("a", "Lt", ("5",)))),
        ("", ()),
    ],
)
def test_query_syntax_normal_form(text: str, expected: tuple[Any, ...]) -> None:
    assert parse_selector(text) == expected


def test_gt_lt_need_an_integer_label() -> None:
    sel = parse_label_selector("n>1,n<10")
    assert sel.matches({"n": "5"})
    assert not sel.matches({"n": "1"}) and not sel.matches({"n": "x"}) and not sel.matches({})
    assert str(sel) == "n>1,n<10"


def test_unknown_operator_fails_closed_or_is_refused() -> None:
    bogus = {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}
    reqs = normalize_selector(bogus)
    assert reqs == (("a", INVALID, ("Gt",)),)
    assert not compile_matcher(reqs)({"a": "5"}) and not compile_matcher(reqs)({})
    with pytest.raises(SelectorError, match="not a valid label selector operator"):
        validated_selector(bogus)
    with pytest.raises(ValueError):  # SelectorError is also a ValueError
        parse_selector("a in ()")


def test_empty_selects_everything() -> None:
    assert label_selector_from_dict({}) == EVERYTHING == parse_label_selector("")
    assert EVERYTHING.empty and EVERYTHING.matches(None) and EVERYTHING.matches({"a": "1"})
    assert normalize_selector(None) == normalize_selector({"matchLabels": None}) == ()
