"""A conjunction ID is handed out again only once the switch holds no flow carrying it.

OVS combines clause flows by ``conj_id`` whatever rule installed them. If a rule's deletion is
refused by the switch for one of its clause flows (``nw_src=OLD -> conjunction(1,1/2)``) while
its other flows go, and ID 1 is then given to a new rule (``reg1=<other pod> ->
conjunction(1,2/2)`` plus its ``conj_id=1`` action flow), OLD reaches a pod no policy opens to
it: one specific source allowed, everything else isolated as it should be.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pytest

from antrea.agent.networkpolicy.controller import NetworkPolicyController
from antrea.agent.networkpolicy.ids import ConjIDAllocator
from antrea.agent.networkpolicy.reconciler import PolicyReconciler
from antrea.apis.controlplane.types import PodReference
from antrea.ovs.errors import BundleRejected
from antrea.ovs.openflow.client import FlowClient
from antrea.ovs.openflow.flow import Flow
from antrea.ovs.openflow.groups import Group
from antrea.ovs.openflow.render import render_flow
from antrea.testbed.controlplane import (
    BOOKMARK,
    AddressGroup,
    AppliedToGroup,
    added,
    deleted,
    flows_allow,
    ingress,
    member,
    policy,
)
from antrea.testbed.openflow import RecordingTransport

A = member("z", "a", "10.244.1.5")  # target of the old policy
C = member("z", "c", "10.244.1.6")  # target of the new policy
OLD = member("y", "b", "10.244.1.4")  # the old policy's peer
NEW = member("z", "b", "10.244.2.5")  # the new policy's peer
PORTS: dict[PodReference, int] = {A.pod: 5, C.pod: 7}
pytestmark = pytest.mark.timeout(60)


class StuckTransport(RecordingTransport):
    """Refuses every bundle that changes a flow matching ``nw_src=<stuck>`` (a switch that
    cannot take that one change for a while); everything else applies."""

    def __init__(self) -> None:
        super().__init__()
        self.stuck: str | None = None

    async def bundle(
        self,
        *,
        add: Sequence[Flow] = (),
        modify: Sequence[Flow] = (),
        delete: Sequence[Flow] = (),
        **groups: Sequence[Group],
    ) -> None:
        if self.stuck is not None and any(
            matches_src(f, self.stuck) for f in [*add, *modify, *delete]
        ):
            raise BundleRejected(["fake"], 1, f"refused: nw_src={self.stuck}")
        await super().bundle(add=add, modify=modify, delete=delete, **groups)


def matches_src(flow: Flow, ip: str) -> bool:
    return re.search(rf"nw_src={re.escape(ip)}(/32)?[ ,]", render_flow(flow)) is not None


def allows(rt: RecordingTransport, src: Any, dst: Any) -> bool:
    return flows_allow(
        rt.flows.values(),
        src_ip=src.ips[0],
        dst_ip=dst.ips[0],
        dst_ofport=PORTS[dst.pod],
        proto="tcp",
        port=80,
        src_local=False,
    )


async def test_an_id_whose_flows_may_remain_is_not_reused() -> None:
    rt = StuckTransport()
    ids = ConjIDAllocator(delay=0)  # no cool-down: only the switch's state may hold an ID back
    rec = PolicyReconciler(
        FlowClient(rt), round_num=1, ofport_of=PORTS.get, allocator=ids, install_miss_flows=True
    )
    ctl = NetworkPolicyController(node_name="n1", reconciler=rec)
    old = policy("old", [ingress(groups=["ag-old"])], ["atg-a"])
    for obj in (AddressGroup("ag-old", frozenset({OLD})), AppliedToGroup("atg-a", frozenset({A}))):
        ctl.handle(added(obj))
    ctl.handle(added(old))
    ctl.handle(BOOKMARK)
    await ctl.realize_dirty()
    assert allows(rt, OLD, A)

    rt.stuck = OLD.ips[0]  # the old peer's clause flow cannot be deleted for now
    ctl.handle(deleted(old))
    await ctl.realize_dirty()
    # the precondition: its clause flow is left in the switch (retried with later batches)
    assert any(matches_src(f, OLD.ips[0]) for f in rt.flows.values())

    new = policy("new", [ingress(groups=["ag-new"])], ["atg-c"])
    for obj in (AddressGroup("ag-new", frozenset({NEW})), AppliedToGroup("atg-c", frozenset({C}))):
        ctl.handle(added(obj))
    ctl.handle(added(new))
    await ctl.realize_dirty()
    assert allows(rt, NEW, C)
    assert not allows(rt, OLD, C), "the old peer reaches the new target through a reused ID"

    rt.stuck = None  # the switch takes the deletion (retried with the next batch) ...
    ctl.handle(added(AddressGroup("ag-new", frozenset({NEW, C}))))
    await ctl.realize_dirty()
    assert not any(matches_src(f, OLD.ips[0]) for f in rt.flows.values())
    # ... and only then is the ID free again
    assert 1 not in ids.in_use
    assert ids.allocate() == 1


def test_released_ids_wait_for_confirmation_then_cool_down() -> None:
    now = [0.0]
    ids = ConjIDAllocator(delay=5, clock=lambda: now[0])
    assert [ids.allocate(), ids.allocate()] == [1, 2]
    ids.release(1)
    now[0] = 100.0
    assert ids.allocate() == 3  # unconfirmed: flows carrying 1 may still be in the switch
    ids.confirm()
    assert ids.allocate() == 4  # confirmed, cooling down
    now[0] = 105.0
    assert ids.allocate() == 1
