"""One node, a real agent process, the real CNI plugin binary: bridge, pipeline, ADD/DEL/CHECK.

Each test builds a node namespace with its own OVS (plus the lab's br-phy underlay), runs
`antrea agent` inside it against a fake Kubernetes API, and drives the plugin the way a
container runtime does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from antrea.agent.interfacestore import host_interface_name
from antrea.ovs.openflow.cookie import cookie_round
from antrea.ovs.openflow.flow import FlowFilter
from antrea.testbed.fakekube import AgentLab, NodeHandle

pytestmark = [pytest.mark.root, pytest.mark.ovs]


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for tool in ("ovs-vswitchd", "curl"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[AgentLab, NodeHandle]]:
    _need_root()
    lab = AgentLab(tmp_path / "lab", nodes=1)
    try:
        lab.start()
        lab.start_agents()
        yield lab, lab.nodes[0]
    finally:
        lab.stop()


def flow_texts(n: NodeHandle) -> list[str]:
    return sorted(f.text for f in n.dump_flows())


def _wait(predicate: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_bridge_has_exactly_gateway_and_tunnel(node: tuple[AgentLab, NodeHandle]) -> None:
    """br-int holds tun0 (flow-based vxlan, ofport 1) and gw0 (internal, ofport 2), nothing else."""
    _, n = node
    assert sorted(n.vsctl("list-ports", "br-int").split()) == ["gw0", "tun0"]
    show = n.vsctl("show")
    assert "options: {key=flow, remote_ip=flow}" in show
    assert n.vsctl("get", "Interface", "tun0", "type").strip() == "vxlan"
    assert n.vsctl("get", "Interface", "tun0", "ofport").strip() == "1"
    assert n.vsctl("get", "Interface", "gw0", "type").strip() == "internal"
    assert n.vsctl("get", "Interface", "gw0", "ofport").strip() == "2"
    # gw0 carries the first address of the pod CIDR
    addr = n.run(["ip", "-4", "-o", "addr", "show", "gw0"]).stdout
    assert "10.244.1.1/24" in addr
    _wait(lambda: n.vsctl("br-get-external-id", "br-int", "roundNum").strip() == "1")
    tables = {f.table for f in n.dump_flows()}
    assert {10, 20, 30, 31, 40, 50, 60, 70, 80, 90, 100, 105, 110} <= tables
    info = n.api("/agentinfo")
    assert info["podCIDR"] == "10.244.1.0/24" and info["round"] == 1
    assert info["ovsVersion"]


def test_cni_add_check_del(node: tuple[AgentLab, NodeHandle]) -> None:
    """ADD wires veth/IP/port/flows; CHECK passes, then fails once the address is gone; DEL x2."""
    lab, n = node
    pod = lab.add_pod(n, "x", "nginx6db9")
    result = pod.result
    host = host_interface_name("nginx6db9", pod.container_id)
    assert len(host) == 15 and host.startswith("nginx6db-")
    assert result["interfaces"][0]["name"] == host
    assert result["interfaces"][1]["sandbox"] == f"/var/run/netns/{pod.netns}"
    assert result["ips"][0]["gateway"] == "10.244.1.1"
    assert result["ips"][0]["interface"] == 1
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}]
    ip = pod.ip
    # pod side: address, MTU (1500 - vxlan overhead), default route
    link = pod.exec("ip", "-o", "link", "show", "eth0").stdout
    assert "mtu 1450" in link
    assert f"{ip}/24" in pod.exec("ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert "default via 10.244.1.1" in pod.exec("ip", "route").stdout
    # OVS port with the pod's identity
    ext = n.vsctl("get", "Interface", host, "external_ids")
    assert (pod.container_id in ext and '"x"' in ext) or "pod-namespace=x" in ext
    assert ip in ext
    ofport = int(n.vsctl("get", "Interface", host, "ofport"))
    assert any(f.parsed.match.in_port == ofport for f in n.dump_flows(FlowFilter(table=10)))
    # the pod reaches its gateway
    assert pod.exec("ping", "-c", "2", "-W", "2", "10.244.1.1").returncode == 0
    # a repeated ADD returns the same attachment (no second IP)
    rc, again = n.cni(
        "ADD",
        container_id=pod.container_id,
        netns=f"/var/run/netns/{pod.netns}",
        pod=("x", "nginx6db9"),
    )
    assert rc == 0 and again["ips"][0]["address"] == result["ips"][0]["address"]

    rc, out = n.cni(
        "CHECK",
        container_id=pod.container_id,
        netns=f"/var/run/netns/{pod.netns}",
        pod=("x", "nginx6db9"),
        prev_result=result,
    )
    assert rc == 0, out
    pod.exec("ip", "addr", "del", f"{ip}/24", "dev", "eth0")
    rc, out = n.cni(
        "CHECK",
        container_id=pod.container_id,
        netns=f"/var/run/netns/{pod.netns}",
        pod=("x", "nginx6db9"),
        prev_result=result,
    )
    assert rc != 0 and out.get("code", 0) >= 100, out

    pods = n.api("/podinterfaces")
    assert [p["podName"] for p in pods] == ["nginx6db9"]
    metrics = n.api("/metrics")
    assert "antrea_agent_local_pods 1.0" in metrics
    assert 'antrea_agent_ovs_flows{table_id="80",table_name="L2ForwardingCalc"}' in metrics
    assert "antrea_agent_ovs_bundle_duration_seconds_count" in metrics
    assert 'antrea_agent_cni_requests_total{command="ADD",result="success"}' in metrics

    for _ in range(2):
        rc, out = n.cni(
            "DEL",
            container_id=pod.container_id,
            netns=f"/var/run/netns/{pod.netns}",
            pod=("x", "nginx6db9"),
        )
        assert rc == 0, out
    assert sorted(n.vsctl("list-ports", "br-int").split()) == ["gw0", "tun0"]
    assert not any(f.parsed.match.in_port == ofport for f in n.dump_flows())
    ipam_dir = n.dir / "state" / "ipam" / "10.244.1.0_24"
    assert [p.name for p in ipam_dir.iterdir() if p.name[0].isdigit()] == []
    assert n.run(["ip", "link", "show", host]).returncode != 0


def test_del_after_netns_is_gone_releases_everything(node: tuple[AgentLab, NodeHandle]) -> None:
    """DEL succeeds when the pod's namespace was already deleted; the address is released."""
    lab, n = node
    pod = lab.add_pod(n, "x", "gone")
    subprocess.run(["ip", "netns", "del", pod.netns], check=True)
    rc, out = n.cni(
        "DEL",
        container_id=pod.container_id,
        netns=f"/var/run/netns/{pod.netns}",
        pod=("x", "gone"),
    )
    assert rc == 0, out
    assert sorted(n.vsctl("list-ports", "br-int").split()) == ["gw0", "tun0"]
    ipam_dir = n.dir / "state" / "ipam" / "10.244.1.0_24"
    assert [p.name for p in ipam_dir.iterdir() if p.name[0].isdigit()] == []


