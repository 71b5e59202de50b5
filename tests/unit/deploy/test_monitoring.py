"""deploy/monitoring: the scrape jobs select the manifest's pods and port; the dashboard only
queries series that exist; docs/monitoring.md lists every Antrea series."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from antrea.controller.metrics import ControllerMetrics
from antrea.util.metrics import add_runtime_collectors

REPO = Path(__file__).resolve().parents[3]
MONITORING = REPO / "deploy" / "monitoring"
SERIES = re.compile(r"\b((?:antrea|process|python)_[a-z_]+)")
SUFFIXES = ("_bucket", "_sum", "_count", "_total")


def _declared() -> set[str]:
    """Metric names declared in the source (counters without _total, as prometheus_client)."""
    names: set[str] = set()
    for path in (REPO / "src" / "antrea").rglob("*.py"):
        names.update(re.findall(r'"(antrea_(?:agent|controller)_[a-z_]+)"', path.read_text()))
    registry = CollectorRegistry()
    add_runtime_collectors(registry)
    names.update(SERIES.findall(generate_latest(registry).decode()))
    # Names built at run time (the controller's per-kind counters).
    names.update(SERIES.findall(generate_latest(ControllerMetrics().registry).decode()))
    return names


def _base(name: str, declared: set[str]) -> str:
    if name in declared:
        return name
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in declared:
            return name[: -len(suffix)]
    return name


def _strip(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_scrape_jobs_select_the_manifest_pods() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    docs = list(yaml.safe_load_all((REPO / "deploy" / "antrea.yml").read_text()))
    workloads = {
        d["metadata"]["name"]: d["spec"]["template"]
        for d in docs
        if d and d.get("kind") in ("Deployment", "DaemonSet")
    }
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    for job, workload in (
        ("antrea-agents", "antrea-agent"),
        ("antrea-controllers", "antrea-controller"),
    ):
        template = workloads[workload]
        labels = template["metadata"]["labels"]
        ports = {p.get("name") for c in template["spec"]["containers"] for p in c.get("ports", [])}
        keeps = [r for r in jobs[job]["relabel_configs"] if r.get("action") == "keep"]
        label_rule, port_rule = keeps
        values = ";".join(
            labels.get(s.removeprefix("__meta_kubernetes_pod_label_"), "")
            for s in label_rule["source_labels"]
        )
        assert re.fullmatch(label_rule["regex"], values), (job, values)
        assert any(re.fullmatch(port_rule["regex"], p or "") for p in ports), (job, ports)
        assert jobs[job]["scheme"] == "https"
        assert template["spec"].get("hostNetwork") is True  # pod address = node address


def test_dashboard_queries_only_existing_series() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    declared = _declared()
    queried = {
        _base(name, declared)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in SERIES.findall(target["expr"])
    }
    assert queried - declared == set()
    assert {"antrea_agent_local_pods", "antrea_controller_is_leader"} <= queried


def test_monitoring_doc_lists_every_antrea_series() -> None:
    doc = (REPO / "docs" / "monitoring.md").read_text()
    declared = {_strip(n) for n in _declared() if n.startswith("antrea_")}
    # Counters are documented with their exposed _total name; brace groups expand.
    text = re.sub(
        r"antrea_controller_\{([a-z_,]+)\}_processed_total",
        lambda m: " ".join(f"antrea_controller_{g}_processed_total" for g in m.group(1).split(",")),
        doc,
    )
    text = text.replace(
        "`..._bundle_flow_operations`", "antrea_agent_networkpolicy_bundle_flow_operations"
    )
    text = text.replace(
        "`..._bundle_errors_total`", "antrea_agent_networkpolicy_bundle_errors_total"
    )
    documented = {_strip(n) for n in SERIES.findall(text)}
    missing = declared - documented
    # Per-object-kind count gauges are documented in controller/metrics.py only.
    assert missing <= {"antrea_controller_network_policies", "antrea_controller_address_groups",
                       "antrea_controller_applied_to_groups"}, sorted(missing)  # fmt: skip
