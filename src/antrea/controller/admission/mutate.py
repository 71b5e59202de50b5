"""Defaults the mutating webhook fills in ACNPs and ANNPs, as upstream does.

- ``spec.tier`` missing or empty -> ``application`` (the default tier);
- a rule without a ``name`` gets ``<direction>-<action>-<hash>``, where the hash is of the
  rule's JSON (stable: the same rule keeps its name across updates), made unique within the
  policy.

`policy_patch` answers with the JSON patch operations (RFC 6902) the API server applies.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from antrea.controller.admission.validate import DEFAULT_TIER

JSON = dict[str, Any]


def rule_name(direction: str, rule: JSON, taken: set[str]) -> str:
    action = str(rule.get("action") or "").lower() or "rule"
    body = orjson.dumps(rule, option=orjson.OPT_SORT_KEYS)
    for attempt in range(100):
        digest = hashlib.sha256(body + str(attempt).encode()).hexdigest()[:8]
        name = f"{direction}-{action}-{digest}"
        if name not in taken:
            return name
    raise ValueError("cannot generate a unique rule name")  # pragma: no cover


def policy_patch(obj: JSON) -> list[JSON]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return []
    ops: list[JSON] = []
    if not spec.get("tier"):
        ops.append({"op": "add", "path": "/spec/tier", "value": DEFAULT_TIER})
    taken = {
        str(r.get("name"))
        for d in ("ingress", "egress")
        for r in spec.get(d) or ()
        if isinstance(r, dict) and r.get("name")
    }
    for direction in ("ingress", "egress"):
        rules = spec.get(direction)
        if not isinstance(rules, list):
            continue
        for i, rule in enumerate(rules):
            if isinstance(rule, dict) and not rule.get("name"):
                name = rule_name(direction, rule, taken)
                taken.add(name)
                ops.append({"op": "add", "path": f"/spec/{direction}/{i}/name", "value": name})
    return ops