def test_concurrent_adds_get_distinct_addresses(node: tuple[AgentLab, NodeHandle]) -> None:
    """Eight ADDs at once: eight ports, eight different IPs, all reachable from the gateway."""
    lab, n = node
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        pods = list(pool.map(lambda i: lab.add_pod(n, "y", f"p{i}"), range(8)))
    ips = {p.ip for p in pods}
    assert len(ips) == 8
    assert len(n.vsctl("list-ports", "br-int").split()) == 10
    for p in pods:
        assert p.exec("ping", "-c", "1", "-W", "2", "10.244.1.1").returncode == 0


def test_agent_restart_rebuilds_store_and_keeps_ips(node: tuple[AgentLab, NodeHandle]) -> None:
    """After kill -9 and restart: same pods from OVSDB, new round, old round's flows gone."""
    lab, n = node
    a = lab.add_pod(n, "x", "a")
    b = lab.add_pod(n, "x", "b")
    _wait(lambda: n.api("/agentinfo")["roundPersisted"])
    before = len(n.dump_flows())
    import signal

    n.stop_agent(signal.SIGKILL)
    n.start_agent()
    n.wait_ready()
    _wait(lambda: n.api("/agentinfo")["roundPersisted"])
    info = n.api("/agentinfo")
    assert info["round"] == 2 and info["localPodCount"] == 2
    flows = n.dump_flows()
    assert len(flows) == before
    rounds = {cookie_round(f.cookie) for f in flows}
    assert rounds == {2}
    assert a.exec("ping", "-c", "2", "-W", "2", b.ip).returncode == 0
    # a new pod does not get an address the old ones hold
    c = lab.add_pod(n, "x", "c")
    assert c.ip not in {a.ip, b.ip}
    assert json.loads(json.dumps(n.api("/podinterfaces")))


