"""Agent config: Antrea key names, defaults, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from antrea.agent.config import ConfigError, from_mapping, load_config


def test_defaults_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "nodeName: node7\novsDatapathType: netdev\ntunnelType: geneve\napiPort: 11000\n"
        "disableTXChecksumOffload: true\nsomethingElse: ignored\n"
    )
    cfg = load_config(path)
    assert cfg.nodeName == "node7" and cfg.ovsBridge == "br-int" and cfg.hostGateway == "gw0"
    assert cfg.tunnelType == "geneve" and cfg.encap and cfg.apiPort == 11000
    assert cfg.disableTXChecksumOffload is True
    assert cfg.db_target == "unix:/var/run/openvswitch/db.sock"


def test_node_name_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "from-env")
    path = tmp_path / "agent.yaml"
    path.write_text("")
    assert load_config(path).nodeName == "from-env"


@pytest.mark.parametrize(
    "text",
    ["trafficEncapMode: hybrid", "tunnelType: gre", "apiPort: 0", "apiPort: x", "- a list"],
)
def test_invalid_values_are_rejected(tmp_path: Path, text: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(path)


def test_no_file_means_defaults() -> None:
    cfg = load_config(None)
    assert cfg.ovsBridge == "br-int" and cfg.cniSocket == "/var/run/antrea/cni.sock"


def test_flow_transport_is_native_by_default_and_validated() -> None:
    assert from_mapping({"nodeName": "n"}).flowTransport == "native"
    assert from_mapping({"nodeName": "n", "flowTransport": "ofctl"}).flowTransport == "ofctl"
    with pytest.raises(ConfigError, match="flowTransport"):
        from_mapping({"nodeName": "n", "flowTransport": "grpc"})
