"""`read_with_overrides`: a cluster's own settings (the optional ConfigMap
antrea-config-overrides) put over the manifest's configuration file."""

from __future__ import annotations

from pathlib import Path

import pytest

from antrea.agent.config import from_mapping
from antrea.controller.config import config_from_dict
from antrea.util.config import ConfigError, read_with_overrides

BASE = """
ovsDatapathType: system
disableTXChecksumOffload: false
kubeAPIServerOverride: ""
trafficEncapMode: encap
featureGates: {AntreaProxy: true, NetworkPolicyStats: true}
"""


def test_the_overrides_replace_only_their_keys(tmp_path: Path) -> None:
    (tmp_path / "base.conf").write_text(BASE)
    (tmp_path / "over.conf").write_text(
        "ovsDatapathType: netdev\ndisableTXChecksumOffload: true\n"
        "kubeAPIServerOverride: https://172.30.0.1:6443\nfeatureGates: {AntreaProxy: false}\n"
    )
    data = read_with_overrides(tmp_path / "base.conf", tmp_path / "over.conf")
    assert data["featureGates"] == {"AntreaProxy": False, "NetworkPolicyStats": True}
    cfg = from_mapping(data)
    assert cfg.ovsDatapathType == "netdev" and cfg.disableTXChecksumOffload
    assert cfg.kubeAPIServerOverride == "https://172.30.0.1:6443"
    assert cfg.trafficEncapMode == "encap"  # not overridden
    ctrl = config_from_dict(read_with_overrides(tmp_path / "base.conf", tmp_path / "over.conf"))
    assert ctrl.kube_api_server_override == "https://172.30.0.1:6443"


def test_no_overrides_file_means_the_manifest_alone(tmp_path: Path) -> None:
    """The ConfigMap is optional: kubelet then mounts an empty directory."""
    (tmp_path / "base.conf").write_text(BASE)
    data = read_with_overrides(tmp_path / "base.conf", tmp_path / "overrides" / "agent.conf")
    assert data["ovsDatapathType"] == "system"
    assert read_with_overrides(tmp_path / "base.conf", None) == data


def test_bad_overrides_are_an_error_not_ignored(tmp_path: Path) -> None:
    (tmp_path / "base.conf").write_text(BASE)
    (tmp_path / "over.conf").write_text("- not a mapping\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_with_overrides(tmp_path / "base.conf", tmp_path / "over.conf")
    (tmp_path / "over.conf").write_text("trafficEncapMode: sideways\n")
    with pytest.raises(ConfigError, match="trafficEncapMode"):
        from_mapping(read_with_overrides(tmp_path / "base.conf", tmp_path / "over.conf"))
