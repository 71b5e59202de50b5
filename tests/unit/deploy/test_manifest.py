"""deploy/antrea.yml is well-formed and wires the roles the way the code expects."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml

from antrea.agent.config import DATAPATH_TYPES, from_mapping
from antrea.cmd import manifest
from antrea.controller.config import config_from_dict

MANIFEST = Path(__file__).resolve().parents[3] / "deploy" / "antrea.yml"


def docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs() if d["kind"] == kind}


def test_every_object_is_namespaced_in_kube_system_or_cluster_scoped() -> None:
    # Roles live in kube-system; CRDs are cluster-scoped.
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    }
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
    cmd = agent_c["command"]
    assert cmd[cmd.index("--config") + 1] == "/etc/antrea/antrea-agent.conf"
    # the cluster's own settings: the optional ConfigMap antrea-config-overrides, if created
    assert cmd[cmd.index("--config-overrides") + 1] == "/etc/antrea/overrides/antrea-agent.conf"
    mounts = {m["name"]: m["mountPath"] for m in agent_c["volumeMounts"]}
    assert mounts["antrea-config-overrides"] == "/etc/antrea/overrides"
    volumes = {v["name"]: v for v in ds["volumes"]}
    assert volumes["antrea-config-overrides"]["configMap"] == {
        "name": "antrea-config-overrides", "optional": True}  # fmt: skip
    assert agent_c["securityContext"]["privileged"] is True
    assert ds["hostNetwork"] is True


def test_controller_can_elect_a_leader_and_publish_its_endpoint() -> None:
    rules = [
        *by_kind("ClusterRole")["antrea-controller"]["rules"],
        *by_kind("Role")["antrea-controller"]["rules"],
    ]
    granted = {(r["apiGroups"][0], res) for r in rules for res in r["resources"]}
    assert ("coordination.k8s.io", "leases") in granted
    assert ("", "endpoints") in granted
    assert ("authentication.k8s.io", "tokenreviews") in granted


# --- what a real cluster needs (issue 8) ------------------------------------------------------

PYPROJECT = MANIFEST.parents[1] / "pyproject.toml"


def config_checksum() -> str:
    """sha256 of the antrea-config ConfigMap's data (keys sorted, compact JSON)."""
    return manifest.config_checksum(by_kind("ConfigMap")["antrea-config"]["data"])


def workloads() -> list[dict[str, Any]]:
    return [by_kind("DaemonSet")["antrea-agent"], by_kind("Deployment")["antrea-controller"]]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_pods_roll_when_the_config_changes() -> None:
    want = config_checksum()
    for w in workloads():
        got = w["spec"]["template"]["metadata"]["annotations"].get("checksum/config")
        assert got == want, (
            f"{w['metadata']['name']}: checksum/config should be {want} "
            "(`antrea manifest -f deploy/antrea.yml` prints the manifest with it)"
        )


def test_images_carry_the_project_version_and_are_not_pulled_when_present() -> None:
    version = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    for w in workloads():
        for c in containers(w):
            assert c["image"] == f"antrea/antrea:{version}", c["name"]
            assert c["imagePullPolicy"] == "IfNotPresent", c["name"]
            assert c["resources"]["requests"].keys() >= {"cpu", "memory"}, c["name"]


def test_probes_hit_the_endpoints_the_code_serves() -> None:
    agent = by_kind("DaemonSet")["antrea-agent"]["spec"]["template"]["spec"]
    ctrl = by_kind("Deployment")["antrea-controller"]["spec"]["template"]["spec"]
    agent_c = next(c for c in agent["containers"] if c["name"] == "antrea-agent")
    ctrl_c = ctrl["containers"][0]
    for c, port in ((agent_c, 10350), (ctrl_c, 10349)):
        assert c["ports"][0] == {"name": "api", "containerPort": port, "protocol": "TCP"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "api", "scheme": "HTTPS"}
        assert c["readinessProbe"]["httpGet"] == {
            "path": "/readyz",
            "port": "api",
            "scheme": "HTTPS",
        }
    ovs = next(c for c in agent["containers"] if c["name"] == "antrea-ovs")
    assert ovs["command"] == ["start_ovs"] and "livenessProbe" in ovs
    start_ovs = (MANIFEST.parents[1] / "containers" / "start_ovs").read_text()
    assert start_ovs.index("flow-restore-wait=true") < start_ovs.index("ovs-vswitchd --pidfile")


