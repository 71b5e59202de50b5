"""Issue 3's acceptance in a real lab (`--cni antrea`): pods x/a, x/b on node1, x/c on node2.

arping a -> b is answered (one L2 domain per node), a -> c is not (routed); ping and TCP work
between all three; node1's br-int holds tun0 (flow-based), gw0 (internal) and one port per pod,
named like Antrea names them.
"""

from __future__ import annotations

import json

import pytest

from antrea.agent.interfacestore import host_interface_name
from antrea.lab import model as labmodel
from antrea.lab.testing import Lab, LabParams

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.lab]

PLACEMENT = {"pn/a": "node1", "pn/b": "node1", "pn/c": "node2"}


def _model(lab: Lab) -> labmodel.Model:
    return labmodel.Model(
        namespaces=("pn",),
        pods=("a", "b", "c"),
        ports=(80,),
        protocols=("TCP",),
        nodes=lab.nodes,
        placement=dict(PLACEMENT),
    )


@pytest.mark.parametrize(
    "lab",
    [LabParams(nodes=2, cni="antrea", encap=e) for e in ("vxlan", "geneve", "none")],
    indirect=True,
    ids=["vxlan", "geneve", "noencap"],
)
async def test_l2_per_node_routing_between_nodes(lab: Lab) -> None:
    m = await lab.create_model(_model(lab))
    try:
        async with lab.client() as c:
            pods = await labmodel.wait_running(c, m.keys)
        ip = {k: p["status"]["podIP"] for k, p in pods.items()}

        arp_b = lab.exec_pod("pn/a", "arping", "-c", "2", "-w", "3", "-I", "eth0", ip["pn/b"])
        assert arp_b.returncode == 0, arp_b.stdout + arp_b.stderr
        arp_c = lab.exec_pod(
            "pn/a", "arping", "-c", "2", "-w", "2", "-I", "eth0", ip["pn/c"], check=False
        )
        assert arp_c.returncode != 0, "a pod of another node answered ARP: not routed"

        for src in m.keys:
            for dst in m.keys:
                if src != dst:
                    lab.exec_pod(src, "ping", "-c", "1", "-W", "1", ip[dst], check=False)
                    out = lab.exec_pod(src, "ping", "-c", "2", "-W", "2", ip[dst], check=False)
                    assert out.returncode == 0, f"ping {src} -> {dst}: {out.stdout}"
        doc = await lab.probe(protocol="TCP", port=80, namespaces=["pn"])
        assert doc["matrix"] == m.all_connected()

        if lab.spec.encap != "vxlan":
            return
        show = lab.exec_node("node1", "ovs-vsctl", "show").stdout
        assert "type: vxlan" in show and "options: {key=flow, remote_ip=flow}" in show
        ports = set(lab.exec_node("node1", "ovs-vsctl", "list-ports", "br-int").stdout.split())
        ifaces = json.loads(
            lab.exec_node(
                "node1", "curl", "-s", "http://127.0.0.1:10350/podinterfaces?namespace=pn"
            ).stdout
        )
        names = {i["interfaceName"] for i in ifaces}
        assert {i["podName"] for i in ifaces} == {"a", "b"}
        for i in ifaces:
            assert i["interfaceName"] == host_interface_name(i["podName"], i["containerID"])
        assert {"gw0", "tun0"} | names <= ports
    finally:
        await lab.reset_model(m)
