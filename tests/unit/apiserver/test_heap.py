"""Large request bodies are handled with the cyclic collector paused, and frozen after."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from antrea.testbed.apiserver import heap


@pytest.fixture(autouse=True)
def collector() -> Iterator[None]:
    assert gc.isenabled()
    yield
    gc.enable()
    gc.unfreeze()


def test_a_small_body_leaves_the_collector_alone() -> None:
    frozen = gc.get_freeze_count()
    with heap.large_body(heap.LARGE_BODY_BYTES - 1):
        assert gc.isenabled()
    with heap.large_body(None):
        assert gc.isenabled()
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_a_large_body_pauses_then_freezes_what_it_left() -> None:
    with heap.large_body(heap.LARGE_BODY_BYTES):
        assert not gc.isenabled()
        kept = [{"cidr": f"10.0.0.{i}/32"} for i in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(kept)
    assert not any(o is kept for o in gc.get_objects())  # frozen: out of every generation


def test_concurrent_large_bodies_resume_the_collector_after_the_last() -> None:
    first, second = heap.large_body(1 << 20), heap.large_body(1 << 20)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_turned_off_elsewhere_stays_off() -> None:
    gc.disable()
    with heap.large_body(1 << 20):
        pass
    assert not gc.isenabled()
