"""antctl for Antrea-native policies: ``get networkpolicy -T``, ``--sort-by=effectivePriority``,
``get tier``."""

from __future__ import annotations

from typing import Any

import pytest

from antrea.antctl import cli, controller_cmds
from antrea.antctl.controller_client import ControllerClient


def np(uid: str, typ: str, name: str, tier: int | None = None, prio: float | None = None) -> Any:
    out: dict[str, Any] = {
        "metadata": {"name": uid},
        "sourceRef": {"type": typ, "namespace": "ns" if typ != "AntreaClusterNetworkPolicy" else "",
                      "name": name, "uid": uid},
        "rules": [],
        "appliedToGroups": [],
        "span": [],
    }  # fmt: skip
    if tier is not None:
        out["tierPriority"], out["priority"] = tier, prio
    return out


POLICIES = [
    np("u-base", "AntreaClusterNetworkPolicy", "base", 253, 1.0),
    np("u-k8s", "K8sNetworkPolicy", "k"),
    np("u-app2", "AntreaNetworkPolicy", "app2", 250, 2.5),
    np("u-sec", "AntreaClusterNetworkPolicy", "sec", 100, 9.0),
    np("u-app1", "AntreaClusterNetworkPolicy", "app1", 250, 1.5),
]


@pytest.fixture
def fake_get(monkeypatch: pytest.MonkeyPatch) -> None:
    async def get(self: ControllerClient, path: str, params: Any = None) -> Any:
        assert path == "/apis/controlplane.antrea.io/v1beta2/networkpolicies"
        return {"items": [dict(p) for p in POLICIES]}

    monkeypatch.setattr(ControllerClient, "get", get)


def names(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines()[1:]]


def test_sort_by_effective_priority(fake_get: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["get", "networkpolicy", "--sort-by=effectivePriority"]) == 0
    out = capsys.readouterr().out
    assert names(out) == ["u-sec", "u-app1", "u-app2", "u-k8s", "u-base"]
    header = out.splitlines()[0].split()
    assert header[-2:] == ["TIER-PRIORITY", "PRIORITY"]
    assert out.splitlines()[1].split()[-2:] == ["100", "9.0"]


@pytest.mark.parametrize(
    ("typ", "want"),
    [("ACNP", {"u-base", "u-sec", "u-app1"}), ("annp", {"u-app2"}), ("K8sNP", {"u-k8s"})],
)
def test_filter_by_type(
    fake_get: None, capsys: pytest.CaptureFixture[str], typ: str, want: set[str]
) -> None:
    assert cli.main(["get", "netpol", "-T", typ]) == 0
    assert set(names(capsys.readouterr().out)) == want


def test_unknown_type_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["get", "netpol", "-T", "Calico"])
    assert exc.value.code == 2
    assert "unknown policy type" in capsys.readouterr().err


def test_tier_rows_count_policies_and_sort() -> None:
    tiers: list[dict[str, Any]] = [
        {"metadata": {"name": "application"}, "spec": {"priority": 250}},
        {"metadata": {"name": "emergency"}, "spec": {"priority": 50}},
        {"metadata": {"name": "mine"}, "spec": {"priority": 10}},
    ]
    acnps: list[dict[str, Any]] = [
        {"spec": {"tier": "mine"}},
        {"spec": {}},
        {"spec": {"tier": "application"}},
    ]
    annps = [{"spec": {"tier": "emergency"}}]
    rows = controller_cmds.tier_rows(tiers, acnps, annps)
    assert rows == [
        {"name": "mine", "priority": 10, "acnps": 1, "annps": 0},
        {"name": "emergency", "priority": 50, "acnps": 0, "annps": 1},
        {"name": "application", "priority": 250, "acnps": 2, "annps": 0},
    ]


def test_get_tier_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fake(kubeconfig: str | None) -> list[dict[str, Any]]:
        return [{"name": "mine", "priority": 10, "acnps": 1, "annps": 0}]

    monkeypatch.setattr(controller_cmds, "list_tiers", fake)
    assert cli.main(["get", "tier"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "PRIORITY", "ACNPS", "ANNPS"]
    assert lines[1].split() == ["mine", "10", "1", "0"]
    assert cli.main(["get", "tier", "nope"]) != 0
