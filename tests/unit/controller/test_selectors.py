"""Selector normalization, matching, and group naming."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from npc_reference import NAME_NAMESPACE, matches

from antrea.controller.networkpolicy.selectors import (
    GROUP_NAME_NAMESPACE_HEX,
    Selector,
    group_key_text,
    group_name,
    group_text,
)
from antrea.k8s.labels import normalize_selector


def test_equivalent_selectors_normalize_equal() -> None:
    a = {"matchLabels": {"app": "web", "tier": "front"}}
    b = {
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front", "front"]},
            {"key": "app", "operator": "In", "values": ["web"]},
        ]
    }
    assert normalize_selector(a) == normalize_selector(b)
    assert (
        normalize_selector(None)
        == normalize_selector({})
        == normalize_selector({"matchLabels": {}})
        == ()
    )


def test_values_order_does_not_matter() -> None:
    a = {"matchExpressions": [{"key": "k", "operator": "NotIn", "values": ["b", "a"]}]}
    b = {"matchExpressions": [{"key": "k", "operator": "NotIn", "values": ["a", "b"]}]}
    assert normalize_selector(a) == normalize_selector(b)


def test_unknown_operator_matches_nothing() -> None:
    sel = Selector(normalize_selector({"matchExpressions": [{"key": "k", "operator": "Gt"}]}))
    assert not sel.matches({"k": "1"})
    assert not sel.matches({})


def test_group_name_is_uuid5_of_the_canonical_text() -> None:
    sel = Selector(normalize_selector({"matchLabels": {"a": 'b"é'}}))
    text = group_text('ns"', sel, None)
    assert text == group_key_text('ns"', sel.key, None)
    assert text == '["ns\\"",[["a","In",["b\\"é"]]],null]'
    assert group_name(text) == str(uuid.uuid5(uuid.UUID(GROUP_NAME_NAMESPACE_HEX), text))
    assert uuid.UUID(GROUP_NAME_NAMESPACE_HEX) == NAME_NAMESPACE


def test_index_key_prefers_the_narrowest_in() -> None:
    sel = Selector(
        normalize_selector(
            {
                "matchExpressions": [
                    {"key": "x", "operator": "Exists"},
                    {"key": "y", "operator": "In", "values": ["1", "2"]},
                    {"key": "z", "operator": "In", "values": ["1"]},
                ]
            }
        )
    )
    assert sel.index_key == "z"
    assert sel.index_values == ("1",)
    assert (
        Selector(
            normalize_selector(
                {"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["1"]}]}
            )
        ).index_key
        is None
    )


KEYS = ["a", "b", "c"]
VALUES = ["1", "2", "3"]


@st.composite
def selectors(draw: st.DrawFn) -> dict[str, Any]:
    sel: dict[str, Any] = {}
    ml = draw(st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2))
    if ml:
        sel["matchLabels"] = ml
    exprs = []
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
        e: dict[str, Any] = {"key": draw(st.sampled_from(KEYS)), "operator": op}
        if op in ("In", "NotIn"):
            e["values"] = draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=3))
        exprs.append(e)
    if exprs:
        sel["matchExpressions"] = exprs
    return sel


@given(sel=selectors(), labels=st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES)))
def test_compiled_matcher_agrees_with_the_definition(
    sel: dict[str, Any], labels: dict[str, str]
) -> None:
    compiled = Selector(normalize_selector(sel))
    assert compiled.matches(labels) is matches(sel, labels)
    if compiled.matches(labels) and compiled.index_key is not None:
        assert compiled.index_key in labels  # the index never hides a match
        if compiled.index_values is not None:
            assert labels[compiled.index_key] in compiled.index_values


@pytest.mark.parametrize("raw", [None, {}, {"matchLabels": None}])
def test_empty_selectors_match_everything(raw: Any) -> None:
    assert Selector(normalize_selector(raw)).matches({"any": "thing"})
