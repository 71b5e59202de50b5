"""The agent's and the controller's /metrics pass `promtool check metrics` (Prometheus' linter:
HELP on every metric, counters end in _total, no _count/_total on gauges, ...).

Every metric family is exercised (labels set, histograms observed) so that the text holds all
of them; the end-to-end check on a running lab is in tests/e2e/test_lab_antrea.py.
"""

from __future__ import annotations

import shutil
import subprocess

from prometheus_client import CollectorRegistry, generate_latest

from antrea.agent.apiserver import AgentMetrics
from antrea.agent.cniserver.server import CNIMetrics
from antrea.agent.networkpolicy.metrics import PolicyMetrics
from antrea.apis.controlplane.types import Direction
from antrea.controller.metrics import ControllerMetrics
from antrea.util.metrics import add_runtime_collectors


def promtool(text: bytes) -> None:
    exe = shutil.which("promtool")
    assert exe, "promtool missing: bash bin/setup installs Debian's prometheus package"
    proc = subprocess.run(
        [exe, "check", "metrics"], input=text, capture_output=True, check=False, timeout=30
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()


def test_agent_metrics_pass_promtool() -> None:
    registry = CollectorRegistry()
    m = AgentMetrics(registry)
    m.flow_count.labels("0", "Classification").set(3)
    m.total_flows.set(3)
    m.local_pods.set(1)
    m.count_errors("bundle", 2)
    m.bundle_duration.observe(0.01)
    m.bundle_size.observe(10)
    m.round.set(4)
    CNIMetrics(registry)
    live = {"rules": {Direction.IN: 1, Direction.OUT: 2}, "policies": 1, "rule_errors": 0,
            "flows": 7, "initial_sync_seconds": 0.5}  # fmt: skip
    pm = PolicyMetrics(registry, lambda: live)
    pm.rule_failures.labels("apply").inc()
    text = generate_latest(registry)
    assert b"antrea_agent_ovs_flows{" in text and b"antrea_agent_networkpolicies " in text
    promtool(text)


def test_controller_metrics_pass_promtool() -> None:
    m = ControllerMetrics()
    text = generate_latest(m.registry)
    assert b"process_resident_memory_bytes " in text and b"python_info{" in text
    promtool(text)


def test_runtime_collectors_pass_promtool() -> None:
    """process_*, python_info and python_gc_* (what the agent and the controller add)."""
    registry = CollectorRegistry()
    add_runtime_collectors(registry)
    text = generate_latest(registry)
    for name in (b"process_cpu_seconds_total", b"process_open_fds", b"python_gc_objects_collected"):
        assert name in text
    promtool(text)
