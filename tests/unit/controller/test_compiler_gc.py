"""A compiler batch that leaves many new objects freezes them (the collector skips them)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from antrea.controller.networkpolicy import NetworkPolicyController
from antrea.controller.networkpolicy import controller as npc


def policy(rules: int) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "x", "name": "np", "uid": "uid-np", "generation": 1},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"ipBlock": {"cidr": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}/32"}}]}
                for i in range(rules)
            ],
        },
    }


@pytest.fixture(autouse=True)
def collector() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_large_batch_freezes_what_it_left(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(npc, "FREEZE_AFTER_OBJECTS", 1000)
    c = NetworkPolicyController()
    c.add_namespace({"metadata": {"name": "x"}})
    with c.batch():
        assert not gc.isenabled()
        c.add_network_policy(policy(3000))
    assert gc.isenabled()
    assert gc.get_freeze_count() > 3000


def test_a_small_batch_does_not_freeze(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(npc, "FREEZE_AFTER_OBJECTS", 10**9)
    c = NetworkPolicyController()
    c.add_namespace({"metadata": {"name": "x"}})
    with c.batch():
        c.add_network_policy(policy(3000))
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
