"""The static Tiers every cluster has (upstream's ``emergency`` ... ``baseline``).

The leader creates the ones that are missing when it starts leading (409 = already there); the
compiler knows their priorities even before they exist, so a policy naming a static tier never
waits for this.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from antrea.controller.networkpolicy.compile_antrea import STATIC_TIERS
from antrea.k8s.resources import Conflict, KubeResources

log = structlog.get_logger(__name__)

TIERS_PATH = "/apis/crd.antrea.io/v1beta1/tiers"
_DESCRIPTIONS = {
    "emergency": "[READ-ONLY]: System generated Emergency Tier",
    "securityops": "[READ-ONLY]: System generated SecurityOps Tier",
    "networkops": "[READ-ONLY]: System generated NetworkOps Tier",
    "platform": "[READ-ONLY]: System generated Platform Tier",
    "application": "[READ-ONLY]: System generated Application Tier",
    "baseline": "[READ-ONLY]: System generated Baseline Tier",
}


async def ensure_static_tiers(kube: KubeResources) -> int:
    """Create the missing static Tiers; returns how many were created."""
    created = 0
    for name, priority in STATIC_TIERS.items():
        body = {
            "apiVersion": "crd.antrea.io/v1beta1",
            "kind": "Tier",
            "metadata": {"name": name},
            "spec": {"priority": priority, "description": _DESCRIPTIONS[name]},
        }
        try:
            await kube.create(TIERS_PATH, body)
            created += 1
        except Conflict:
            continue
    if created:
        log.info("static_tiers_created", count=created)
    return created


TIER_FINALIZER = "crd.antrea.io/tier-in-use"


async def sync_tier_finalizers(
    kube: KubeResources, tiers: Iterable[str], referenced: set[str]
) -> int:
    """Keep a finalizer on every Tier a policy references, and on the static Tiers.

    Without an admission webhook refusing the deletion, this is what keeps a referenced Tier:
    `kubectl delete tier` only marks it (Terminating) and the policies keep their order; once no
    policy references it any more the finalizer is removed and the deletion completes. Static
    Tiers are never deleted. Returns how many Tiers were updated.
    """
    updated = 0
    for name in sorted(set(tiers)):
        path = f"{TIERS_PATH}/{name}"
        obj = await kube.get(path)
        if obj is None:
            continue
        meta = obj.setdefault("metadata", {})
        fins: list[str] = list(meta.get("finalizers") or [])
        want = name in referenced or name in STATIC_TIERS
        if want == (TIER_FINALIZER in fins):
            continue
        meta["finalizers"] = (
            [*fins, TIER_FINALIZER] if want else [f for f in fins if f != TIER_FINALIZER]
        )
        try:
            await kube.replace(path, obj)
            updated += 1
        except Conflict:
            continue  # changed meanwhile: the next round sees it
    if updated:
        log.info("tier_finalizers_synced", updated=updated)
    return updated
