"""antrea on the real-Kubernetes lab: `kubectl apply -f deploy/antrea.yml`, then real pods.

The cluster is `antrea lab up --kubernetes real` (2 nodes, real kube-apiserver, scheduler,
controller-manager, kubelets and containerd) with the antrea image from `bin/build-image`
imported into each node. deploy/antrea.yml is applied unchanged; the two options such a cluster
needs are in the optional ConfigMap antrea-config-overrides that `lab up` wrote (as the
manifest's comments say): the userspace datapath (no openvswitch kernel module in the lab's
nodes) and `kubeAPIServerOverride` (no kube-proxy); the noEncap cluster adds its mode there.
Skipped, loudly, without the Kubernetes binaries or when the image cannot be built.
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

from antrea.testbed.lab import state
from antrea.testbed.lab.realk8s import install
from antrea.testbed.lab.testing import (
    KUBECTL,
    Lab,
    RealCluster,
    _base36,
    bounded,
    real_cluster,
    real_k8s_bin_or_skip,
    real_kubectl,
)

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.realk8s]

NAME = f"ra{_base36(os.getpid())}"[:10]


class Cluster(RealCluster):
    def __init__(self, spec: state.LabSpec, kubectl: str, mode: str) -> None:
        super().__init__(spec, kubectl, timeout=180.0, wait=240.0)
        self.lab, self.mode = Lab(spec), mode

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


# One cluster per mode, each its own xdist group: they run side by side (tests/conftest.py).
@pytest.fixture(scope="module", params=[
    pytest.param(m, marks=pytest.mark.xdist_group(f"realk8s-antrea-{m.lower()}"))
    for m in ("encap", "noEncap")
])  # fmt: skip
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    mode: str = request.param
    where = real_k8s_bin_or_skip(image=True)
    with real_cluster(f"{NAME}{mode[0]}", where) as spec:
        c = Cluster(spec, real_kubectl(where), mode)
        with bounded(f"antrea installed on {spec.name}"):
            install.install(spec, c.kubectl_bin, encap_mode=mode)
        yield c


def test_agents_and_controller_run_and_nodes_become_ready(cluster: Cluster) -> None:
    def up() -> bool:
        agents = cluster.get("pods", "-n", "kube-system", "-l", "component=antrea-agent")["items"]
        ctrl = cluster.get("pods", "-n", "kube-system", "-l", "component=antrea-controller")
        return (len(agents) == 2 and _all_running_ready(agents)
                and _all_running_ready(ctrl["items"]))  # fmt: skip

    cluster.wait("antrea-agent 2/2 Running on both nodes, antrea-controller Running", up, 300)
    for p in cluster.get("pods", "-n", "kube-system", "-l", "component=antrea-agent")["items"]:
        assert len(p["status"]["containerStatuses"]) == 2
    # deploy/antrea.yml went in unchanged; the lab's own settings are in the overrides ConfigMap.
    import yaml

    shipped = next(
        d
        for d in yaml.safe_load_all(install.MANIFEST.read_text())
        if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "antrea-config"
    )
    assert cluster.get("configmap", "-n", "kube-system", "antrea-config")["data"] == shipped["data"]
    extra = cluster.get("configmap", "-n", "kube-system", "antrea-config-overrides")["data"]
    assert yaml.safe_load(extra["antrea-agent.conf"])["ovsDatapathType"] == "netdev"
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


def _ensure_web(cluster: Cluster) -> list[dict[str, Any]]:
    """The 4-pod Deployment (2 per node), Running (created once per cluster)."""
    cluster.kubectl("apply", "-f", "-", input=DEPLOYMENT)
    cluster.wait("web pods Running", lambda: len(_web_pods(cluster)) == 4
                 and _all_running_ready(_web_pods(cluster)), 240)  # fmt: skip
    return _web_pods(cluster)


def test_a_deployment_is_scheduled_started_and_networked_by_antrea(cluster: Cluster) -> None:
    pods = _ensure_web(cluster)
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


def test_arping_answers_on_the_same_node_not_across_nodes(cluster: Cluster) -> None:
    """Pods of one node share its L2 segment through br-int; other nodes are a routed hop."""
    pods = _ensure_web(cluster)
    src = pods[0]
    same = next(p for p in pods[1:] if p["spec"]["nodeName"] == src["spec"]["nodeName"])
    other = next(p for p in pods if p["spec"]["nodeName"] != src["spec"]["nodeName"])

    def arping(ip: str) -> int:
        proc = subprocess.run(
            [cluster.kubectl_bin, f"--kubeconfig={cluster.spec.kubeconfig}", "exec",
             src["metadata"]["name"], "--", "arping", "-c", "1", "-w", "2", "-I", "eth0", ip],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        return proc.returncode

    assert arping(same["status"]["podIP"]) == 0
    assert arping(other["status"]["podIP"]) != 0


def _pairs(
    cluster: Cluster, doc: dict[str, Any]
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(same-node pairs of different pods, blocked pairs) of a probe document."""
    where = {f"default/{p['metadata']['name']}": p["spec"]["nodeName"] for p in _web_pods(cluster)}
    same = {(s, d) for s in doc["pods"] for d in doc["pods"] if s != d and where[s] == where[d]}
    blocked = {(s, d) for s in doc["pods"] for d in doc["pods"] if not doc["matrix"][s][d]}
    return same, blocked


