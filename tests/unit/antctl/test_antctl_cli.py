"""antctl: table rendering, formats, aliases, and the controller commands over a faked client."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from antrea.antctl import cli, controller_cmds
from antrea.antctl.controller_client import ControllerClient
from antrea.antctl.output import Column, emit, summarize, table

NP = {
    "metadata": {"name": "uid-1"},
    "sourceRef": {
        "type": "K8sNetworkPolicy",
        "namespace": "default",
        "name": "web",
        "uid": "uid-1",
    },
    "rules": [{"direction": "In"}, {"direction": "Out"}],
    "appliedToGroups": ["atg-a"],
    "span": ["node1", "node2"],
    "status": {"phase": "Realized", "currentNodesRealized": 2, "desiredNodesRealized": 2},
}
AG = {
    "metadata": {"name": "ag-1"},
    "groupMembers": [
        {"pod": {"namespace": "x", "name": f"p{i}"}, "ips": [f"10.0.0.{i}"]} for i in range(5)
    ],
    "span": ["node1"],
}


def test_table_pads_columns_by_three() -> None:
    out = table(["NAME", "X"], [["a", "1"], ["longer", "2"]])
    assert out == "NAME     X\na        1\nlonger   2\n"


def test_summarize_and_empty_cells() -> None:
    assert summarize(["a", "b", "c", "d", "e"]) == "a,b,c + 2 more..."
    assert summarize([]) == "<none>"
    cols = [Column("A", lambda o: o.get("a")), Column("B", lambda o: o.get("b"))]
    out: list[str] = []

    class W:
        def write(self, s: str) -> None:
            out.append(s)

    emit([{"a": "x"}], "table", cols, out=W())  # type: ignore[arg-type]
    assert out == ["A   B\nx   <none>\n"]


@pytest.fixture
def fake_get(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = []
    data = {
        "/apis/controlplane.antrea.io/v1beta2/networkpolicies": {"items": [NP]},
        "/apis/controlplane.antrea.io/v1beta2/networkpolicies/uid-1": NP,
        "/apis/controlplane.antrea.io/v1beta2/addressgroups": {"items": [AG]},
        "/apis/controlplane.antrea.io/v1beta2/appliedtogroups": {"items": []},
        "/apis/system.antrea.io/v1beta1/controllerinfo": {
            "nodeName": "node1",
            "leader": "node1",
            "servingStatus": "serving",
            "networkPolicyCount": 1,
            "addressGroupCount": 1,
            "appliedToGroupCount": 1,
            "connectedAgentCount": 2,
        },
    }

    async def get(self: ControllerClient, path: str, params: Any = None) -> Any:
        calls.append((path, params))
        return data[path]

    monkeypatch.setattr(ControllerClient, "get", get)
    return calls


def test_get_networkpolicy_table(fake_get: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["get", "netpol"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "APPLIED-TO",
        "RULES",
        "SOURCE",
        "NODES-REALIZED",
        "SPAN",
        "TIER-PRIORITY",
        "PRIORITY",
    ]
    assert lines[1].split() == [
        "uid-1",
        "atg-a",
        "2",
        "K8sNetworkPolicy:default/web",
        "2/2",
        "node1,node2",
        "<none>",
        "<none>",
    ]


def test_get_networkpolicy_by_name_json_and_yaml(
    fake_get: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["get", "networkpolicy", "uid-1", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == NP
    assert cli.main(["-o", "yaml", "get", "np", "uid-1"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == NP


def test_namespace_filter_and_node_param(fake_get: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["get", "netpol", "-n", "other"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "No resources found" in captured.err
    assert cli.main(["get", "ag", "--node", "node1"]) == 0
    assert fake_get[-1] == (
        "/apis/controlplane.antrea.io/v1beta2/addressgroups",
        {"nodeName": "node1"},
    )
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["ag-1", "10.0.0.0,10.0.0.1,10.0.0.2", "+", "2", "more...", "node1"]


def test_controllerinfo(fake_get: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["get", "ci"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["NODE", "LEADER", "STATUS"]
    assert lines[1].split() == ["node1", "node1", "serving", "1", "1", "1", "2"]


def test_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["get", "ci", "--kubeconfig", "/nonexistent/kubeconfig"]) == 1
    assert capsys.readouterr().err.startswith("error: kubeconfig /nonexistent/kubeconfig")


def test_agent_commands_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    mod = types.ModuleType("antrea.antctl.agent_cmds")
    seen: list[Any] = []

    def register(get_sub: Any, top_sub: Any) -> None:
        p = get_sub.add_parser("agentinfo", parents=[cli.common_parent()])
        p.set_defaults(func=lambda args: seen.append(args.output) or 0)
        seen.append("registered")

    mod.register = register  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "antrea.antctl.agent_cmds", mod)
    assert cli.main(["get", "agentinfo", "-o", "json"]) == 0
    assert seen == ["registered", "json"]
    assert controller_cmds.RESOURCES["networkpolicy"][0] == "networkpolicies"
