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
