"""`gcpause.paused`: the collector is off inside, back on after, and a large step is frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from antrea.util import gcpause


@pytest.fixture(autouse=True)
def collector() -> Iterator[None]:
    gc.enable()
    gc.unfreeze()
    yield
    gc.enable()
    gc.unfreeze()


def test_a_large_step_is_frozen() -> None:
    with gcpause.paused(freeze_after=1000):
        assert not gc.isenabled()
        kept = [{"cidr": f"10.0.{i // 256}.{i % 256}/32"} for i in range(5000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(kept)


def test_a_small_step_is_not_frozen() -> None:
    with gcpause.paused(freeze_after=100_000):
        kept = [{"a": [i]} for i in range(100)]
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert len(kept) == 100


def test_nested_and_already_off_collectors_are_left_alone() -> None:
    with gcpause.paused(freeze_after=10):
        with gcpause.paused(freeze_after=10):
            kept = [[i] for i in range(100)]
        assert not gc.isenabled() and gc.get_freeze_count() == 0  # the outer one decides
    assert gc.isenabled() and gc.get_freeze_count() >= len(kept)
    gc.disable()
    with gcpause.paused():
        pass
    assert not gc.isenabled()