def test_pods_on_one_node_reach_each_other_through_ovs(cluster: Cluster) -> None:
    _ensure_web(cluster)
    doc = asyncio.run(cluster.lab.probe(port=80, namespaces=["default"]))
    same, blocked = _pairs(cluster, doc)
    assert len(doc["pods"]) == 4 and same
    assert not (same & blocked), f"same-node pairs blocked: {sorted(same & blocked)}"


def test_pods_on_different_nodes_reach_each_other(cluster: Cluster) -> None:
    # In encap the agent first moved each node's uplink and address to a netdev br-phy
    # (agent/uplink.py): userspace tunnels leave only through a bridge owning that address.
    _ensure_web(cluster)
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
    _ensure_web(cluster)
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


METRICS_READER = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: metrics-reader, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: antrea-metrics-reader}
rules: [{nonResourceURLs: [/metrics], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: antrea-metrics-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: antrea-metrics-reader}
subjects: [{kind: ServiceAccount, name: metrics-reader, namespace: default}]
"""


def _https_get(cluster: Cluster, node: str, path: str, token: str | None) -> tuple[int, bytes]:
    """GET https://<node address>:10350<path> from inside the node, as a scraper there would."""
    import ssl
    import urllib.error
    import urllib.request

    from antrea.testbed.lab import netns

    n = cluster.spec.node(node)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the agent's self-signed cert
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"https://{n.underlay_ip}:10350{path}", headers=headers)

    def get() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    return netns.call_in(netns.netns_path(n.netns), get)


UPSTREAM_COUNT_GAUGES = {
    "antrea_agent_local_pod_count",
    "antrea_agent_networkpolicy_count",
    "antrea_agent_ingress_networkpolicy_rule_count",
    "antrea_agent_egress_networkpolicy_rule_count",
    "antrea_agent_ovs_flow_count",
    "antrea_agent_ovs_total_flow_count",
}


def test_agent_metrics_over_https_with_a_service_account_token_pass_promtool(
    cluster: Cluster,
) -> None:
    import shutil

    if cluster.mode != "encap":
        pytest.skip("checked once (encap cluster)")
    if shutil.which("promtool") is None:
        pytest.skip("needs promtool (Debian prometheus)")
    cluster.kubectl("apply", "-f", "-", input=METRICS_READER)
    token = cluster.kubectl("create", "token", "metrics-reader").strip()
    assert _https_get(cluster, "node1", "/metrics", None)[0] == 401
    status, body = _https_get(cluster, "node1", "/metrics", token)
    assert status == 200, body[:300]
    assert b"# TYPE" in body
    lint = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                          timeout=60, check=False)  # fmt: skip
    # promtool's only complaint may be the "_count" suffix of upstream Antrea's own gauge names
    # (a contract: dashboards use them); anything else (parse errors, HELP/TYPE, units) fails.
    problems = [
        line
        for line in (lint.stdout + lint.stderr).decode().splitlines()
        if line.strip()
        and not (
            line.split(" ", 1)[0] in UPSTREAM_COUNT_GAUGES
            and line.endswith('should not have "_count" suffix')
        )
    ]
    assert problems == [], "\n".join(problems)


ECHO_POD = """
apiVersion: v1
kind: Pod
metadata: {name: echo, namespace: default, labels: {app: echo}}
spec:
  nodeName: node2
  terminationGracePeriodSeconds: 0
  containers:
    - name: echo
      image: registry.k8s.io/e2e-test-images/agnhost:2.43
      imagePullPolicy: IfNotPresent
      command: [/bin/nc, -ll, -p, "9000", -e, /bin/cat]
"""