def test_only_the_leader_writes_the_antrea_endpoints() -> None:
    svc = by_kind("Service")["antrea"]
    assert "selector" not in svc["spec"], "a selector makes the endpoints controller a writer"
    assert svc["spec"]["ports"][0]["name"] == "https"  # the port name agents look up


def test_strategies_suit_host_network_replicas() -> None:
    dep = by_kind("Deployment")["antrea-controller"]["spec"]
    assert dep["strategy"]["rollingUpdate"]["maxSurge"] == 0
    ds = by_kind("DaemonSet")["antrea-agent"]["spec"]
    assert ds["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}


def test_priority_classes_tolerations_and_xtables_lock() -> None:
    agent = by_kind("DaemonSet")["antrea-agent"]["spec"]["template"]["spec"]
    ctrl = by_kind("Deployment")["antrea-controller"]["spec"]["template"]["spec"]
    assert agent["priorityClassName"] == "system-node-critical"
    assert ctrl["priorityClassName"] == "system-cluster-critical"
    assert {"effect": "NoSchedule", "operator": "Exists"} in agent["tolerations"]
    assert {"key": "CriticalAddonsOnly", "operator": "Exists"} in ctrl["tolerations"]
    vols = {v["name"]: v for v in agent["volumes"]}
    assert vols["xtables-lock"]["hostPath"] == {"path": "/run/xtables.lock", "type": "FileOrCreate"}
    agent_c = next(c for c in agent["containers"] if c["name"] == "antrea-agent")
    assert {"name": "xtables-lock", "mountPath": "/run/xtables.lock"} in agent_c["volumeMounts"]


def test_install_cni_init_container_writes_to_the_host_dirs() -> None:
    agent = by_kind("DaemonSet")["antrea-agent"]["spec"]["template"]["spec"]
    (init,) = agent["initContainers"]
    assert init["command"][:2] == ["antrea", "install-cni"]
    mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    vols = {v["name"]: v["hostPath"]["path"] for v in agent["volumes"] if "hostPath" in v}
    assert vols[mounts["/host/opt/cni/bin"]] == "/opt/cni/bin"
    assert vols[mounts["/host/etc/cni/net.d"]] == "/etc/cni/net.d"


def test_datapath_and_api_server_override_options_parse() -> None:
    cm = by_kind("ConfigMap")["antrea-config"]["data"]
    agent = yaml.safe_load(cm["antrea-agent.conf"])
    assert agent["ovsDatapathType"] == "system"
    for datapath in DATAPATH_TYPES:
        cfg = from_mapping(
            agent | {"ovsDatapathType": datapath, "kubeAPIServerOverride": "https://10.0.0.1:6443"}
        )
        assert cfg.ovsDatapathType == datapath
        assert cfg.kubeAPIServerOverride == "https://10.0.0.1:6443"
    ctrl = yaml.safe_load(cm["antrea-controller.conf"])
    assert config_from_dict(ctrl).kube_api_server_override is None  # "" = in-cluster
    assert (
        config_from_dict(
            ctrl | {"kubeAPIServerOverride": "https://a:6443"}
        ).kube_api_server_override
        == "https://a:6443"
    )


def test_manifest_command_sets_the_options_and_rolls_the_pods() -> None:
    text = MANIFEST.read_text()
    assert manifest.render(text) == text  # no option: unchanged (checksums already right)
    out = manifest.render(text, datapath="netdev", kube_api_server="https://172.30.0.1:6443")
    got = {d["metadata"]["name"]: d for d in yaml.safe_load_all(out) if d}
    data = got["antrea-config"]["data"]
    agent = from_mapping(yaml.safe_load(data["antrea-agent.conf"]))
    assert agent.ovsDatapathType == "netdev" and agent.disableTXChecksumOffload
    assert agent.kubeAPIServerOverride == "https://172.30.0.1:6443"
    ctrl = config_from_dict(yaml.safe_load(data["antrea-controller.conf"]))
    assert ctrl.kube_api_server_override == "https://172.30.0.1:6443"
    want = manifest.config_checksum(data)
    assert want != config_checksum()
    for name in ("antrea-agent", "antrea-controller"):
        annotations = got[name]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["checksum/config"] == want
    assert "# system: the openvswitch kernel module" in out  # comments kept
