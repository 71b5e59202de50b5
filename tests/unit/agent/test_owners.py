"""Typed flow owners: each feature's flows are found by the owner's type, not a string prefix."""

from __future__ import annotations

from typing import cast

from antrea.agent.networkpolicy.controller import NetworkPolicyController
from antrea.agent.networkpolicy.reconciler import PolicyReconciler
from antrea.agent.owners import BaseOwner, NodeOwner, PodOwner, PolicyOwner, is_policy_owner
from antrea.apis.controlplane.types import NetworkPolicyNodeStatus, PodReference
from antrea.ovs.openflow.client import FlowClient
from antrea.testbed.controlplane import (
    AddressGroup,
    AppliedToGroup,
    added,
    ingress,
    member,
    policy,
    tcp,
)
from antrea.testbed.openflow import RecordingTransport

A = member("x", "a", "10.244.1.10")
PEER = member("z", "p", "10.244.2.30")
PORTS: dict[PodReference, int] = {A.pod: 3}


def test_owners_of_different_features_never_collide() -> None:
    assert PodOwner("c1") != cast(object, NodeOwner("c1"))
    assert len({PodOwner("c1"), NodeOwner("c1"), PodOwner("c1")}) == 2
    assert is_policy_owner((PolicyOwner.MATCH, 50, ()))
    assert not is_policy_owner(("np-match", 50, ()))  # a string tag is not a policy owner
    assert not is_policy_owner(BaseOwner.PIPELINE)
    assert not is_policy_owner(PodOwner("np-x"))


async def test_policy_realization_owns_its_flows_with_typed_owners() -> None:
    client = FlowClient(RecordingTransport())
    await client.sync({BaseOwner.PIPELINE: [], PodOwner("c1"): []})
    rec = PolicyReconciler(client, round_num=1, ofport_of=PORTS.get)

    async def report(st: NetworkPolicyNodeStatus) -> None:
        return None

    ctl = NetworkPolicyController(node_name="n1", reconciler=rec, report_status=report)
    for obj in (
        AddressGroup("ag", frozenset({PEER})),
        AppliedToGroup("atg-a", frozenset({A})),
        policy("p", [ingress(groups=["ag"], services=[tcp(80)])], ["atg-a"]),
    ):
        ctl.handle(added(obj))
    await ctl.realize_dirty()
    owners = client.owners()
    kinds = {o[0] for o in owners if isinstance(o, tuple) and is_policy_owner(o)}
    assert {PolicyOwner.BASE, PolicyOwner.MATCH, PolicyOwner.CONJUNCTION} <= kinds
    assert all(is_policy_owner(o) for o in owners if isinstance(o, tuple))
