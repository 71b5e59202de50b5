"""`PodReference`'s spelled-out ``__eq__``/``__hash__`` keep the generated dataclass's
semantics: equal iff the same class with equal fields, hashed as the field tuple."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from antrea.apis.controlplane.types import PodReference


@dataclass(frozen=True, slots=True)
class _Generated:
    namespace: str
    name: str


_NAME = st.sampled_from(["", "a", "b", "default", "pod-1"]) | st.text(max_size=8)


@given(_NAME, _NAME, _NAME, _NAME)
def test_eq_and_hash_are_the_generated_ones(ns1: str, n1: str, ns2: str, n2: str) -> None:
    a, b = PodReference(ns1, n1), PodReference(ns2, n2)
    ga, gb = _Generated(ns1, n1), _Generated(ns2, n2)
    assert (a == b) == (ga == gb)
    assert (a != b) == (ga != gb)
    assert a == PodReference(ns1, n1)
    assert a.__eq__(a) is True  # the identity shortcut
    assert hash(a) == hash(ga) == hash((ns1, n1))
    # another class (even with the same fields, or the field tuple) is never equal
    assert a.__eq__(ga) is NotImplemented
    assert a != ga
    assert a != (ns1, n1)
    assert {a: 1}.get(PodReference(ns1, n1)) == 1
