"""The controller's list/get API views (what antctl prints): the shared control-plane views of
`antrea.apis.controlplane.views`, plus what only the controller knows: each object's ``span``
and, for policies, the aggregated realization ``status``.
"""

from __future__ import annotations

from typing import Any

from antrea.apis.controlplane.types import (
    AddressGroup,
    AppliedToGroup,
    ControlPlaneObject,
    NetworkPolicy,
)
from antrea.apis.controlplane.views import group_json, object_kind, policy_json
from antrea.controller.status import PolicyStatus


def object_json(
    obj: ControlPlaneObject, span: frozenset[str], status: PolicyStatus | None = None
) -> dict[str, Any]:
    if isinstance(obj, NetworkPolicy):
        out = policy_json(obj)
        out["span"] = sorted(span)
        if status is not None:
            out["status"] = {
                "phase": status.phase,
                "currentNodesRealized": status.current,
                "desiredNodesRealized": status.desired,
                **({"failedNodes": list(status.failed)} if status.failed else {}),
                **(
                    {"failures": [{"node": n, "message": m} for n, m in status.messages]}
                    if status.messages
                    else {}
                ),
            }
        return out
    assert isinstance(obj, AddressGroup | AppliedToGroup)
    return {**group_json(object_kind(obj), obj.name, obj.members), "span": sorted(span)}
