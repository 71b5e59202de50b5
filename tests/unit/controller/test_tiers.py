"""Static Tiers are created; referenced and static Tiers carry a finalizer (not deletable)."""

from __future__ import annotations

import copy
from typing import Any

from antrea.controller.networkpolicy import NetworkPolicyController
from antrea.controller.tiers import (
    TIER_FINALIZER,
    TIERS_PATH,
    ensure_static_tiers,
    sync_tier_finalizers,
)
from antrea.k8s.resources import Conflict


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.writes = 0

    async def get(self, path: str) -> dict[str, Any] | None:
        obj = self.objects.get(path)
        return copy.deepcopy(obj) if obj is not None else None

    async def create(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        path = f"{collection}/{body['metadata']['name']}"
        if path in self.objects:
            raise Conflict(409, "exists")
        self.objects[path] = copy.deepcopy(body)
        self.writes += 1
        return body

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.objects[path] = copy.deepcopy(body)
        self.writes += 1
        return body


def _fins(kube: FakeKube, name: str) -> list[str]:
    return kube.objects[f"{TIERS_PATH}/{name}"]["metadata"].get("finalizers") or []


async def test_static_tiers_and_finalizers_follow_references() -> None:
    kube = FakeKube()
    assert await ensure_static_tiers(kube) == 6
    assert await ensure_static_tiers(kube) == 0  # idempotent
    await kube.create(TIERS_PATH, {"metadata": {"name": "mine"}, "spec": {"priority": 20}})
    c = NetworkPolicyController()
    c.add_tier({"metadata": {"name": "mine"}, "spec": {"priority": 20}})
    policy = {
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "p", "uid": "u1"},
        "spec": {"priority": 1, "tier": "mine", "appliedTo": [{"podSelector": {}}],
                 "ingress": [{"action": "Drop"}]},
    }  # fmt: skip
    c.add_cluster_network_policy(policy)
    await sync_tier_finalizers(kube, c.antrea_ctx.tiers, c.referenced_tiers())
    assert TIER_FINALIZER in _fins(kube, "mine")
    assert TIER_FINALIZER in _fins(kube, "baseline")  # static: never deleted
    writes = kube.writes
    await sync_tier_finalizers(kube, c.antrea_ctx.tiers, c.referenced_tiers())
    assert kube.writes == writes  # nothing to change
    c.delete_cluster_network_policy(policy)
    await sync_tier_finalizers(kube, c.antrea_ctx.tiers, c.referenced_tiers())
    assert TIER_FINALIZER not in _fins(kube, "mine")
    assert TIER_FINALIZER in _fins(kube, "application")
