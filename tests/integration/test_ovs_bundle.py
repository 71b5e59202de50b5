"""The bundle transport against a real userspace OVS bridge."""

from __future__ import annotations

import ipaddress

import pytest

from antrea.ovs.errors import BundleRejected
from antrea.ovs.openflow import Conjunction, Drop, Flow, GotoTable, Match, Output, RegMatch
from antrea.ovs.openflow.bundle import OfctlBundleTransport
from antrea.ovs.openflow.client import CoalescingWriter, FlowClient
from antrea.ovs.openflow.flow import Proto
from antrea.ovs.ovsctl import parse_flow_line
from antrea.testbed.ovssandbox import OvsSandbox

pytestmark = [pytest.mark.root, pytest.mark.ovs]


def dump(ovs: OvsSandbox, table: int) -> list[str]:
    out = ovs.run(
        [
            "ovs-ofctl",
            "-O",
            "OpenFlow15",
            "--no-stats",
            "dump-flows",
            ovs.ofctl_target("br0"),
            f"table={table}",
        ]
    ).stdout
    lines = [line.strip() for line in out.splitlines() if "priority" in line]
    return [line for line in lines if not line.startswith("priority=0 ")]  # bridge's NORMAL


@pytest.fixture
def bridge(ovs: OvsSandbox) -> OvsSandbox:
    ovs.vsctl("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev")
    return ovs


async def test_mixed_bundle_add_modify_delete(bridge: OvsSandbox) -> None:
    """One bundle adds, modifies and deletes; the table ends exactly as the client says."""
    client = FlowClient(OfctlBundleTransport(bridge.ofctl_target("br0")))
    src = [ipaddress.ip_network(f"10.0.{i}.0/24") for i in range(50)]
    flows = [
        Flow(90, 200, Match(proto=Proto.IP, nw_src=n), (Conjunction(7, 1, 2),), cookie=0x1)
        for n in src
    ]
    flows.append(
        Flow(90, 200, Match(proto=Proto.IP, regs=(RegMatch(1, 3),)), (Conjunction(7, 2, 2),))
    )
    flows.append(Flow(90, 190, Match(proto=Proto.IP, conj_id=7), (GotoTable(105),)))
    await client.sync({"rule": flows})
    assert len(dump(bridge, 90)) == 52

    changed = [*flows[25:50], flows[50].with_actions((Drop(),)), flows[51]]
    plan = await client.sync({"rule": changed})
    assert (len(plan.add), len(plan.modify), len(plan.delete)) == (0, 1, 25)
    dumped = [f for f in map(parse_flow_line, dump(bridge, 90)) if f is not None]
    assert len(dumped) == 27
    assert {(f.priority, f.parsed.exact) for f in dumped} == {
        (f.priority, f.match) for f in changed
    }
    assert [f.parsed.exact for f in dumped if f.drops] == [flows[50].match]  # the modified one

    await client.sync({"rule": None})
    assert dump(bridge, 90) == []


async def test_rejected_bundle_changes_nothing_and_blames_one_owner(bridge: OvsSandbox) -> None:
    """A bad flow fails its owner only; the others' flows still land, atomically."""
    client = FlowClient(OfctlBundleTransport(bridge.ofctl_target("br0")))
    writer = CoalescingWriter(client)
    good = Flow(0, 100, Match(proto=Proto.IP), (Output(1),))
    bad = Flow(0, 100, Match(proto=Proto.ARP), (GotoTable(0),))  # goto to a lower table: rejected
    with pytest.raises(BundleRejected):
        await client.sync({"a": [good], "b": [bad]})
    assert dump(bridge, 0) == []

    import asyncio

    results = await asyncio.gather(
        writer.submit("a", [good]), writer.submit("b", [bad]), return_exceptions=True
    )
    assert results[0] is None
    assert isinstance(results[1], BundleRejected)
    assert len(dump(bridge, 0)) == 1
