"""The lab's wiring without an API server: nodes, reference CNI, pod servers, probe, down."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from antrea.testbed.lab import lifecycle, netns, state, topology, workload
from antrea.testbed.lab.cniruntime import CniError, CniRuntime, first_ipv4, reference_conflist
from antrea.testbed.lab.kubelet import attachment
from antrea.testbed.lab.probe import Target, probe_matrix
from antrea.testbed.lab.sandbox import Sandbox

pytestmark = [pytest.mark.root, pytest.mark.ovs]

LAB = "wiring"


@pytest.fixture
def wired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[state.LabSpec]:
    monkeypatch.setenv(state.LAB_ROOT_ENV, str(tmp_path / "labs"))
    lifecycle.down(LAB)  # a previous crashed run
    spec = state.plan(name=LAB, nodes=2, cni="reference", encap="vxlan")
    spec.path.mkdir(parents=True)
    try:
        spec.save()
        topology.build(spec)
        for node in spec.nodes:
            conf = reference_conflist(node_pod_cidr=node.pod_cidr, ipam_dir=node.path / "ipam")
            (node.cni_conf_dir / "10-lab-bridge.conflist").write_text(json.dumps(conf))
        yield spec
    finally:
        lifecycle.down(LAB)


def runtime(node: state.NodeSpec) -> CniRuntime:
    return CniRuntime(
        node_netns=node.netns,
        conf_dir=node.cni_conf_dir,
        bin_dirs=[node.cni_bin_dir, Path("/usr/lib/cni")],
        cache_dir=node.cni_cache_dir,
    )


async def test_pods_on_two_nodes_reach_each_other_then_down_removes_all(
    wired: state.LabSpec,
) -> None:
    """Bridge pods on both nodes: TCP/UDP connected, closed port blocked; down is clean."""
    spec = wired
    targets: list[Target] = []
    workloads: list[workload.Workload] = []
    boxes: list[tuple[CniRuntime, Sandbox]] = []
    try:
        for node in spec.nodes:
            rt = runtime(node)
            for name in ("a", "b"):
                sb = Sandbox.new(
                    lab=LAB,
                    namespace="x",
                    name=f"{name}-{node.name}",
                    uid=name + node.name,
                    node=node.name,
                )
                netns.add(sb.netns)
                netns.run(["ip", "-n", sb.netns, "link", "set", "lo", "up"])
                result = await rt.add(attachment(sb))
                ip = first_ipv4(result)
                assert ip is not None
                assert ipaddress.ip_address(ip) in ipaddress.ip_network(node.pod_cidr)
                boxes.append((rt, sb))
                wl = workload.Workload(pod=sb.key, netns_path=sb.netns_path)
                await wl.start([workload.PortSpec(80, "TCP"), workload.PortSpec(80, "UDP")])
                workloads.append(wl)
                targets.append(Target(sb.key, sb.netns_path, ip))
        tcp = await probe_matrix(targets, protocol="TCP", port=80)
        assert all(all(row.values()) for row in tcp["matrix"].values()), tcp
        assert sorted(tcp["pods"]) == tcp["pods"] and len(tcp["pods"]) == 4
        udp = await probe_matrix(targets, protocol="UDP", port=80)
        assert all(all(row.values()) for row in udp["matrix"].values()), udp
        closed = await probe_matrix(targets[:2], protocol="TCP", port=81)
        assert not any(any(row.values()) for row in closed["matrix"].values())

        # CHECK passes after ADD, DEL twice succeeds, CHECK after DEL fails (no cache).
        rt, sb = boxes[0]
        await rt.check(attachment(sb))
        await rt.delete(attachment(sb))
        await rt.delete(attachment(sb))
        with pytest.raises(CniError):
            await rt.check(attachment(sb))
    finally:
        for wl in workloads:
            await wl.stop()
    lifecycle.down(LAB)
    assert netns.list_netns(state.netns_prefix(LAB)) == []
    assert not spec.path.exists()
    for node in spec.nodes:
        pid = topology.read_pid(node.ovs_dir / "ovs-vswitchd.pid")
        assert pid is None  # the pidfile went with the directory
    procs = Path("/proc")
    cmdlines = [p / "cmdline" for p in procs.iterdir() if p.name.isdigit()]
    leftover = []
    for c in cmdlines:
        try:
            if spec.dir.encode() in c.read_bytes():
                leftover.append(c)
        except OSError:
            pass
    assert not leftover
