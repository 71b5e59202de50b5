"""Issue 3's acceptance in a real lab (`--cni antrea`): pods x/a, x/b on node1, x/c on node2.

arping a -> b is answered (one L2 domain per node), a -> c is not (routed); ping and TCP work
between all three; node1's br-int holds tun0 (flow-based), gw0 (internal) and one port per pod,
named like Antrea names them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from antrea.agent.interfacestore import host_interface_name
from antrea.ovs.openflow.cookie import cookie_round
from antrea.ovs.ovsctl import parse_flow_line
from antrea.testbed.lab import lifecycle, topology
from antrea.testbed.lab import model as labmodel
from antrea.testbed.lab.testing import Lab, LabParams

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


SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9000)); s.listen(4)
c, _ = s.accept()
while True:
    data = c.recv(4096)
    if not data:
        break
    c.sendall(data)
"""

# One connection, one line every 50 ms; exit 0 only if that SAME connection carried everything.
CLIENT = """
import os, socket, sys, time
s = socket.create_connection((sys.argv[1], 9000), timeout=5); s.settimeout(5)
n = 0
while not os.path.exists(sys.argv[2]):
    s.sendall(b"x\\n")
    if s.recv(16) != b"x\\n":
        sys.exit(1)
    n += 1
    time.sleep(0.05)
print(n)
"""


def _kill_agent_under_traffic(lab: Lab, ip_c: str, stop: Path) -> None:
    """Run the server, client and ping; kill -9 and restart node1's agent; check the outcome."""
    procs: list[subprocess.Popen[str]] = []
    base = [sys.executable, "-m", "antrea.cmd.antrea", "lab", "exec", "--name", lab.name]
    try:
        procs.append(subprocess.Popen([*base, "pn/c", "--", "python3", "-c", SERVER], text=True))
        time.sleep(0.5)
        client = subprocess.Popen(
            [*base, "pn/a", "--", "python3", "-c", CLIENT, ip_c, str(stop)],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(client)
        lab.exec_pod("pn/a", "ping", "-c", "1", "-W", "1", ip_c, check=False)  # warm the tunnel
        ping = subprocess.Popen(
            [*base, "pn/a", "--", "ping", "-i", "0.1", "-W", "1", ip_c],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(ping)
        time.sleep(1)
        node = lab.spec.node("node1")
        with lifecycle.holding_agent(node):  # the supervisor would restart it at once
            pid = topology.read_pid(node.agent_pidfile)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while topology.pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1)
            lifecycle.start_agent(lab.spec, node)
        info: dict[str, object] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            out = lab.exec_node(
                "node1", "curl", "-s", "-m", "2", "http://127.0.0.1:10350/agentinfo", check=False
            ).stdout
            info = json.loads(out) if out.strip().startswith("{") else {}
            if info.get("roundPersisted"):
                break
            time.sleep(0.5)
        assert info.get("roundPersisted") and int(str(info["round"])) >= 2, info
        time.sleep(1)
        stop.touch()
        out, _ = client.communicate(timeout=20)
        assert client.returncode == 0 and int(out.strip()) > 40, out
        ping.send_signal(signal.SIGINT)
        ping_out, _ = ping.communicate(timeout=10)
        stats = next(line for line in ping_out.splitlines() if "packets transmitted" in line)
        sent, received = int(stats.split()[0]), int(stats.split()[3])
        assert sent > 30 and sent - received <= 1, stats
        dump = lab.exec_node("node1", "ovs-ofctl", "-O", "OpenFlow15", "dump-flows", "br-int")
        flows = filter(None, map(parse_flow_line, dump.stdout.splitlines()))
        rounds = {cookie_round(f.cookie) for f in flows}
        assert rounds == {info["round"]}, f"stale rounds: {rounds}"
    finally:
        stop.touch()
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=10)


@pytest.mark.parametrize("lab", [LabParams(nodes=2, cni="antrea")], indirect=True, ids=["vxlan"])
async def test_agent_kill_keeps_connections_and_leaves_no_stale_flows(
    lab: Lab, tmp_path: Path
) -> None:
    """kill -9 node1's agent under a TCP connection and a ping to node2: nothing is lost."""
    m = _model(lab)
    m.placement = {"pn/a": "node1", "pn/c": "node2"}
    m.pods = ("a", "c")
    await lab.create_model(m)
    try:
        async with lab.client() as c:
            pods = await labmodel.wait_running(c, m.keys)
        _kill_agent_under_traffic(lab, pods["pn/c"]["status"]["podIP"], tmp_path / "stop")
    finally:
        await lab.reset_model(m)
