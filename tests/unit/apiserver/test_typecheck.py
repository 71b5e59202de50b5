"""`typecheck.check` against a plain reference: the same mismatches, unknown fields and pruning.

`check` renders paths only for what it reports and checks a model's scalar fields in place; the
reference below is the straightforward walk (every value pushed, every path formatted), so any
difference in what is found, where, or what is pruned shows up on random bodies built from the
type tables: valid and mistyped values, unknown fields, nulls, lists of several items, maps.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from antrea.testbed.apiserver import typecheck
from antrea.testbed.apiserver.typecheck import Mismatch, Result, json_type

JSON = dict[str, Any]
MODELS = ("V1NetworkPolicy", "V1Pod", "V1Service", "V1Namespace", "V1ConfigMap")
_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=3),
    st.just([]),
    st.just({}),
    st.just([1, "a"]),
    st.just({"a": 1}),
)
_VALID = {
    "string": st.text(max_size=3),
    "int": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "bool": st.booleans(),
    "time": st.sampled_from(["2024-01-02T03:04:05Z", "2024-01-02T03:04:05.5+01:00", "x"]),
    "any": _ANY,
    "intorstr": st.one_of(st.integers(0, 9), st.text(max_size=2)),
    "quantity": st.one_of(st.integers(0, 9), st.text(max_size=2), st.floats(0, 1)),
}


def reference(model: str, obj: Any, *, prune: bool = False, path: str = "") -> Result:
    """Every value visited through the stack, every child path formatted eagerly."""
    result = Result([], [])
    t0 = typecheck.FieldType("model", model=model)
    stack: list[tuple[Any, typecheck.FieldType, str, str]] = [(obj, t0, path, model)]
    while stack:
        value, t, path, owner = stack.pop()
        if value is None:
            continue
        if t.kind == "model":
            if not isinstance(value, dict):
                result.mismatches.append(Mismatch(path, json_type(value), t.describe(), owner))
                continue
            fields = typecheck.model_fields(t.model)
            for key in list(value):
                child = f"{path}.{key}" if path else key
                sub = fields.get(key)
                if sub is None:
                    result.unknown.append(child)
                    if prune:
                        del value[key]
                    continue
                stack.append((value[key], sub, child, t.model))
        elif t.kind in ("list", "map"):
            wanted = list if t.kind == "list" else dict
            if not isinstance(value, wanted):
                result.mismatches.append(Mismatch(path, json_type(value), t.describe(), owner))
                continue
            assert t.item is not None
            items = enumerate(value) if isinstance(value, list) else value.items()
            for key, item in items:
                stack.append((item, t.item, f"{path}[{key}]", owner))
        elif not typecheck._scalar_ok(t, value):
            result.mismatches.append(Mismatch(path, json_type(value), t.describe(), owner))
    result.mismatches.sort(key=lambda m: m.path)
    result.unknown.sort()
    return result


def value_of(draw: st.DrawFn, t: typecheck.FieldType, depth: int) -> Any:
    """A value for a field of type ``t``: mostly well-typed, sometimes anything at all."""
    if depth > 3 or draw(st.integers(0, 5)) == 0:
        return draw(_ANY)
    if t.kind == "model":
        return body_of(draw, t.model, depth + 1)
    if t.kind in ("list", "map"):
        assert t.item is not None
        n = draw(st.integers(0, 3))
        items = [value_of(draw, t.item, depth + 1) for _ in range(n)]
        if t.kind == "list":
            return items
        return {draw(st.text("ab.[]", max_size=3)): item for item in items}
    return draw(_VALID[t.kind])


def body_of(draw: st.DrawFn, model: str, depth: int) -> JSON:
    fields = typecheck.model_fields(model)
    names = draw(st.lists(st.sampled_from(sorted(fields)), max_size=4, unique=True))
    body: JSON = {name: value_of(draw, fields[name], depth) for name in names}
    for extra in draw(st.lists(st.text("xyz", min_size=1, max_size=2), max_size=2)):
        body[extra] = draw(_ANY)
    return body


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, JSON]:
    model = draw(st.sampled_from(MODELS))
    return model, body_of(draw, model, 0)


def _unshared(value: Any) -> Any:
    """A copy in which no object appears twice, as in a body decoded from JSON (hypothesis may
    draw one dict into two places, and pruning it at the first would hide it at the second:
    copy.deepcopy keeps such sharing)."""
    if isinstance(value, dict):
        return {k: _unshared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unshared(v) for v in value]
    return value


_SHARED: JSON = {"a": 1}  # one unknown-field object drawn into two list items


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(), st.booleans(), st.sampled_from(["", "spec"]))
@example(("V1Pod", {"spec": {"containers": [{"env": [_SHARED, _SHARED]}]}}), True, "")
def test_check_matches_the_reference_walk(case: tuple[str, JSON], prune: bool, path: str) -> None:
    model, body = case
    ours, theirs = _unshared(body), _unshared(body)
    got = typecheck.check(model, ours, prune=prune, path=path)
    want = reference(model, theirs, prune=prune, path=path)
    assert got.mismatches == want.mismatches
    assert got.unknown == want.unknown
    assert ours == theirs  # pruned alike (or not at all)


def test_a_large_valid_policy_has_nothing_to_report() -> None:
    cidrs = [f"10.0.{i // 256}.{i % 256}/32" for i in range(3000)]
    rules: list[JSON] = [{"from": [{"ipBlock": {"cidr": c}}]} for c in cidrs]
    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "np", "namespace": "ns", "labels": {"a": "b"}},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": rules},
    }
    result = typecheck.check("V1NetworkPolicy", body, prune=True)
    assert result.mismatches == [] and result.unknown == []
    rules[2999]["from"][0]["ipBlock"]["cidr"] = 5
    rules[7]["from"][0]["ipBlock"]["x"] = 1
    result = typecheck.check("V1NetworkPolicy", body, prune=True)
    assert [m.path for m in result.mismatches] == ["spec.ingress[2999].from[0].ipBlock.cidr"]
    assert result.unknown == ["spec.ingress[7].from[0].ipBlock.x"]
    assert "x" not in rules[7]["from"][0]["ipBlock"]
