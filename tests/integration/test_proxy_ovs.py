"""AntreaProxy's flows and groups on real OVS: both transports write the same thing.

The service flows (select group, learn for ClientIP affinity, DNAT with ``nat(dst=...)``,
ct_mark) and their groups go to one bridge through ``ovs-ofctl bundle`` and to another through
the native transport, in ONE bundle each (groups set before the flows that use them);
``diff-flows`` and ``dump-groups`` must agree. Deleting a group with its flows leaves nothing.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess

import pytest

from antrea.agent.openflow.builder import FlowBuilder, NodeConfig
from antrea.agent.proxy import flows as pf
from antrea.agent.proxy.types import Endpoint, ServicePort
from antrea.ovs.openflow.bundle import OfctlBundleTransport
from antrea.ovs.openflow.flow import Proto
from antrea.ovs.openflow.native import OpenFlowTransport
from antrea.testbed.ovssandbox import OvsSandbox

pytestmark = [pytest.mark.root, pytest.mark.ovs]
IP = ipaddress.IPv4Address


def ofctl(ovs: OvsSandbox, *args: str) -> str:
    out: subprocess.CompletedProcess[str] = ovs.run(["ovs-ofctl", "-O", "OpenFlow15", *args])
    return out.stdout


def groups(ovs: OvsSandbox, br: str) -> list[str]:
    out = ofctl(ovs, "dump-groups", ovs.ofctl_target(br))
    return sorted(line.strip() for line in out.splitlines() if "group_id" in line)


def flows(ovs: OvsSandbox, br: str) -> list[str]:
    out = ofctl(ovs, "--no-stats", "dump-flows", ovs.ofctl_target(br))
    return [line.strip() for line in out.splitlines() if "priority" in line]


@pytest.fixture
def bridges(ovs: OvsSandbox) -> OvsSandbox:
    for br in ("br-ref", "br-nat"):
        ovs.vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
        ofctl(ovs, "del-flows", ovs.ofctl_target(br))
    return ovs


def service_set() -> tuple[list, list]:  # type: ignore[type-arg]
    eps = [Endpoint(IP("10.244.1.2"), 8080, "n1"), Endpoint(IP("10.244.2.3"), 9090, "n2")]
    ports = [
        ServicePort("x", "web", "http", "TCP", IP("10.96.0.10"), 80),
        ServicePort("x", "dns", "", "UDP", IP("10.96.0.11"), 53, affinity_timeout=30),
        ServicePort("x", "s", "", "SCTP", IP("10.96.0.12"), 7, node_port=30007),
        ServicePort(
            "x", "l", "", "TCP", IP("10.96.0.14"), 80, node_port=30008, external_local=True
        ),
        ServicePort("x", "t", "", "TCP", IP("10.96.0.13"), 443, affinity_timeout=10800),
    ]
    builder = FlowBuilder(
        NodeConfig(ipaddress.IPv4Network("10.244.1.0/24"), IP("10.244.1.1"), "02:00:00:00:00:01"),
        round_num=3,
    )
    out = builder.pipeline_flows() + pf.shared_flows(0x3030000000000)
    grps = []
    for gid, sp in enumerate(ports, start=1):
        fronts = pf.frontends(sp, gid, gid | (1 << 30))
        out += pf.service_flows(sp, fronts, 0x3030000000000 | gid)
        grps.append(pf.service_group(gid, eps))
        if sp.external_local:
            grps.append(pf.service_group(gid | (1 << 30), eps[:1]))
    out += [
        pf.endpoint_flow(e, p, 0x3030000000000)
        for e in eps
        for p in (Proto.TCP, Proto.UDP, Proto.SCTP)
    ]
    return out, grps


async def test_service_flows_and_groups_both_ways(bridges: OvsSandbox) -> None:
    ref = OfctlBundleTransport(bridges.ofctl_target("br-ref"))
    nat = OpenFlowTransport(bridges.ofctl_target("br-nat"))
    try:
        fl, grps = service_set()
        for t in (ref, nat):
            await t.bundle(add=fl, set_groups=grps)
        assert len(groups(bridges, "br-nat")) == len(grps)
        assert groups(bridges, "br-nat") == groups(bridges, "br-ref")
        diff = bridges.run(
            ["ovs-ofctl", "-O", "OpenFlow15", "diff-flows",
             bridges.ofctl_target("br-ref"), bridges.ofctl_target("br-nat")],
            check=False,
        )  # fmt: skip
        assert diff.stdout == "" and diff.returncode == 0, diff.stdout + diff.stderr
        text = "\n".join(flows(bridges, "br-nat"))
        assert "learn(table=40,idle_timeout=30" in text
        assert "nat(dst=10.244.1.2:8080)" in text and "group:1" in text
        # an endpoint change is a group modification only; add_or_mod is idempotent
        one = [pf.service_group(1, [Endpoint(IP("10.244.1.2"), 8080)])]
        for t in (ref, nat):
            await t.bundle(set_groups=one)
            await t.bundle(set_groups=one)
        assert groups(bridges, "br-nat") == groups(bridges, "br-ref")
        assert "10.244.2.3" not in next(g for g in groups(bridges, "br-nat") if "group_id=1," in g)
        # deleting the Service: its flows, then its group
        svc_flows = [f for f in fl if f.cookie == 0x3030000000001]
        for t in (ref, nat):
            await t.bundle(delete=svc_flows, delete_groups=[grps[0]])
        assert not any("group_id=1," in g for g in groups(bridges, "br-nat"))
        assert not re.search(r"group:1(?!\d)", "\n".join(flows(bridges, "br-nat")))
        assert groups(bridges, "br-nat") == groups(bridges, "br-ref")
    finally:
        await nat.close()
