"""Two nodes with real agents: L2 inside a node, routing between nodes, restart under traffic.

Pods x/a and x/b on node1, x/c on node2. Pods of one node share an L2 domain (ARP works),
pods of different nodes are routed (no ARP answer), and ping + TCP work between all of them in
encap (VXLAN, Geneve) and noEncap modes.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from antrea.ovs.openflow.cookie import cookie_round
from antrea.ovs.openflow.flow import FlowFilter
from antrea.testbed.fakekube import AgentLab, PodHandle

pytestmark = [pytest.mark.root, pytest.mark.ovs]

SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
while True:
    c, _ = s.accept()
    c.settimeout(30)
    try:
        while True:
            data = c.recv(4096)
            if not data:
                break
            c.sendall(data)
    except OSError:
        pass
    c.close()
"""

# Connect once, then exchange one line every 50 ms until told to stop; print how many round
# trips succeeded and exit 0 only if the SAME connection carried all of them.
CLIENT = """
import os, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.settimeout(5)
n = 0
while not os.path.exists(sys.argv[3]):
    s.sendall(b"ping\\n")
    buf = b""
    while not buf.endswith(b"\\n"):
        chunk = s.recv(64)
        if not chunk:
            print(n, "closed"); sys.exit(1)
        buf += chunk
    n += 1
    with open(sys.argv[3] + ".count.tmp", "w") as fh:  # replaced whole: never read half-written
        fh.write(str(n))
    os.replace(sys.argv[3] + ".count.tmp", sys.argv[3] + ".count")
    time.sleep(0.05)
print(n)
"""


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for tool in ("ovs-vswitchd", "curl", "arping"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[object]:
    _need_root()
    labs: list[AgentLab] = []

    def make(encap: str) -> AgentLab:
        lab = AgentLab(tmp_path / f"lab{len(labs)}", nodes=2, encap=encap)
        labs.append(lab)
        lab.start()
        lab.start_agents()
        return lab

    try:
        yield make
    finally:
        for lab in labs:
            lab.stop()


def _ping(src: PodHandle, dst: PodHandle) -> bool:
    # The first packet to a new tunnel neighbour may be lost while OVS resolves it: warm up.
    src.exec("ping", "-c", "1", "-W", "1", dst.ip)
    return src.exec("ping", "-c", "3", "-i", "0.2", "-W", "2", dst.ip).returncode == 0


def _tcp(src: PodHandle, dst: PodHandle, port: int = 8080) -> bool:
    code = (
        "import socket,sys; s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=3);"
        "s.sendall(b'hello\\n'); print(s.recv(64).decode().strip())"
    )
    out = src.exec("python3", "-c", code, dst.ip, str(port))
    return out.returncode == 0 and out.stdout.strip() == "hello"


@pytest.mark.parametrize("encap", ["vxlan", "geneve", "none"])
def test_l2_within_node_routed_between_nodes(make_lab: object, encap: str) -> None:
    """arping a->b answers, a->c does not; ping and TCP work between all three pods."""
    lab = make_lab(encap)  # type: ignore[operator]
    n1, n2 = lab.nodes
    a = lab.add_pod(n1, "x", "a")
    b = lab.add_pod(n1, "x", "b")
    c = lab.add_pod(n2, "x", "c")
    servers = [
        subprocess.Popen(["ip", "netns", "exec", p.netns, "python3", "-c", SERVER, "8080"])
        for p in (a, b, c)
    ]
    try:
        assert a.exec("arping", "-c", "2", "-w", "3", "-I", "eth0", b.ip).returncode == 0
        assert a.exec("arping", "-c", "2", "-w", "2", "-I", "eth0", c.ip).returncode != 0
        pods = (a, b, c)
        for src in pods:
            for dst in pods:
                if src is not dst:
                    assert _ping(src, dst), f"ping {src.name} -> {dst.name} ({encap})"
        time.sleep(0.3)  # servers listening
        for src in pods:
            for dst in pods:
                if src is not dst:
                    assert _tcp(src, dst), f"tcp {src.name} -> {dst.name} ({encap})"
        # the node itself reaches pods of the other node (kubelet probes, host-network pods),
        # and pods reach the other node's address
        n1.run(["ping", "-c", "1", "-W", "1", c.ip])
        assert n1.run(["ping", "-c", "2", "-W", "2", c.ip]).returncode == 0
        a.exec("ping", "-c", "1", "-W", "1", n2.ip)
        assert a.exec("ping", "-c", "2", "-W", "2", n2.ip).returncode == 0
        routes = n1.run(["ip", "route"]).stdout
        if encap == "none":
            assert "10.244.2.0/24 via 172.30.0.2 dev br-phy" in routes
            assert not any("tun0" in line for line in n1.vsctl("list-ports", "br-int").split())
        else:
            assert "10.244.2.0/24 via 10.244.2.1 dev gw0" in routes
            tun_type = n1.vsctl("get", "Interface", "tun0", "type").strip()
            assert tun_type == ("geneve" if encap == "geneve" else "vxlan")
    finally:
        for s in servers:
            s.kill()
            s.wait()


def test_node_removal_and_return_updates_routes(make_lab: object) -> None:
    """A deleted Node loses its flows and host route; re-added, connectivity comes back."""
    lab = make_lab("vxlan")  # type: ignore[operator]
    n1, n2 = lab.nodes
    a = lab.add_pod(n1, "x", "a")
    c = lab.add_pod(n2, "x", "c")
    assert _ping(a, c)
    node2_cidr = ipaddress.ip_network("10.244.2.0/24")

    def routed() -> bool:  # node2's pod CIDR has its forwarding flow in n1's table 70
        return any(f.parsed.match.nw_dst == node2_cidr for f in n1.dump_flows(FlowFilter(table=70)))

    assert routed()
    obj = lab.kube.nodes["node2"]
    lab.kube.delete_node("node2")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "10.244.2.0/24" in n1.run(["ip", "route"]).stdout:
        time.sleep(0.2)
    assert "10.244.2.0/24" not in n1.run(["ip", "route"]).stdout
    assert not routed()
    lab.kube.set_node(obj)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "10.244.2.0/24" not in n1.run(["ip", "route"]).stdout:
        time.sleep(0.2)
    assert _ping(a, c)


def test_agent_kill_and_restart_keeps_connections(make_lab: object, tmp_path: Path) -> None:
    """kill -9 the agent under a long-lived TCP connection and a ping: nothing breaks."""
    lab = make_lab("vxlan")  # type: ignore[operator]
    n1, n2 = lab.nodes
    a = lab.add_pod(n1, "x", "a")
    c = lab.add_pod(n2, "x", "c")
    assert _ping(a, c)
    stop = tmp_path / "stop-client"
    server = subprocess.Popen(["ip", "netns", "exec", c.netns, "python3", "-c", SERVER, "9000"])
    time.sleep(0.3)
    client = subprocess.Popen(
        ["ip", "netns", "exec", a.netns, "python3", "-c", CLIENT, c.ip, "9000", str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    ping = subprocess.Popen(
        ["ip", "netns", "exec", a.netns, "ping", "-i", "0.1", "-W", "1", c.ip],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        n1.stop_agent(signal.SIGKILL)
        time.sleep(1.0)
        n1.start_agent()
        n1.wait_ready()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not n1.api("/agentinfo").get("roundPersisted"):
            time.sleep(0.2)
        count_before = int(Path(str(stop) + ".count").read_text())
        time.sleep(1.0)
        count_after = int(Path(str(stop) + ".count").read_text())
    finally:
        stop.touch()
        out, _ = client.communicate(timeout=15)
        ping.send_signal(signal.SIGINT)
        ping_out, _ = ping.communicate(timeout=10)
        server.kill()
        server.wait()
    assert client.returncode == 0, out
    assert count_after > count_before  # the same connection still carries data
    stats = next(line for line in ping_out.splitlines() if "packets transmitted" in line)
    sent, received = int(stats.split()[0]), int(stats.split()[3])
    assert sent > 30 and sent - received <= 1, stats
    info = n1.api("/agentinfo")
    assert info["round"] == 2 and info["roundPersisted"]
    rounds = {cookie_round(f.cookie) for f in n1.dump_flows()}
    assert rounds == {2}, "stale flows of the previous round remain"
