"""The static Tiers every cluster has (upstream's ``emergency`` ... ``baseline``).

The leader creates the ones that are missing when it starts leading (409 = already there); the
compiler knows their priorities even before they exist, so a policy naming a static tier never
waits for this.
"""

from __future__ import annotations

import structlog

from antrea.controller.networkpolicy.compile_antrea import STATIC_TIERS
from antrea.util.kuberest import Conflict, KubeResources

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
