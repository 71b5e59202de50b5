"""One typed schema per role; unknown keys are ignored with one structured warning."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from antrea.agent.config import AGENT_KEYS, from_mapping, load_config
from antrea.controller.config import CONTROLLER_KEYS, ConfigError, config_from_dict
from antrea.util.config import ConfigError as SharedConfigError


def _unknown(logs: list[MutableMapping[str, Any]]) -> list[tuple[object, object, object]]:
    return [
        (e["role"], e["section"], e["keys"]) for e in logs if e["event"] == "config_unknown_keys"
    ]


def test_agent_warns_once_about_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("nodeName: n1\ntunelType: geneve\nsomethingElse: 1\n")
    with capture_logs() as logs:
        cfg = load_config(path)
    assert cfg.tunnelType == "vxlan"  # the misspelt key did nothing, but it was reported
    assert _unknown(logs) == [("agent", None, ["somethingElse", "tunelType"])]


def test_known_keys_are_silent() -> None:
    with capture_logs() as logs:
        from_mapping({"nodeName": "n1", "trafficEncapMode": "noEncap", "tunnelType": "geneve"})
        config_from_dict({"nodeName": "n1", "controllerAPIPort": 10349})
    assert _unknown(logs) == []


def test_daemon_file_keys_of_the_other_role_are_not_unknown() -> None:
    shared = {"nodeName": "n1", "ovsBridge": "br-int", "leaseDurationSeconds": 15}
    with capture_logs() as logs:
        from_mapping(shared, also_known=CONTROLLER_KEYS)
        config_from_dict(shared, also_known=AGENT_KEYS)
    assert _unknown(logs) == []
    with capture_logs() as logs:
        config_from_dict(shared)
    assert _unknown(logs) == [("controller", None, ["ovsBridge"])]


def test_feature_gates_use_antrea_names() -> None:
    with capture_logs() as logs:
        cfg = from_mapping(
            {"nodeName": "n1", "featureGates": {"AntreaProxy": False, "Egress": True}}
        )
    assert cfg.antreaProxy is False
    assert _unknown(logs) == [("agent", "featureGates", ["Egress"])]
    assert from_mapping({"nodeName": "n1", "featureGates": {"AntreaProxy": True}}).antreaProxy
    with pytest.raises(SharedConfigError, match="featureGates"):
        from_mapping({"nodeName": "n1", "featureGates": ["AntreaProxy"]})


@pytest.mark.parametrize(
    "raw",
    [
        {"controllerAPIPort": "x"},
        {"controllerAPIPort": 70000},
        {"leaseDurationSeconds": "soon"},
        {"retryPeriodSeconds": 0},
    ],
)
def test_controller_values_are_typed(raw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        config_from_dict({"nodeName": "n1", **raw})


def test_controller_rejects_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    from antrea.controller.config import load_controller_config

    path = tmp_path / "c.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError):
        load_controller_config(path)
    assert load_controller_config(None).controller_api_port == 10349
