"""The real-Kubernetes lab: `antrea lab up --kubernetes real` on real binaries.

Runs whenever kube-apiserver, kube-controller-manager, kube-scheduler and kubelet are found
($ANTREA_K8S_BIN, else the PATH, else /opt/kubernetes/bin); otherwise every test here is skipped
with a message naming what is missing. One module-scoped 2-node cluster serves all tests; the
last test takes it down and checks that nothing is left (namespaces, processes, mounts,
cgroups, files).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from antrea.testbed.lab import lifecycle, netns, state
from antrea.testbed.lab.cniruntime import reference_conflist
from antrea.testbed.lab.realk8s.node import CGROUP_FS, cgroup_root
from antrea.testbed.lab.testing import (
    Lab,
    RealCluster,
    _base36,
    real_cluster,
    real_k8s_bin_or_skip,
    real_kubectl,
)

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.realk8s]

NAME = f"rk{_base36(os.getpid())}"[:12]


RealLab = RealCluster


@pytest.fixture(scope="module")
def real() -> Iterator[RealLab]:
    k8s_bin = real_k8s_bin_or_skip()
    with real_cluster(NAME, k8s_bin) as spec:
        yield RealLab(spec, real_kubectl(k8s_bin))


def _ready(node: dict[str, object]) -> str:
    conds = (node.get("status") or {}).get("conditions") or []  # type: ignore[attr-defined]
    return next((c["status"] for c in conds if c["type"] == "Ready"), "Unknown")


def test_nodes_register_with_pod_cidrs_and_wait_for_a_cni(real: RealLab) -> None:
    nodes = real.get("nodes")["items"]
    assert isinstance(nodes, list)
    assert sorted(n["metadata"]["name"] for n in nodes) == ["node1", "node2"]

    def cidrs() -> bool:
        items = real.get("nodes")["items"]
        assert isinstance(items, list)
        return all(n["spec"].get("podCIDR") for n in items)

    real.wait("node IPAM assigned podCIDRs", cidrs, 60)
    for n in real.get("nodes")["items"]:
        assert n["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")
        addrs = {a["type"]: a["address"] for a in n["status"]["addresses"]}
        assert addrs["InternalIP"] == real.spec.node(n["metadata"]["name"]).underlay_ip
        # No CNI installed yet: NotReady, as any new cluster.
        assert _ready(n) == "False"


HOSTNET_POD = """
apiVersion: v1
kind: Pod
metadata: {name: hostnet, namespace: default}
spec:
  nodeName: node2
  hostNetwork: true
  tolerations: [{operator: Exists}]
  terminationGracePeriodSeconds: 0
  containers:
    - name: serve
      image: registry.k8s.io/e2e-test-images/agnhost:2.43
      imagePullPolicy: IfNotPresent
      command: [/agnhost, serve-hostname]
      args: [--tcp, --http=false, --port=18080]