def test_a_deleted_agent_pod_comes_back_and_a_cross_node_connection_survives(
    cluster: Cluster,
) -> None:
    import socket

    from antrea.testbed.lab import netns
    from antrea.testbed.lab.realk8s.pods import find_pod

    # Both modes: in encap the agent gives eth0 its address back at SIGTERM and the new one
    # moves it to br-phy again (agent/uplink.py), under the established connection.
    cluster.kubectl("apply", "-f", "-", input=ECHO_POD)
    cluster.wait("echo Running", lambda: _all_running_ready([cluster.get("pod", "echo")]), 120)
    echo_ip = cluster.get("pod", "echo")["status"]["podIP"]
    src = next(p for p in _ensure_web(cluster) if p["spec"]["nodeName"] == "node1")
    found = find_pod(cluster.spec, f"default/{src['metadata']['name']}")
    assert found is not None
    sock = netns.call_in(found[1], lambda: socket.create_connection((echo_ip, 9000), timeout=10))
    try:
        sock.sendall(b"before\n")
        assert sock.recv(64) == b"before\n"
        old = cluster.agent_pod("node2")
        cluster.kubectl("delete", "pod", "-n", "kube-system", old, "--wait=false")

        def replaced() -> bool:
            pods = cluster.get("pods", "-n", "kube-system", "-l", "component=antrea-agent")
            mine = [p for p in pods["items"] if p["spec"]["nodeName"] == "node2"]
            return (len(mine) == 1 and mine[0]["metadata"]["name"] != old
                    and _all_running_ready(mine))  # fmt: skip

        cluster.wait("the DaemonSet recreated node2's agent", replaced, 240)
        sock.settimeout(10)
        sock.sendall(b"after\n")
        assert sock.recv(64) == b"after\n"  # the established connection lived through it
    finally:
        sock.close()
        cluster.kubectl("delete", "pod", "echo", "--wait=false")


def _lease_holder(cluster: Cluster) -> str:
    lease = cluster.get("lease", "-n", "kube-system", "antrea-controller")
    return str(lease["spec"].get("holderIdentity") or "")


def test_the_other_controller_leads_when_the_leader_pod_is_deleted(cluster: Cluster) -> None:
    if cluster.mode != "encap":
        pytest.skip("checked once (encap cluster)")
    _ensure_web(cluster)
    leader = _lease_holder(cluster)
    assert leader in cluster.spec.node_names()
    pods = cluster.get("pods", "-n", "kube-system", "-l", "component=antrea-controller")["items"]
    victim = next(p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == leader)
    cluster.kubectl("delete", "pod", "-n", "kube-system", victim, "--wait=false")
    cluster.wait("the other replica holds the lease",
                 lambda: _lease_holder(cluster) not in ("", leader), 120)  # fmt: skip
    # A policy change made after the failover is computed by the new leader and enforced.
    test_a_network_policy_becomes_conjunction_flows_and_is_enforced(cluster)


def test_an_image_upgrade_rolls_node_by_node_and_keeps_connections(cluster: Cluster) -> None:
    import socket
    import threading

    from antrea.testbed.lab import netns
    from antrea.testbed.lab.realk8s.node import RealNode
    from antrea.testbed.lab.realk8s.pods import find_pod

    old = cluster.get("ds", "-n", "kube-system", "antrea-agent")
    image = old["spec"]["template"]["spec"]["containers"][0]["image"]
    new = f"{image}-rolled"
    for n in cluster.spec.nodes:  # the "new release", imported as a user would: a new tag
        rn = RealNode(cluster.spec, n)
        subprocess.run(["ctr", "--address", str(rn.socket), "-n", "k8s.io", "images", "tag",
                        f"docker.io/{image}", f"docker.io/{new}"], check=True,
                       capture_output=True)  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input=ECHO_POD)
    cluster.wait("echo Running", lambda: _all_running_ready([cluster.get("pod", "echo")]), 120)
    echo_ip = cluster.get("pod", "echo")["status"]["podIP"]
    src = next(p for p in _ensure_web(cluster) if p["spec"]["nodeName"] == "node2")
    found = find_pod(cluster.spec, f"default/{src['metadata']['name']}")
    assert found is not None
    sock = netns.call_in(found[1], lambda: socket.create_connection((echo_ip, 9000), timeout=10))
    unready_seen: list[int] = []
    done = threading.Event()

    def watch() -> None:  # how many agents are not Ready at once, all through the roll
        while not done.is_set():
            try:
                pods = cluster.get("pods", "-n", "kube-system", "-l", "component=antrea-agent")
                ready = [p for p in pods["items"] if _all_running_ready([p])]
                unready_seen.append(len(cluster.spec.nodes) - len(ready))
            except (AssertionError, ValueError):
                pass
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        sock.sendall(b"before\n")
        assert sock.recv(64) == b"before\n"
        watcher.start()
        cluster.kubectl("set", "image", "-n", "kube-system", "ds/antrea-agent", f"*={new}")
        cluster.kubectl("rollout", "status", "-n", "kube-system", "ds/antrea-agent",
                        "--timeout=300s")  # fmt: skip
        done.set()
        watcher.join(10)
        pods = cluster.get("pods", "-n", "kube-system", "-l", "component=antrea-agent")["items"]
        assert all(c["image"].endswith(new) for p in pods for c in p["spec"]["containers"])
        assert unready_seen and max(unready_seen) <= 1, unready_seen  # node by node
        sock.settimeout(10)
        sock.sendall(b"after\n")
        assert sock.recv(64) == b"after\n"
    finally:
        done.set()
        sock.close()
        cluster.kubectl("delete", "pod", "echo", "--wait=false")


