"""`antrea lab up --kubernetes real` without Kubernetes binaries: a clear error, nothing made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.skipif(os.geteuid() != 0, reason="the root check comes first")
def test_missing_binaries_are_named_and_nothing_is_created(tmp_path: Path) -> None:
    env = dict(os.environ, ANTREA_LAB_ROOT=str(tmp_path / "labs"))
    proc = subprocess.run(
        [sys.executable, "-m", "antrea.cmd.antrea", "lab", "up", "--kubernetes", "real",
         "--nodes", "2", "--name", "nobins", "--k8s-bin", str(tmp_path / "empty")],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "kube-apiserver" in proc.stderr and "--k8s-bin" in proc.stderr, proc.stderr
    assert not (tmp_path / "labs" / "nobins").exists()


def test_lab_manifest_sets_the_real_labs_configmap_options(tmp_path: Path) -> None:
    import yaml

    from antrea.testbed.lab import state

    env = dict(os.environ, ANTREA_LAB_ROOT=str(tmp_path))
    os.environ["ANTREA_LAB_ROOT"] = str(tmp_path)
    try:
        spec = state.plan(name="m1", nodes=2, cni="antrea", encap="vxlan")
        spec.kubernetes = "real"
        spec.path.mkdir(parents=True)
        spec.save()
    finally:
        del os.environ["ANTREA_LAB_ROOT"]
    proc = subprocess.run(
        [sys.executable, "-m", "antrea.cmd.antrea", "lab", "manifest", "--name", "m1",
         "--encap-mode", "noEncap"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert {d["kind"] for d in docs} >= {"DaemonSet", "Deployment", "ConfigMap"}
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    agent = yaml.safe_load(cm["data"]["antrea-agent.conf"])
    assert agent["ovsDatapathType"] == "netdev" and agent["disableTXChecksumOffload"] is True
    assert agent["trafficEncapMode"] == "noEncap"
    assert agent["kubeAPIServerOverride"] == "https://172.30.0.1:6443"
    ctrl = yaml.safe_load(cm["data"]["antrea-controller.conf"])
    assert ctrl["kubeAPIServerOverride"] == "https://172.30.0.1:6443"


def test_the_overrides_configmap_over_the_shipped_config_is_the_labs(tmp_path: Path) -> None:
    """What `lab up --kubernetes real` writes (ConfigMap antrea-config-overrides), read over
    deploy/antrea.yml's antrea-config as the pods read them (--config-overrides)."""
    import yaml

    from antrea.agent.config import from_mapping
    from antrea.controller.config import config_from_dict
    from antrea.testbed.lab import state
    from antrea.testbed.lab.realk8s import install
    from antrea.util.config import read_with_overrides

    spec = state.plan(name="m2", nodes=2, cni="antrea", encap="vxlan")
    shipped = next(
        d
        for d in yaml.safe_load_all(install.MANIFEST.read_text())
        if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "antrea-config"
    )
    for mode in ("encap", "noEncap"):
        cm = install.overrides(spec, encap_mode=mode)
        assert cm["metadata"] == {**cm["metadata"], "name": "antrea-config-overrides",
                                  "namespace": "kube-system"}  # fmt: skip
        for key in ("antrea-agent.conf", "antrea-controller.conf"):
            (tmp_path / f"base-{key}").write_text(shipped["data"][key])
            (tmp_path / f"over-{key}").write_text(cm["data"][key])
        base, over = tmp_path / "base-antrea-agent.conf", tmp_path / "over-antrea-agent.conf"
        agent = from_mapping(read_with_overrides(base, over))
        assert agent.ovsDatapathType == "netdev" and agent.disableTXChecksumOffload
        assert agent.kubeAPIServerOverride == "https://172.30.0.1:6443"
        assert agent.trafficEncapMode == mode
        base, over = (
            tmp_path / "base-antrea-controller.conf",
            tmp_path / "over-antrea-controller.conf",
        )
        ctrl = config_from_dict(read_with_overrides(base, over))
        assert ctrl.kube_api_server_override == "https://172.30.0.1:6443"
