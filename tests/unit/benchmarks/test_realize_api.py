"""benchmarks/realize.py, API-clocked run: the policy split and the report's JSON contract.

The benchmark itself needs root and a lab; these checks keep its pure parts honest in CI.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "realize.py"


@pytest.fixture(scope="module")
def realize() -> ModuleType:
    if str(SCRIPT.parent) not in sys.path:  # the script imports its sibling project_env
        sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("bench_realize", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("rules", "policies"), [(1, 1), (2500, 1), (5000, 2), (15000, 6)])
def test_rules_split_over_fewest_policies(realize: Any, rules: int, policies: int) -> None:
    shape = realize.api_shape(rules)
    assert len(shape) == policies
    assert sum(len(c) for c in shape) == rules
    assert all(len(c) <= realize.API_RULES_PER_POLICY for c in shape)
    body = realize.api_policy(1, shape[0])
    assert body["spec"]["podSelector"] == {"matchLabels": {"pod": "p1"}}
    assert body["spec"]["ingress"][0] == {"from": [{"ipBlock": {"cidr": shape[0][0]}}]}


async def test_expected_flows_three_per_rule_plus_per_pod(realize: Any) -> None:
    # distinct CIDRs: per rule a clause, an action and a metric flow; per pod a reg1 clause
    # flow and an isolation drop
    shape = [["10.1.0.0/16", "10.2.0.0/16"], ["10.3.0.0/16"]]
    assert await realize.api_expected_flows(shape) == 3 * 3 + 2 * 2


def test_api_runs_merge_keeps_json_contract(realize: Any) -> None:
    report: dict[str, Any] = {
        "rules": 10, "seconds": 0.2, "floor_seconds": 0.1, "ratio": 2.0, "flows": 40,
        "runs": [{"rules": 10, "seconds": 0.2, "floor_seconds": 0.1, "ratio": 2.0}],
    }  # fmt: skip
    api = {"rules": 10, "api_seconds": 0.3, "api_complete": True, "policies": 1,
           "api_flows_added": 40, "api_flows_expected": 40}  # fmt: skip
    realize.add_api_runs(report, [dict(api, single_policy_accepted=True)])
    assert report["seconds"] == 0.2 and report["ratio"] == 2.0 and report["flows"] == 40
    assert report["api_seconds"] == 0.3
    assert report["api_ratio"] == 3.0
    assert report["runs"][0]["api_ratio"] == 3.0
    assert report["single_policy_accepted"] is True