"""


def test_a_host_network_pod_runs_and_answers_exec_and_logs(real: RealLab) -> None:
    real.kubectl("apply", "-f", "-", input=HOSTNET_POD)
    real.wait("hostnet Running", lambda: real.get("pod", "hostnet")["status"]["phase"] == "Running")
    # The real kubelet started it in node2's network namespace: it serves on node2's address.
    node2 = real.spec.node("node2")
    out = netns.run(netns.exec_argv(node2.netns, ["nc", "-w", "2", node2.underlay_ip, "18080"]),
                    check=False).stdout  # fmt: skip
    assert out.strip() == socket.gethostname()  # hostNetwork: the host's UTS namespace too
    # exec and logs go API server -> kubelet (InternalIP), authenticated with the lab's CA.
    assert real.kubectl("exec", "hostnet", "--", "/bin/sh", "-c", "echo ok").strip() == "ok"
    real.kubectl("logs", "hostnet")
    real.kubectl("delete", "pod", "hostnet", "--wait=true", "--timeout=60s")


def test_the_manifest_passes_a_server_side_dry_run_without_warnings(real: RealLab) -> None:
    manifest = Path(__file__).resolve().parents[2] / "deploy" / "antrea.yml"
    proc = subprocess.run(
        [real.kubectl_bin, f"--kubeconfig={real.spec.kubeconfig}", "apply", "--dry-run=server",
         "-f", str(manifest)], capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # no warning (deprecations, unknown fields)
    assert "daemonset.apps/antrea-agent created (server dry run)" in proc.stdout


def test_lab_verbs_work_on_a_real_lab(real: RealLab) -> None:
    run = [sys.executable, "-m", "antrea.cmd.antrea", "lab"]
    out = subprocess.run([*run, "kubeconfig", "--name", NAME], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert out.strip() == str(real.spec.kubeconfig)
    doc = json.loads(subprocess.run([*run, "status", "--name", NAME, "-o", "json"],
                                    capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert doc["kubernetes"] == "real"
    assert all(doc["components"].values()), doc["components"]
    ip = subprocess.run([*run, "exec", "--name", NAME, "node1", "--", "ip", "-br", "addr"],
                        capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert real.spec.node("node1").underlay_ip in ip


def _install_reference_cni(real: RealLab) -> None:
    """What a node provisioner would do with the reference plugins: bridge + host-local on each
    node's kcm-assigned podCIDR, and routes to the other nodes' podCIDRs."""
    nodes = {n["metadata"]["name"]: n for n in real.get("nodes")["items"]}
    for node in real.spec.nodes:
        cidr = nodes[node.name]["spec"]["podCIDR"]
        conf = reference_conflist(node_pod_cidr=cidr, ipam_dir=node.path / "ipam")
        (node.path / "host/etc/cni/net.d/10-lab-bridge.conflist").write_text(json.dumps(conf))
        for other in real.spec.nodes:
            if other is not node:
                other_cidr = nodes[other.name]["spec"]["podCIDR"]
                netns.run(["ip", "-n", node.netns, "route", "replace", other_cidr, "via",
                           other.underlay_ip, "dev", "eth0"])  # fmt: skip


async def test_model_pods_run_on_real_kubelets_and_the_lab_probe_sees_them(real: RealLab) -> None:
    """Real pods (workload image, local pause image) through a CNI, probed by `antrea lab`."""
    _install_reference_cni(real)
    real.wait("nodes Ready", lambda: all(_ready(n) == "True" for n in real.get("nodes")["items"]))
    lab = Lab(real.spec)
    m = await lab.create_model()
    try:
        for port, proto in ((80, "TCP"), (81, "UDP")):
            doc = await lab.probe(port=port, protocol=proto, namespaces=["x", "y", "z"])
            assert doc["matrix"] == m.all_connected(), (port, proto)
        run = [sys.executable, "-m", "antrea.cmd.antrea", "lab", "exec", "--name", NAME]
        pod_ip = real.get("pod", "-n", "x", "a")["status"]["podIP"]
        out = subprocess.run([*run, "x/a", "--", "ip", "-4", "-br", "addr"], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        assert f"{pod_ip}/" in out
        assert (
            real.kubectl("exec", "-n", "y", "b", "-c", "cont-80-tcp", "--", "hostname").strip()
            == "b"
        )
    finally:
        await lab.reset_model(m)


def _lab_pids(spec: state.LabSpec) -> list[int]:
    """Live processes whose command line names the lab's directory."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (p / "stat").read_text()
        except OSError:
            continue
        if spec.dir in cmd and stat.rsplit(") ", 1)[1][:1] != "Z":
            out.append(int(p.name))
    return out


def test_down_leaves_nothing(real: RealLab) -> None:
    spec = real.spec
    roots = [cgroup_root(spec.name, n) for n in spec.node_names()]
    assert any((CGROUP_FS / "pids" / r.lstrip("/")).is_dir() for r in roots)
    assert _lab_pids(spec)
    lifecycle.down(spec.name)
    assert netns.list_netns(state.netns_prefix(spec.name)) == []
    assert _lab_pids(spec) == []
    assert not spec.path.exists()
    for h in CGROUP_FS.iterdir():  # every hierarchy, v2 "unified" too
        for r in roots:
            assert not (h / r.lstrip("/")).exists(), f"cgroup {h / r.lstrip('/')} left"
    assert spec.dir not in Path("/proc/self/mountinfo").read_text()
