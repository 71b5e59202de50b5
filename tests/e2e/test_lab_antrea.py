"""The lab with our own node network (`--cni antrea`): agents per node, all encap modes."""

from __future__ import annotations

import pytest

from antrea.lab import lifecycle, topology
from antrea.lab.nodes import network_ready
from antrea.lab.testing import Lab, LabParams

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.lab]


@pytest.mark.parametrize(
    "lab",
    [LabParams(nodes=2, cni="antrea", encap=e) for e in ("vxlan", "geneve", "none")],
    indirect=True,
    ids=["vxlan", "geneve", "noencap"],
)
async def test_model_fully_connected(lab: Lab) -> None:
    """Every node got its agent's CNI config; the 9 model pods reach each other, TCP and UDP."""
    assert all(network_ready(n) for n in lab.spec.nodes)
    cfg = lab.spec.node("node1").agent_config.read_text()
    mode = "noEncap" if lab.spec.encap == "none" else "encap"
    assert f"trafficEncapMode: {mode}" in cfg
    m = await lab.create_model()
    try:
        for proto, port in (("TCP", 80), ("UDP", 81)):
            doc = await lab.probe(protocol=proto, port=port, namespaces=["x", "y", "z"])
            assert doc["matrix"] == m.all_connected(), f"{lab.spec.encap} {proto}/{port}"
    finally:
        await lab.reset_model(m)


@pytest.mark.parametrize("lab", [LabParams(nodes=2, cni="antrea")], indirect=True, ids=["vxlan"])
async def test_restart_agent_replaces_the_process_and_pods_stay_connected(lab: Lab) -> None:
    m = await lab.create_model()
    try:
        node = lab.spec.node("node1")
        before = topology.read_pid(node.agent_pidfile)
        proc = lab.antrea("restart-agent", "node1")
        after = topology.read_pid(node.agent_pidfile)
        assert before and after and before != after, proc.stdout
        assert not topology.pid_alive(before)
        assert topology.pid_alive(after)
        lifecycle.wait_for_network(lab.spec)
        doc = await lab.probe(protocol="TCP", port=80, namespaces=["x", "y", "z"])
        assert doc["matrix"] == m.all_connected()
    finally:
        await lab.reset_model(m)