def test_flows_replayed_after_switch_loses_them(node: tuple[AgentLab, NodeHandle]) -> None:
    """del-flows behind the agent's back (as after an ovs-vswitchd restart) is repaired."""
    lab, n = node
    a = lab.add_pod(n, "x", "a")
    b = lab.add_pod(n, "x", "b")
    _wait(lambda: n.api("/agentinfo")["roundPersisted"])
    before = flow_texts(n)
    n.ovs.run(["ovs-ofctl", "-O", "OpenFlow15", "del-flows", n.ovs.ofctl_target("br-int")])
    assert n.dump_flows() == []
    _wait(lambda: len(n.dump_flows()) == len(before))
    assert flow_texts(n) == before
    assert a.exec("ping", "-c", "2", "-W", "2", b.ip).returncode == 0
    assert n.api("/agentinfo")["flowReplays"] >= 1


def test_vswitchd_restart_is_detected_and_flows_replayed(
    node: tuple[AgentLab, NodeHandle],
) -> None:
    """ovs-vswitchd restarts with empty tables: same flows again, gw0 re-addressed, pods talk."""
    lab, n = node
    a = lab.add_pod(n, "x", "a")
    b = lab.add_pod(n, "x", "b")
    _wait(lambda: n.api("/agentinfo")["roundPersisted"])
    before = flow_texts(n)
    # as start scripts do: keep the datapath until the agent has restored its flows
    n.vsctl("set", "Open_vSwitch", ".", "other_config:flow-restore-wait=true")
    n.restart_vswitchd()
    _wait(lambda: flow_texts(n) == before, timeout=20)
    _wait(lambda: "flow-restore-wait" not in n.vsctl("get", "Open_vSwitch", ".", "other_config"))
    _wait(lambda: "10.244.1.1/24" in n.run(["ip", "-4", "-o", "addr", "show", "gw0"]).stdout)
    assert a.exec("ping", "-c", "2", "-W", "2", b.ip).returncode == 0
    assert a.exec("ping", "-c", "2", "-W", "2", "10.244.1.1").returncode == 0


def test_gc_releases_attachments_not_listed(node: tuple[AgentLab, NodeHandle]) -> None:
    """GC with cni.dev/valid-attachments keeps the listed pod and removes the other one."""
    lab, n = node
    keep = lab.add_pod(n, "x", "keep")
    drop = lab.add_pod(n, "x", "drop")
    conflist = json.loads((n.cni_conf / "10-antrea.conflist").read_text())
    conf = dict(conflist["plugins"][0], cniVersion="1.1.0", name=conflist["name"])
    conf["cni.dev/valid-attachments"] = [{"containerID": keep.container_id, "ifname": "eth0"}]
    proc = subprocess.run(
        [str(n.cni_bin / "antrea")],
        input=json.dumps(conf),
        capture_output=True,
        text=True,
        env={"CNI_COMMAND": "GC", "CNI_PATH": str(n.cni_bin), "PATH": os.environ["PATH"]},
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [p["podName"] for p in n.api("/podinterfaces")]
    assert names == ["keep"]
    ipam_dir = n.dir / "state" / "ipam" / "10.244.1.0_24"
    assert sorted(p.name for p in ipam_dir.iterdir() if p.name[0].isdigit()) == [keep.ip]
    assert drop.exec("ip", "link", "show", "eth0").returncode != 0  # veth gone with its peer


def test_addresses_leaked_by_a_crash_are_released_at_start(
    node: tuple[AgentLab, NodeHandle],
) -> None:
    """An allocation without an OVS port (agent died mid-ADD) is released on restart."""
    lab, n = node
    pod = lab.add_pod(n, "x", "a")
    ipam_dir = n.dir / "state" / "ipam" / "10.244.1.0_24"
    (ipam_dir / "10.244.1.200").write_text("dead-container\neth0")
    import signal

    n.stop_agent(signal.SIGKILL)
    n.start_agent()
    n.wait_ready()
    assert sorted(p.name for p in ipam_dir.iterdir() if p.name[0].isdigit()) == [pod.ip]


def test_labs_of_killed_test_processes_are_swept(tmp_path: Path) -> None:
    """A lab whose owning process died is removed by the next lab's start (netns, OVS)."""
    _need_root()
    from antrea.testbed.fakekube import REGISTRY, sweep_stale_labs

    lab = AgentLab(tmp_path / "lab", nodes=1)
    try:
        lab.start()
        entry = REGISTRY / f"{lab.tag}.json"
        doc = json.loads(entry.read_text())
        dead = subprocess.Popen(["true"])
        dead.wait()
        doc["owner"] = dead.pid
        entry.write_text(json.dumps(doc))
        ovs_pids = lab.nodes[0].ovs.pids()
        assert ovs_pids
        assert lab.tag in sweep_stale_labs()
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
        assert lab.tag not in netns.stdout
        for pid in ovs_pids:
            stat = Path(f"/proc/{pid}/stat")
            assert not stat.exists() or ") Z " in stat.read_text()
    finally:
        lab.stop()
