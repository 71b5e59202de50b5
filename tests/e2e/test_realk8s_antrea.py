"""antrea on the real-Kubernetes lab: `kubectl apply -f deploy/antrea.yml`, then real pods.

The cluster is `antrea lab up --kubernetes real` (2 nodes, real kube-apiserver, scheduler,
controller-manager, kubelets and containerd) with the antrea image from `bin/build-image`
imported into each node. The manifest is applied with the two ConfigMap options such a cluster
needs (as its comments say): the userspace datapath (no openvswitch kernel module in the lab's
nodes) and `kubeAPIServerOverride` (no kube-proxy). Skipped, loudly, without the Kubernetes
binaries or when the image cannot be built.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from antrea.lab import lifecycle, state
from antrea.lab.realk8s import binaries, install
from antrea.lab.realk8s import lifecycle as real_lifecycle
from antrea.lab.testing import (
    KUBECTL,
    OWNER_FILE,
    Lab,
    _base36,
    _start_time,
    sweep_stale_test_labs,
)

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.realk8s]

NAME = f"ra{_base36(os.getpid())}"[:10]


class Cluster:
    def __init__(self, spec: state.LabSpec, kubectl: str, mode: str) -> None:
        self.spec, self.kubectl_bin, self.lab, self.mode = spec, kubectl, Lab(spec), mode

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            [self.kubectl_bin, f"--kubeconfig={self.spec.kubeconfig}", *args],
            capture_output=True, text=True, input=input, timeout=180, check=False,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def wait(self, what: str, predicate: Any, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            try:
                if predicate():
                    return
            except (AssertionError, KeyError, ValueError, TypeError) as exc:
                last = exc
            if time.monotonic() > deadline:
                pods = self.kubectl("get", "pods", "-A", "-o", "wide", check=False)
                raise AssertionError(f"{what}: not after {timeout:.0f}s ({last!r})\n{pods}")
            time.sleep(2)

    def agent_pod(self, node: str) -> str:
        pods = self.get("pods", "-n", "kube-system", "-l", "component=antrea-agent")["items"]
        return next(p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == node)

    def in_agent(self, node: str, *argv: str) -> str:
        return self.kubectl("exec", "-n", "kube-system", self.agent_pod(node), "-c",
                            "antrea-agent", "--", *argv)  # fmt: skip


def _all_running_ready(pods: list[dict[str, Any]]) -> bool:
    def ready(p: dict[str, Any]) -> bool:
        conds = p["status"].get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    return bool(pods) and all(p["status"]["phase"] == "Running" and ready(p) for p in pods)


@pytest.fixture(scope="module", params=["encap", "noEncap"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    mode: str = request.param
    name = f"{NAME}{mode[0]}"
    if os.geteuid() != 0:
        pytest.skip("needs root")
    where = binaries.search_dir()
    missing = binaries.missing_kubernetes(where) + binaries.missing_host_tools()
    if missing:
        pytest.skip(f"REAL KUBERNETES SUITE SKIPPED: missing {', '.join(missing)} "
                    f"(in {where or 'the PATH'})")  # fmt: skip
    if (
        not os.environ.get(real_lifecycle.IMAGE_ARCHIVE_ENV)
        and real_lifecycle.checkout_root() is None
    ):
        pytest.skip("REAL KUBERNETES SUITE SKIPPED: no antrea image (bin/build-image is missing)")
    sweep_stale_test_labs()
    lifecycle.down(name)
    try:
        spec = lifecycle.up(name=name, nodes=2, kubernetes="real", k8s_bin=where)
        me = os.getpid()
        (spec.path / OWNER_FILE).write_text(f"{me} {_start_time(me)}\n")
        c = Cluster(spec, binaries.find(where).kubectl or str(KUBECTL), mode)
        c.kubectl("apply", "-f", "-", input=install.lab_manifest(spec, encap_mode=mode))
        yield c
    finally:
        lifecycle.down(name)


def test_agents_and_controller_run_and_nodes_become_ready(cluster: Cluster) -> None:
    def up() -> bool:
        agents = cluster.get("pods", "-n", "kube-system", "-l", "component=antrea-agent")["items"]
        ctrl = cluster.get("pods", "-n", "kube-system", "-l", "component=antrea-controller")
        return (len(agents) == 2 and _all_running_ready(agents)
                and _all_running_ready(ctrl["items"]))  # fmt: skip

    cluster.wait("antrea-agent 2/2 Running on both nodes, antrea-controller Running", up, 300)
    for p in cluster.get("pods", "-n", "kube-system", "-l", "component=antrea-agent")["items"]:
        assert len(p["status"]["containerStatuses"]) == 2
    nodes = cluster.get("nodes")["items"]
    assert all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
        for n in nodes
    )


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 0
      topologySpreadConstraints:  # two per node: same-node and cross-node pairs
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: DoNotSchedule
          labelSelector: {matchLabels: {app: web}}
      containers:
        - name: serve
          image: registry.k8s.io/e2e-test-images/agnhost:2.43
          imagePullPolicy: IfNotPresent
          command: [/agnhost, serve-hostname]
          args: [--tcp, --http=false, --port=80]
          ports: [{containerPort: 80, name: serve-80-tcp}]
"""