def test_the_apiserver_proxies_to_the_leader_through_its_endpointslice(cluster: Cluster) -> None:
    """kube-apiserver finds Service antrea's endpoint in the leader's EndpointSlice: its
    services/proxy reaches the controller (it answered 503 when only Endpoints were written)."""
    if cluster.mode != "encap":
        pytest.skip("checked once (encap cluster)")
    leader = cluster.spec.node(_lease_holder(cluster)).underlay_ip

    def one_slice_at_the_leader() -> bool:
        items = cluster.get("endpointslices", "-n", "kube-system", "-l",
                            "kubernetes.io/service-name=antrea")["items"]  # fmt: skip
        assert len(items) == 1, [s["metadata"]["name"] for s in items]  # none mirrored
        sl = items[0]
        labels = sl["metadata"]["labels"]
        assert labels["endpointslice.kubernetes.io/managed-by"] == "controller.antrea.io"
        return [a for e in sl["endpoints"] for a in e["addresses"]] == [leader]

    cluster.wait("EndpointSlice antrea at the leader", one_slice_at_the_leader)
    proxy = "/api/v1/namespaces/kube-system/services/https:antrea:https/proxy"
    assert cluster.kubectl("get", "--raw", f"{proxy}/readyz").strip() == "ok"
    assert cluster.kubectl("get", "--raw", f"{proxy}/livez").strip() == "ok"


ANTCTL_USER = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: antctl-user, namespace: default}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: antctl-nobody, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: antctl-user-antctl}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: antctl}
subjects: [{kind: ServiceAccount, name: antctl-user, namespace: default}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: antrea-agent-proxy, namespace: kube-system}
rules:
  - {apiGroups: [""], resources: [pods/proxy], verbs: [get]}
  - {apiGroups: [""], resources: [pods, endpoints], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: antctl-user-agent-proxy, namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: antrea-agent-proxy}
subjects: [{kind: ServiceAccount, name: antctl-user, namespace: default}]
"""


def test_antctl_through_the_real_apiserver_proxy(cluster: Cluster, tmp_path: Any) -> None:
    """kube-apiserver's services/proxy and pods/proxy carry antctl to the controller and to an
    agent (docs/antctl.md) for a non-admin user bound to ClusterRole antctl (+ pods/proxy in
    kube-system); a user without them is refused by kube-apiserver."""
    import yaml

    if cluster.mode != "encap":
        pytest.skip("checked once (encap cluster)")
    cluster.kubectl("apply", "-f", "-", input=ANTCTL_USER)

    def kubeconfig(sa: str) -> str:
        token = cluster.kubectl("create", "token", sa).strip()
        kc = yaml.safe_load(cluster.spec.kubeconfig.read_text())
        for user in kc["users"]:
            user["user"] = {"token": token}
        path = tmp_path / f"{sa}.kubeconfig"
        path.write_text(yaml.safe_dump(kc))
        return str(path)

    antctl = str(KUBECTL.parent / "antctl")

    def run(kc: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([antctl, *args, "--kubeconfig", kc], capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip

    # The leader publishes its address in Endpoints kube-system/antrea (after its election).
    cluster.wait(
        "Endpoints kube-system/antrea has the leader",
        lambda: any(
            s.get("addresses")
            for s in cluster.get("endpoints", "-n", "kube-system", "antrea").get("subsets") or []
        ),
    )
    user = kubeconfig("antctl-user")
    proc = run(user, "get", "controllerinfo", "--via-apiserver", "-o", "json")
    eps = cluster.kubectl("get", "endpoints", "-n", "kube-system", "antrea", "-o", "yaml")
    assert proc.returncode == 0, (proc.stderr, eps)
    assert json.loads(proc.stdout)["leader"]
    proc = run(user, "get", "agentinfo", "--node", "node1", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["nodeName"] == "node1"
    nobody = kubeconfig("antctl-nobody")
    proc = run(nobody, "get", "controllerinfo", "--via-apiserver")
    assert proc.returncode == 1 and "HTTP 403" in proc.stderr, proc.stderr
    proc = run(nobody, "get", "agentinfo", "--node", "node1")  # may not even list the pods
    assert proc.returncode == 1 and "forbidden" in proc.stderr.lower(), proc.stderr
