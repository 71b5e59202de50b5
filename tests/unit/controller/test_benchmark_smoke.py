"""The scale benchmark's code path at a small size, so it cannot rot, checked against the oracle."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from npc_helpers import feed_world, snapshot
from npc_reference import compute

from antrea.controller.networkpolicy import NetworkPolicyController

BENCHMARK = Path(__file__).parents[3] / "benchmarks" / "controller_scale.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("controller_scale", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_controller_scale_benchmark_small() -> None:
    module = _load()
    result = module.run(50, nodes=20, ops=50, seed=3)
    assert result["pods"] == 200
    assert result["policies"] == 150
    # Per namespace: 3 AppliedToGroups (all pods, app-1, app-2), 2 AddressGroups (app-1, app-2).
    assert result["applied_to_groups"] == 150
    assert result["address_groups"] == 100
    assert result["internal_policies"] == 150
    assert result["changes"] == 400
    for key in ("seconds", "peak_rss_mb", "pod_update_median_ms", "pod_update_p99_ms"):
        assert result[key] > 0
    assert "above_input_peak_mb" in result and "above_input_retained_mb" in result
    assert "traced_peak_mb" not in result
    traced = module.run(20, nodes=5, ops=5, seed=3, trace=True)
    assert traced["traced_peak_mb"] >= traced["traced_retained_mb"] > 0
    assert module.main(["--namespaces", "5", "--nodes", "3", "--ops", "5"]) == 0


def test_benchmark_world_compiles_like_the_reference() -> None:
    ns_list, pods, policies = _load().generate(20, 7, 5)
    controller = NetworkPolicyController()
    namespaces = {ns["metadata"]["name"]: ns["metadata"]["labels"] for ns in ns_list}
    feed_world(controller, namespaces, pods, policies)
    assert snapshot(controller) == compute(namespaces, pods, policies)