def _web_pods(cluster: Cluster) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = cluster.get("pods", "-l", "app=web")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def test_a_deployment_is_scheduled_started_and_networked_by_antrea(cluster: Cluster) -> None:
    test_agents_and_controller_run_and_nodes_become_ready(cluster)
    cluster.kubectl("apply", "-f", "-", input=DEPLOYMENT)
    cluster.wait("web pods Running", lambda: len(_web_pods(cluster)) == 4
                 and _all_running_ready(_web_pods(cluster)), 240)  # fmt: skip
    pods = _web_pods(cluster)
    cidrs = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in cluster.get("nodes")["items"]}
    for p in pods:  # addresses from the node's podCIDR: our IPAM, called by the real kubelet
        ip = ipaddress.ip_address(p["status"]["podIP"])
        assert ip in ipaddress.ip_network(cidrs[p["spec"]["nodeName"]]), p["metadata"]["name"]
    name = pods[0]["metadata"]["name"]
    assert cluster.kubectl("exec", name, "--", "hostname").strip() == name
    for node in cluster.spec.node_names():
        show = cluster.in_agent(node, "ovs-vsctl", "show")
        assert "Bridge br-int" in show and "Port gw0" in show
        if cluster.mode == "encap":
            assert "Port tun0" in show and "type: vxlan" in show
            assert "remote_ip=flow" in show and "key=flow" in show
        for p in pods:  # one port per pod, named as Antrea names them (<pod name[:8]>-<hash>)
            if p["spec"]["nodeName"] == node:
                assert f"Port {p['metadata']['name'][:8]}-" in show


def _pairs(
    cluster: Cluster, doc: dict[str, Any]
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(same-node pairs of different pods, blocked pairs) of a probe document."""
    where = {f"default/{p['metadata']['name']}": p["spec"]["nodeName"] for p in _web_pods(cluster)}
    same = {(s, d) for s in doc["pods"] for d in doc["pods"] if s != d and where[s] == where[d]}
    blocked = {(s, d) for s in doc["pods"] for d in doc["pods"] if not doc["matrix"][s][d]}
    return same, blocked


def test_pods_on_one_node_reach_each_other_through_ovs(cluster: Cluster) -> None:
    doc = asyncio.run(cluster.lab.probe(port=80, namespaces=["default"]))
    same, blocked = _pairs(cluster, doc)
    assert len(doc["pods"]) == 4 and same
    assert not (same & blocked), f"same-node pairs blocked: {sorted(same & blocked)}"


def test_pods_on_different_nodes_reach_each_other(
    cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    if cluster.mode == "encap":
        # The userspace datapath sends tunnel packets only through an OVS bridge that owns the
        # underlay address; the agent does not yet move the node's uplink into OVS (upstream's
        # connectUplinkToOVSBridge), so encap across nodes needs that first.
        request.applymarker(pytest.mark.xfail(strict=True, reason="netdev encap: no OVS uplink"))
    doc = asyncio.run(cluster.lab.probe(port=80, namespaces=["default"]))
    same, blocked = _pairs(cluster, doc)
    where = {s for pair in same for s in pair}
    cross = {(s, d) for s in doc["pods"] for d in doc["pods"] if s != d} - same
    assert where and cross, "the Deployment must span both nodes"
    assert not (cross & blocked), f"cross-node pairs blocked: {sorted(cross & blocked)}"


POLICY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-81-only, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
    - from: [{podSelector: {matchLabels: {app: web}}}]
      ports: [{port: 81, protocol: TCP}]
"""


def test_a_network_policy_becomes_conjunction_flows_and_is_enforced(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=POLICY)
    try:

        def enforced() -> bool:
            doc = asyncio.run(cluster.lab.probe(port=80, namespaces=["default"]))
            same, blocked = _pairs(cluster, doc)
            return bool(same) and same <= blocked

        cluster.wait("TCP/80 between web pods blocked", enforced, 60)
        node = _web_pods(cluster)[0]["spec"]["nodeName"]
        flows = cluster.in_agent(node, "ovs-ofctl", "-O", "OpenFlow15", "dump-flows", "br-int",
                                 "table=90")  # fmt: skip
        assert "conjunction(" in flows and "conj_id=" in flows, flows
    finally:
        cluster.kubectl("delete", "networkpolicy", "web-81-only", "--ignore-not-found")

    def open_again() -> bool:
        doc = asyncio.run(cluster.lab.probe(port=80, namespaces=["default"]))
        same, blocked = _pairs(cluster, doc)
        return not (same & blocked)

    cluster.wait("TCP/80 open again once the policy is deleted", open_again, 60)
