"""deploy/antrea.yml is well-formed and wires the roles the way the code expects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MANIFEST = Path(__file__).resolve().parents[3] / "deploy" / "antrea.yml"


def docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs() if d["kind"] == kind}


def test_every_object_is_namespaced_in_kube_system_or_cluster_scoped() -> None:
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
    for d in docs():
        assert {"apiVersion", "kind", "metadata"} <= d.keys()
        if d["kind"] not in cluster_scoped:
            assert d["metadata"]["namespace"] == "kube-system", d["metadata"]["name"]


def test_agent_and_controller_configs_parse_and_are_mounted() -> None:
    cm = by_kind("ConfigMap")["antrea-config"]
    agent = yaml.safe_load(cm["data"]["antrea-agent.conf"])
    assert agent["ovsBridge"] == "br-int" and agent["apiPort"] == 10350
    ds = by_kind("DaemonSet")["antrea-agent"]["spec"]["template"]["spec"]
    agent_c = next(c for c in ds["containers"] if c["name"] == "antrea-agent")
    assert agent_c["command"][-1] == "/etc/antrea/antrea-agent.conf"
    assert agent_c["securityContext"]["privileged"] is True
    assert ds["hostNetwork"] is True


def test_controller_can_elect_a_leader_and_publish_its_endpoint() -> None:
    rules = by_kind("ClusterRole")["antrea-controller"]["rules"]
    granted = {(r["apiGroups"][0], res) for r in rules for res in r["resources"]}
    assert ("coordination.k8s.io", "leases") in granted
    assert ("", "endpoints") in granted
    assert ("authentication.k8s.io", "tokenreviews") in granted
