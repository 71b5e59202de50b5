"""positional_new builds the very object the dataclass constructor builds, or refuses."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antrea.agent.networkpolicy.cache import CacheRule, CompletedRule
from antrea.apis.controlplane.codec import WatchEvent
from antrea.apis.controlplane.fastnew import positional_new
from antrea.apis.controlplane.types import (
    Direction,
    IPBlock,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyReference,
    NetworkPolicyRule,
    RuleAction,
)
from antrea.ovs.openflow.flow import Conjunction, LoadReg

values = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=3),
    st.sampled_from(Direction),
    st.sampled_from(RuleAction),
    st.lists(st.text(max_size=2), max_size=2).map(tuple),
    st.frozensets(st.integers(), max_size=2),
)
# (Conjunction and LoadReg derive from the slot-free `Action`)
CLASSES = [
    NetworkPolicyRule,
    NetworkPolicyPeer,
    IPBlock,
    NetworkPolicy,
    NetworkPolicyReference,
    WatchEvent,
    CacheRule,
    CompletedRule,
    Conjunction,
    LoadReg,
]


@given(st.sampled_from(CLASSES), st.data())
def test_same_object_as_the_constructor(cls: type[Any], data: st.DataObject) -> None:
    args = [data.draw(values) for _ in dataclasses.fields(cls)]
    fast, slow = positional_new(cls)(*args), cls(*args)
    assert type(fast) is cls
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert [getattr(fast, f.name) for f in dataclasses.fields(cls)] == args
    assert pickle.loads(pickle.dumps(fast)) == slow
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.__setattr__(dataclasses.fields(cls)[0].name, None)


def test_refuses_what_it_cannot_build_faithfully() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True, slots=True)
    class NotInit:
        a: int
        b: int = dataclasses.field(init=False, default=0)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Derived(NotInit):
        c: int

    class Hooked:
        __slots__ = ()

        def __setattr__(self, name: str, value: Any) -> None:
            raise AttributeError(name)

    @dataclasses.dataclass(frozen=True, slots=True)
    class OnHooked(Hooked):
        a: int

    class WithSlot:
        __slots__ = ("z",)

    @dataclasses.dataclass(frozen=True, slots=True)
    class OnSlot(WithSlot):
        a: int

    for cls in (NoSlots, PostInit, NotInit, Derived, OnHooked, OnSlot, int):
        with pytest.raises(TypeError):
            positional_new(cls)
