"""The control-plane JSON views both ends serve (controller and agent local APIs, antctl prints)."""

from __future__ import annotations

from antrea.apis.controlplane import views
from antrea.apis.controlplane.types import IPBlock
from antrea.testbed.controlplane import egress, ingress, member, policy, tcp


def test_policy_view_names_each_rule_by_its_direction_and_leaves_empties_out() -> None:
    np = policy(
        "p1",
        [ingress(groups=["ag"], services=[tcp(80, 90)]), egress(blocks=[IPBlock("10.0.0.0/8")])],
        ["atg"],
    )
    out = views.policy_json(np)
    assert out["apiVersion"] == "controlplane.antrea.io/v1beta2" and out["kind"] == "NetworkPolicy"
    assert out["sourceRef"] == {
        "type": "K8sNetworkPolicy",
        "namespace": "x",
        "name": "np-p1",
        "uid": "p1",
    }
    r_in, r_out = out["rules"]
    assert r_in["from"] == {"addressGroups": ["ag"]} and "to" not in r_in
    assert r_in["services"] == [{"protocol": "TCP", "port": 80, "endPort": 90}]
    assert r_out["to"] == {"ipBlocks": [{"cidr": "10.0.0.0/8"}]} and "services" not in r_out
    assert "tierPriority" not in out


def test_group_view_orders_members_and_omits_empty_fields() -> None:
    b = member("ns", "b", "10.0.0.2", ("http", "TCP", 80), node="n1")
    a = member("ns", "a", "10.0.0.1")
    out = views.group_json("AddressGroup", "ag", [b, a])
    assert out["kind"] == "AddressGroup" and out["metadata"] == {"name": "ag"}
    assert out["groupMembers"] == [
        {"pod": {"namespace": "ns", "name": "a"}, "ips": ["10.0.0.1"]},
        {
            "pod": {"namespace": "ns", "name": "b"},
            "ips": ["10.0.0.2"],
            "node": "n1",
            "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
        },
    ]
