"""Lab planning, naming rules, scheduling choice, the e2e model and the probe's table."""

from __future__ import annotations

from pathlib import Path

import pytest

from antrea.testbed.lab import model, state
from antrea.testbed.lab.nodes import node_object
from antrea.testbed.lab.probe import render_table
from antrea.testbed.lab.scheduler import pick_node


def test_plan_carves_node_subnets_and_addresses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node i gets the i-th /24 of the cluster CIDR and underlay .(10+i); lab-prefixed names."""
    monkeypatch.setenv(state.LAB_ROOT_ENV, str(tmp_path))
    spec = state.plan(name="lab", nodes=3, cni="reference", encap="vxlan")
    assert [n.pod_cidr for n in spec.nodes] == ["10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]
    assert [n.underlay_ip for n in spec.nodes] == ["172.30.0.11", "172.30.0.12", "172.30.0.13"]
    assert [n.netns for n in spec.nodes] == [f"antrea-lab-node{i}" for i in (1, 2, 3)]
    assert spec.underlay_api_ip == "172.30.0.1"
    assert spec.kubeconfig == tmp_path / "lab" / "kubeconfig"
    spec.path.mkdir()
    spec.save()
    again = state.load("lab")
    assert again == spec


@pytest.mark.parametrize("name", ["a-b", "Lab", "1lab", "", "x" * 13, "la_b"])
def test_names_that_could_alias_another_lab_are_refused(name: str) -> None:
    """Only [a-z][a-z0-9]*: `antrea-<name>-` is never a prefix of another lab's namespaces."""
    with pytest.raises(state.LabError):
        state.validate_name(name)


def test_plan_rejects_too_many_nodes_for_the_cidr() -> None:
    with pytest.raises(state.LabError):
        state.plan(name="lab", nodes=2, cni="reference", encap="vxlan", pod_cidr="10.0.0.0/23")


def test_resolve_name_wants_exactly_one_lab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(state.LAB_ROOT_ENV, str(tmp_path))
    with pytest.raises(state.LabError, match="no lab"):
        state.resolve_name(None)
    (tmp_path / "one").mkdir()
    assert state.resolve_name(None) == "one"
    (tmp_path / "two").mkdir()
    with pytest.raises(state.LabError, match="several"):
        state.resolve_name(None)
    assert state.resolve_name("two") == "two"


def test_scheduler_picks_least_loaded_fitting_node() -> None:
    spec = state.plan(name="lab", nodes=3, cni="reference", encap="vxlan")
    pod: dict[str, object] = {"spec": {}}
    assert pick_node(pod, spec.nodes, {"node1": 2, "node2": 1, "node3": 1}).name == "node2"  # type: ignore[union-attr]
    pinned = {"spec": {"nodeSelector": {"kubernetes.io/hostname": "node3"}}}
    assert pick_node(pinned, spec.nodes, {"node3": 9}).name == "node3"  # type: ignore[union-attr]
    assert pick_node({"spec": {"nodeSelector": {"disk": "ssd"}}}, spec.nodes, {}) is None


def test_node_object_is_what_a_kubelet_registers() -> None:
    spec = state.plan(name="lab", nodes=1, cni="reference", encap="vxlan")
    obj = node_object(spec.nodes[0])
    assert obj["metadata"]["labels"]["kubernetes.io/hostname"] == "node1"
    assert obj["spec"] == {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}


def test_model_spreads_pods_and_names_ports_like_upstream() -> None:
    m = model.Model(nodes=["node1", "node2"])
    assert m.keys == [f"{ns}/{p}" for ns in "xyz" for p in "abc"]
    assert set(m.placement.values()) == {"node1", "node2"}
    assert m.placement["x/a"] == "node1" and m.placement["x/b"] == "node2"
    pod = m.pod_object("y", "b")
    names = sorted(p["name"] for c in pod["spec"]["containers"] for p in c["ports"])
    assert names == ["serve-80-tcp", "serve-80-udp", "serve-81-tcp", "serve-81-udp"]
    assert pod["metadata"]["labels"] == {"pod": "b"}
    assert m.namespace_object("z")["metadata"]["labels"] == {
        "ns": "z",
        "kubernetes.io/metadata.name": "z",
    }


def test_table_marks_connected_and_blocked() -> None:
    doc = {
        "protocol": "TCP",
        "port": 80,
        "pods": ["x/a", "x/b"],
        "matrix": {"x/a": {"x/a": True, "x/b": False}, "x/b": {"x/a": True, "x/b": True}},
    }
    lines = render_table(doc).splitlines()
    assert lines[2].split() == ["x/a", ".", "X"]
    assert lines[3].split() == ["x/b", ".", "."]


def test_workload_serves_each_tcp_udp_port_once_and_skips_sctp() -> None:
    from antrea.testbed.lab.workload import PortSpec, ports_of

    pod = {
        "spec": {
            "containers": [
                {"ports": [{"containerPort": 80}, {"containerPort": 80, "protocol": "UDP"}]},
                {
                    "ports": [
                        {"containerPort": 80, "protocol": "TCP"},
                        {"containerPort": 9, "protocol": "SCTP"},
                    ]
                },
                {"name": "no-ports"},
            ]
        }
    }
    assert ports_of(pod) == [PortSpec(80, "TCP"), PortSpec(80, "UDP")]
    assert ports_of({"spec": {}}) == []


def test_table_marks_rejected_cells_r() -> None:
    doc = {
        "protocol": "TCP",
        "port": 80,
        "pods": ["x/a", "x/b"],
        "matrix": {"x/a": {"x/a": True, "x/b": False}, "x/b": {"x/a": False, "x/b": True}},
        "verdicts": {
            "x/a": {"x/a": "connected", "x/b": "rejected"},
            "x/b": {"x/a": "dropped", "x/b": "connected"},
        },
    }
    lines = render_table(doc).splitlines()
    assert lines[2].split() == ["x/a", ".", "R"]
    assert lines[3].split() == ["x/b", "X", "."]
