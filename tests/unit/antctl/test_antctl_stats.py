"""``antctl get networkpolicystats|antreanetworkpolicystats|antreaclusternetworkpolicystats``:
paths on the controller, tables, JSON/YAML, completion."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml

from antrea.antctl import cli
from antrea.antctl.controller_client import ControllerClient
from antrea.antctl.ops_cmds import completion_script

GV = "/apis/stats.antrea.io/v1alpha1"
ACNP = {
    "apiVersion": "stats.antrea.io/v1alpha1",
    "kind": "AntreaClusterNetworkPolicyStats",
    "metadata": {"name": "allow-web", "uid": "u1"},
    "trafficStats": {"packets": 30, "bytes": 3000, "sessions": 10},
    "ruleTrafficStats": [
        {"name": "let-in", "trafficStats": {"packets": 27, "bytes": 2700, "sessions": 9}},
        {"name": "drop-rest", "trafficStats": {"packets": 3, "bytes": 300, "sessions": 1}},
    ],
}
NPS = {
    "apiVersion": "stats.antrea.io/v1alpha1",
    "kind": "NetworkPolicyStats",
    "metadata": {"name": "np1", "namespace": "web", "uid": "u2"},
    "trafficStats": {"packets": 6, "bytes": 600, "sessions": 2},
}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    data: dict[str, Any] = {
        f"{GV}/antreaclusternetworkpolicystats": {"items": [ACNP]},
        f"{GV}/antreaclusternetworkpolicystats/allow-web": ACNP,
        f"{GV}/networkpolicystats": {"items": [NPS]},
        f"{GV}/namespaces/web/networkpolicystats": {"items": [NPS]},
        f"{GV}/namespaces/web/networkpolicystats/np1": NPS,
        f"{GV}/namespaces/default/antreanetworkpolicystats/x": {**NPS, "ruleTrafficStats": []},
    }

    async def get(self: ControllerClient, path: str, params: Any = None) -> Any:
        seen.append(path)
        return data[path]

    monkeypatch.setattr(ControllerClient, "get", get)
    return seen


def test_cluster_policy_stats_table(calls: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["get", "antreaclusternetworkpolicystats"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "SESSIONS", "PACKETS", "BYTES", "RULES"]
    assert lines[1].split() == ["allow-web", "10", "30", "3000", "let-in=9,drop-rest=1"]
    assert calls == [f"{GV}/antreaclusternetworkpolicystats"]


def test_namespaced_paths(calls: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["get", "networkpolicystats"]) == 0
    assert cli.main(["get", "nps", "-n", "web"]) == 0
    assert cli.main(["get", "networkpolicystats", "np1", "-n", "web"]) == 0
    assert cli.main(["get", "antreanetworkpolicystats", "x"]) == 0  # by name: -n default
    assert calls == [
        f"{GV}/networkpolicystats",
        f"{GV}/namespaces/web/networkpolicystats",
        f"{GV}/namespaces/web/networkpolicystats/np1",
        f"{GV}/namespaces/default/antreanetworkpolicystats/x",
    ]
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAMESPACE", "NAME", "SESSIONS", "PACKETS", "BYTES"]
    assert out[1].split() == ["web", "np1", "2", "6", "600"]


def test_json_and_yaml(calls: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["get", "acnps", "allow-web", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == ACNP
    assert cli.main(["get", "antreaclusternetworkpolicystats", "-o", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == [ACNP]


def test_the_cluster_scoped_kind_takes_no_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["get", "antreaclusternetworkpolicystats", "-n", "web"])


def test_in_bash_completion() -> None:
    prog = f"""{completion_script("bash")}
COMP_WORDS=(antctl get antreac)
COMP_CWORD=2
_antctl
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    out = subprocess.run(["bash", "-c", prog], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["antreaclusternetworkpolicystats"]
    for word in ("networkpolicystats", "antreanetworkpolicystats"):
        assert word in completion_script("bash")
