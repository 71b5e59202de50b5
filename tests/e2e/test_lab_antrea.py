"""The lab with our own node network (`--cni antrea`): agents per node, all encap modes."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from antrea.ovs.ovsctl import DumpedFlow, parse_flow_line
from antrea.testbed.lab import lifecycle, netns, topology
from antrea.testbed.lab.nodes import network_ready
from antrea.testbed.lab.testing import KUBECTL, Lab, LabParams

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


DENIED = "Error from server (Forbidden): "
AGENT_USER = "system:serviceaccount:kube-system:antrea-agent"
NETPOL = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: rbac-probe, namespace: default}
spec: {podSelector: {}}
"""


@pytest.mark.parametrize("lab", [LabParams(nodes=2, cni="antrea")], indirect=True, ids=["vxlan"])
async def test_agent_identity_is_confined_and_the_controller_runs_as_its_own(lab: Lab) -> None:
    """From inside node1, with the agent's kubeconfig: no Secret of kube-system, no writes to
    policies, Endpoints `antrea`, the controller Lease or bindings; the controller (its own
    kubeconfig) elected itself and published Endpoints and the CA, which the agent cannot."""
    node = lab.spec.node("node1")

    def as_identity(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(KUBECTL), "--kubeconfig", kubeconfig, "--request-timeout=10s", *args]
        return lab.exec_node("node1", *argv, check=False)

    agent, controller = str(node.kubeconfig), str(node.controller_kubeconfig)
    who = as_identity(agent, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert who.stdout == AGENT_USER, who.stderr
    # The controller (running as antrea-controller) did its job: leader, Endpoints, CA.
    lab.kubectl("get", "lease", "antrea-controller", "-n", "kube-system")
    lab.kubectl("get", "endpoints", "antrea", "-n", "kube-system")
    secrets = lab.kubectl("get", "secrets", "-n", "kube-system", "-o", "name").split()
    assert "secret/antrea-controller-ca" in secrets
    for s in secrets:
        name = s.split("/", 1)[1]
        proc = as_identity(agent, "get", "secret", name, "-n", "kube-system", "-o", "yaml")
        assert proc.returncode != 0 and "ca.key" not in proc.stdout
        assert proc.stderr.strip() == (
            f'{DENIED}secrets "{name}" is forbidden: User "{AGENT_USER}" cannot get resource '
            '"secrets" in API group "" in the namespace "kube-system"'
        )
    listing = as_identity(agent, "get", "secrets", "-n", "kube-system")
    assert listing.returncode != 0 and 'cannot list resource "secrets"' in listing.stderr
    lab.kubectl("apply", "-f", "-", input=NETPOL)
    try:
        manifest = node.path / "rbac-probe.yaml"
        manifest.write_text(NETPOL.replace("rbac-probe", "rbac-probe2"))
        # --raw where kubectl would GET first (the agent may not read policies or Leases).
        netpol = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/rbac-probe"
        lease = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/antrea-controller"
        same = node.path / "rbac-probe-same.yaml"
        same.write_text(NETPOL)
        lease_file = node.path / "rbac-probe-lease.json"
        lease_file.write_text(lab.kubectl("get", "--raw", lease))
        patch = ("--type=merge", "-p", '{"metadata":{"annotations":{"x":"y"}}}')
        endpoints = ("endpoints", "antrea", "-n", "kube-system")
        crb = ("clusterrolebinding", "takeover", "--clusterrole=cluster-admin")
        for args, verb, resource in (
            (("create", "-f", str(manifest)), "create", "networkpolicies"),
            (("replace", "--raw", netpol, "-f", str(same)), "update", "networkpolicies"),
            (("delete", "--raw", netpol), "delete", "networkpolicies"),
            (("patch", *endpoints, *patch), "patch", "endpoints"),
            (("delete", *endpoints), "delete", "endpoints"),
            (("replace", "--raw", lease, "-f", str(lease_file)), "update", "leases"),
            (("delete", "--raw", lease), "delete", "leases"),
            (("create", *crb, f"--user={AGENT_USER}"), "create", "clusterrolebindings"),
        ):
            proc = as_identity(agent, *args)
            assert proc.returncode != 0, args
            assert f'User "{AGENT_USER}" cannot {verb} resource "{resource}"' in proc.stderr, (
                args,
                proc.stderr,
            )
        lab.kubectl("get", "networkpolicy", "rbac-probe", "-n", "default")  # still there
    finally:
        lab.kubectl("delete", "networkpolicy", "rbac-probe", "-n", "default", "--ignore-not-found")
    # The lab kubelet acts as the node (system:node:node1), which the Node authorizer confines.
    kubelet = ("--kubeconfig", str(node.kubelet_kubeconfig))
    assert lab.kubectl(
        *kubelet, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"
    ) == ("system:node:node1")
    lab.kubectl("get", "lease", "node1", "-n", "kube-node-lease")  # its heartbeat
    proc = subprocess.run(
        [str(KUBECTL), *kubelet, "label", "node", "node2", "rbac-probe=x"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "node 'node1' cannot modify node 'node2'" in proc.stderr, proc.stderr
    # kubectl auth can-i answers from the same rules.
    for kubeconfig, can_i, answer in (
        (agent, ("list", "pods"), "yes"),  # its node's pods, by field selector
        (agent, ("get", "pods"), "no"),
        (agent, ("get", "secret/antrea-controller-ca", "-n", "kube-system"), "no"),
        (agent, ("create", "clusterrolebindings"), "no"),
        (controller, ("get", "secret/antrea-controller-ca", "-n", "kube-system"), "yes"),
        (controller, ("get", "secret/other", "-n", "kube-system"), "no"),
        (controller, ("update", "endpoints/antrea", "-n", "kube-system"), "yes"),
        (controller, ("update", "leases/antrea-controller", "-n", "kube-system"), "yes"),
    ):
        proc = as_identity(kubeconfig, "auth", "can-i", *can_i)
        assert proc.stdout.strip() == answer, (kubeconfig, can_i, proc.stdout, proc.stderr)


def _token(kubeconfig: Path) -> str:
    doc = yaml.safe_load(kubeconfig.read_text())
    return str(doc["users"][0]["user"]["token"])


def _promtool_check(text: str) -> None:
    proc = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("lab", [LabParams(nodes=2, cni="antrea")], indirect=True, ids=["vxlan"])
async def test_operator_endpoints_over_https_and_metrics_pass_promtool(lab: Lab) -> None:
    """The agent's HTTPS /livez and /readyz answer anyone, its /metrics only a token that the
    API server's TokenReview accepts and whose SubjectAccessReview allows `get /metrics`; the
    agent's and the controller's metrics pass `promtool check metrics`."""
    if shutil.which("promtool") is None:
        pytest.fail("promtool missing: bash bin/setup installs Debian's prometheus package")
    node = lab.spec.node("node1")
    ip = node.underlay_ip

    def curl(url: str, token: str | None = None) -> tuple[str, str]:
        auth = ["-H", f"Authorization: Bearer {token}"] if token else []
        out = lab.exec_node(
            "node1", "curl", "-sk", "-m", "10", "-w", "\n%{http_code}", *auth, url
        ).stdout
        body, _, code = out.rpartition("\n")
        return code, body.strip()

    base = f"https://{ip}:10350"
    assert curl(f"{base}/livez") == ("200", "ok")
    for _ in range(100):
        if curl(f"{base}/readyz")[0] == "200":
            break
        await asyncio.sleep(0.2)
    assert "[+]ovs-connection ok" in curl(f"{base}/readyz?verbose")[1]
    assert curl(f"{base}/metrics")[0] == "401"
    assert curl(f"{base}/metrics", "not-a-token")[0] == "401"
    agent_token = _token(node.kubeconfig)  # valid, but RBAC gives it no /metrics
    code, body = curl(f"{base}/metrics", agent_token)
    assert code == "403" and "may not get path" in body
    code, body = curl(f"{base}/metrics", _token(lab.spec.kubeconfig))  # system:masters
    assert code == "200" and "antrea_agent_ovs_installed_flows" in body
    _promtool_check(body + "\n")
    # The controller's metrics (any authenticated identity), from the node that leads.
    leader = json.loads(
        lab.kubectl("get", "lease", "antrea-controller", "-n", "kube-system", "-o", "json")
    )["spec"]["holderIdentity"]
    leader_ip = lab.spec.node(leader).underlay_ip
    code, body = curl(f"https://{leader_ip}:10349/metrics", agent_token)
    assert code == "200" and "antrea_controller" in body
    _promtool_check(body + "\n")
    code, body = curl(f"https://{leader_ip}:10349/readyz?verbose")
    assert code == "200" and "[+]leader-election ok" in body


def _pod(name: str, node: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "lab"}]},
        }
    )


def _allocations(lab: Lab, ip: str) -> int:
    log = lab.spec.node("node1").agent_log.read_text(errors="replace")
    return sum(
        1 for line in log.splitlines() if '"ip_allocated"' in line and f'"ip": "{ip}"' in line
    )


@pytest.mark.parametrize("lab", [LabParams(nodes=2, cni="antrea")], indirect=True, ids=["vxlan"])
async def test_antctl_log_level_supportbundle_plugin_and_exec_credentials(
    lab: Lab, tmp_path: Path
) -> None:
    """`antctl log-level` changes what the running agent logs (a CNI ADD's debug event shows
    only while at debug); `antctl supportbundle` on a node collects flows, OVSDB, task dumps
    and logs; `kubectl antrea` reaches the controller with an exec-credential kubeconfig."""
    assert lab.exec_node("node1", "antctl", "log-level").stdout.strip() == "info"
    version = lab.exec_node("node1", "antctl", "version").stdout
    assert re.search(r"^agentVersion: \S+", version, re.M), version
    gates = lab.exec_node("node1", "antctl", "get", "featuregates").stdout
    assert re.search(r"agent\s+AntreaProxy\s+Enabled\s+GA", gates), gates
    ips = {}
    try:
        for name, level in (("ll-info", None), ("ll-debug", "debug"), ("ll-back", "info")):
            if level:
                out = lab.exec_node("node1", "antctl", "log-level", level).stdout
                assert out.strip() == level
            lab.kubectl("apply", "-f", "-", input=_pod(name, "node1"))
            lab.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=60s")
            pod = json.loads(lab.kubectl("get", "pod", name, "-o", "json"))
            ips[name] = pod["status"]["podIP"]
        await asyncio.sleep(0.5)  # the agent's stderr reaches agent.log through a pipe
        assert [_allocations(lab, ips[n]) for n in ("ll-info", "ll-debug", "ll-back")] == [0, 1, 0]
    finally:
        lab.exec_node("node1", "antctl", "log-level", "info", check=False)
        for name in ("ll-info", "ll-debug", "ll-back"):
            lab.kubectl("delete", "pod", name, "--wait=false", check=False)

    out = lab.exec_node("node1", "antctl", "supportbundle", "-d", str(tmp_path)).stdout
    (bundle,) = tmp_path.glob("node1-*.tar.gz")
    with tarfile.open(bundle) as tar:
        names = set(tar.getnames())

        def text(name: str) -> str:
            f = tar.extractfile(f"node1/{name}")
            assert f is not None, name
            return f.read().decode()

        assert "priority=" in text("flows.txt") and "br-int" in text("ovs-vsctl-show.txt")
        assert '"Open_vSwitch"' in text("ovsdb.json") or "Open_vSwitch" in text("ovsdb.json")
        assert " tasks\n" in text("tasks.txt") and "antrea_agent" in text("metrics.prom")
        assert "node1/logs/node1/agent.log" in names, (names, out)
        assert text("errors.txt") == ""

    # An exec credential plugin that hands out the admin token, used through `kubectl antrea`.
    token = _token(lab.spec.kubeconfig)
    plugin = tmp_path / "cred.sh"
    plugin.write_text(
        '#!/bin/sh\necho \'{"apiVersion":"client.authentication.k8s.io/v1",'
        f'"kind":"ExecCredential","status":{{"token":"{token}"}}}}\'\n'
    )
    plugin.chmod(0o755)
    kc = yaml.safe_load(lab.spec.kubeconfig.read_text())
    kc["users"][0]["user"] = {
        "exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin)}
    }
    exec_kc = tmp_path / "exec.kubeconfig"
    exec_kc.write_text(yaml.safe_dump(kc))
    venv_bin = KUBECTL.parent
    env = {"PATH": f"{venv_bin}:/usr/sbin:/usr/bin:/sbin:/bin", "KUBECONFIG": str(exec_kc)}
    netns = lab.spec.node("node1").netns
    proc = subprocess.run(
        [str(KUBECTL), "antrea", "get", "controllerinfo", "--netns", netns, "-o", "json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["leader"]
    proc = subprocess.run(
        [str(KUBECTL), "antrea", "version", "--netns", netns],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert re.search(r"^controllerVersion: \S+", proc.stdout, re.M), proc.stdout
    assert "info" in subprocess.run(
        [str(KUBECTL), "antrea", "log-level", "--netns", netns],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip

    subprocess.run(
        [str(KUBECTL), "antrea", "supportbundle", "--controller", "--netns", netns,
         "-d", str(tmp_path / "ctl")],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    (ctl_bundle,) = (tmp_path / "ctl").glob("controller-*.tar.gz")
    with tarfile.open(ctl_bundle) as tar:
        assert "controller/tasks.txt" in tar.getnames()
        metrics = tar.extractfile("controller/metrics.prom")
        assert metrics is not None and b"antrea_controller_is_leader" in metrics.read()

    # query endpoint: the policy applied to a labelled pod.
    pod = json.loads(_pod("qe", "node1"))
    pod["metadata"]["labels"] = {"app": "qe"}
    lab.kubectl("apply", "-f", "-", input=json.dumps(pod))
    qe_np = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: qe-np, namespace: default}
spec: {podSelector: {matchLabels: {app: qe}}}
"""
    lab.kubectl("apply", "-f", "-", input=qe_np)
    try:
        lab.kubectl("wait", "--for=condition=Ready", "pod/qe", "--timeout=60s")
        applied: list[Any] = []
        for _ in range(100):
            proc = subprocess.run(
                [str(KUBECTL), "antrea", "query", "endpoint", "-n", "default", "-p", "qe",
                 "--netns", netns, "-o", "json"],
                env=env, capture_output=True, text=True, timeout=60, check=True,
            )  # fmt: skip
            applied = json.loads(proc.stdout)["endpoints"][0]["appliedPolicies"]
            if applied:
                break
            await asyncio.sleep(0.2)
        assert [p["name"] for p in applied] == ["qe-np"]
        proc = subprocess.run(
            [str(KUBECTL), "antrea", "query", "networkpolicyevaluation", "-S", "default/qe",
             "-D", "default/qe", "--netns", netns, "-o", "json"],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        answer = json.loads(proc.stdout)["response"]
        assert (answer["direction"], answer["decision"]) == ("Ingress", "Drop")
        assert [p["name"] for p in answer["isolatedBy"]] == ["qe-np"]
    finally:
        lab.kubectl("delete", "pod", "qe", "--wait=false", check=False)
        lab.kubectl("delete", "networkpolicy", "qe-np", check=False)


@pytest.mark.parametrize("lab", [LabParams(nodes=2, cni="antrea")], indirect=True, ids=["vxlan"])
async def test_antctl_reaches_the_controller_through_the_apiserver(lab: Lab) -> None:
    """From the host, where the controller's node address is not routable: `--via-apiserver`
    reaches it through services/proxy of Service kube-system/antrea;
    a user without `services/proxy` (a node's kubelet identity) is refused by the API server."""
    antctl = KUBECTL.parent / "antctl"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "KUBECONFIG": str(lab.spec.kubeconfig)}

    def run(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        e = {**env, "KUBECONFIG": str(kubeconfig)} if kubeconfig else env
        return subprocess.run(
            [str(antctl), *args], env=e, capture_output=True, text=True, timeout=60, check=False
        )

    np = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: via-np, namespace: default}
spec: {podSelector: {matchLabels: {app: via}}}
"""
    lab.kubectl("apply", "-f", "-", input=np)
    try:
        names: list[str] = []
        for _ in range(100):
            proc = run("get", "networkpolicy", "--via-apiserver", "-o", "json")
            assert proc.returncode == 0, proc.stderr
            names = [o["sourceRef"]["name"] for o in json.loads(proc.stdout)]
            if "via-np" in names:
                break
            await asyncio.sleep(0.2)
        assert "via-np" in names
        proc = run("get", "controllerinfo", "--via-apiserver", "-o", "json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["leader"]
        # The API server authorizes services/proxy before anything reaches the controller.
        kubelet = lab.spec.node("node1").kubelet_kubeconfig
        proc = run("get", "networkpolicy", "--via-apiserver", kubeconfig=kubelet)
        assert proc.returncode == 1
        assert "HTTP 403" in proc.stderr and "services/proxy" in proc.stderr, proc.stderr

        # The agent on node1 through its pod: the lab runs agents as processes, so a
        # host-network Pod object like the DaemonSet's stands for it (its IP is the node's,
        # where the real agent's HTTPS port 10350 answers).
        lab.kubectl("apply", "-f", "-", input=json.dumps(AGENT_POD))
        lab.kubectl("-n", "kube-system", "wait", "--for=condition=Ready",
                    f"pod/{AGENT_POD['metadata']['name']}", "--timeout=60s")  # fmt: skip
        proc = run("get", "agentinfo", "--node", "node1", "-o", "json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["nodeName"] == "node1"
        proc = run("get", "agentinfo", "--node", "node1", kubeconfig=kubelet)
        assert proc.returncode == 1
        assert "HTTP 403" in proc.stderr and "pods/proxy" in proc.stderr, proc.stderr
    finally:
        lab.kubectl("delete", "networkpolicy", "via-np", check=False)
        lab.kubectl("-n", "kube-system", "delete", "pod", AGENT_POD["metadata"]["name"],
                    "--wait=false", check=False)  # fmt: skip


AGENT_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "antrea-agent-via01",
        "namespace": "kube-system",
        "labels": {"app": "antrea", "component": "antrea-agent"},
    },
    "spec": {
        "nodeName": "node1",
        "hostNetwork": True,
        "containers": [{"name": "antrea-agent", "image": "antrea/antrea-agent"}],
    },
}


ACNP_UNKNOWN_TIER = """apiVersion: crd.antrea.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: adm-bad}
spec:
  priority: 5
  tier: no-such-tier
  appliedTo: [{podSelector: {}}]
  ingress: [{action: Allow, from: [{podSelector: {}}]}]
"""
# Conformance case antrea-022's policy: a `namespaces: {match: Self}` rule is one rule per
# namespace, each with its own AppliedToGroup, some with no pod on a node (kube-system).
ACNP_STATUS_SELF = """apiVersion: crd.antrea.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: status-probe}
spec:
  priority: 7
  tier: securityops
  appliedTo: [{namespaceSelector: {}}]
  ingress:
  - {action: Pass, from: [{namespaces: {match: Self}}]}
  - {action: Drop, from: [{namespaceSelector: {}}]}
"""
ACNP_OK = """apiVersion: crd.antrea.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: adm-ok}
spec:
  priority: 5
  tier: adm-tier
  appliedTo: [{podSelector: {matchLabels: {adm: x}}}]
  ingress: [{action: Allow, from: [{podSelector: {}}]}]
"""
TIER = """apiVersion: crd.antrea.io/v1beta1
kind: Tier
metadata: {name: adm-tier}
spec: {priority: 42}
"""


@pytest.mark.parametrize("lab", [LabParams(nodes=2, cni="antrea")], indirect=True, ids=["vxlan"])
async def test_admission_webhooks_of_the_controller(lab: Lab) -> None:
    """The API server calls the leading controller's webhooks (Service antrea, caBundle
    injected by the leader): an invalid policy is refused with its field and not stored, a
    valid one gets its defaults, a referenced tier cannot be deleted."""

    def both(*args: str, input: str | None = None) -> str:
        proc = subprocess.run(
            [str(KUBECTL), *args], env=lab.env(), capture_output=True, text=True, input=input,
            timeout=60, check=False,
        )  # fmt: skip
        return proc.stdout + proc.stderr

    lifecycle.wait_for_network(lab.spec)
    try:
        out = both("apply", "-f", "-", input=ACNP_UNKNOWN_TIER)
        assert 'admission webhook "acnpvalidator.antrea.io" denied the request' in out, out
        assert "spec.tier: tier no-such-tier does not exist" in out, out
        out = both("get", "acnp", "adm-bad")
        assert "NotFound" in out, out
        lab.kubectl("apply", "-f", "-", input=TIER)
        lab.kubectl("apply", "-f", "-", input=ACNP_OK)
        rule = lab.kubectl("get", "acnp", "adm-ok", "-o", "jsonpath={.spec.ingress[0].name}")
        assert rule.startswith("ingress-allow-"), rule
        out = both("delete", "tier", "adm-tier")
        assert "tier adm-tier is referenced by 1 Antrea ClusterNetworkPolicies" in out, out
        assert "adm-tier" in lab.kubectl("get", "tiers", "adm-tier", "-o", "name")
    finally:
        lab.kubectl("delete", "acnp", "adm-ok", "--ignore-not-found", check=False)
        lab.kubectl("delete", "tier", "adm-tier", "--ignore-not-found", check=False)


@pytest.mark.parametrize("lab", [LabParams(nodes=2, cni="antrea")], indirect=True, ids=["vxlan"])
async def test_audit_log_one_line_per_denied_connection_attempt(lab: Lab) -> None:
    """A Kubernetes NetworkPolicy in a Namespace annotated
    networkpolicy.antrea.io/enable-logging=true: every new connection its isolation drops is
    one np.log line on the destination's node (a SYN and its retransmission: one attempt)."""
    ns = f"audit-{os.getpid()}"
    manifest = f"""apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
  annotations: {{networkpolicy.antrea.io/enable-logging: "true"}}
---
apiVersion: v1
kind: Pod
metadata: {{name: srv, namespace: {ns}, labels: {{app: srv}}}}
spec:
  nodeName: node2
  containers: [{{name: c, image: lab, ports: [{{containerPort: 80}}]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: cli, namespace: {ns}}}
spec:
  nodeName: node1
  containers: [{{name: c, image: lab}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: deny-srv, namespace: {ns}}}
spec: {{podSelector: {{matchLabels: {{app: srv}}}}, policyTypes: [Ingress]}}
"""
    log_file = lab.spec.node("node2").path / "networkpolicy" / "np.log"

    def lines() -> list[str]:
        text = log_file.read_text() if log_file.exists() else ""
        return [ln for ln in text.splitlines() if f"K8sNetworkPolicy:{ns}/deny-srv" in ln]

    def attempt(ip: str) -> bool:
        script = f"timeout 2 bash -c 'exec 3<>/dev/tcp/{ip}/80 && cat <&3'"
        return lab.kubectl("exec", "-n", ns, "cli", "--", "bash", "-c", script, check=False) != ""

    lab.kubectl("apply", "-f", "-", input=manifest)
    try:
        for pod in ("srv", "cli"):
            lab.kubectl("wait", "-n", ns, "--for=condition=Ready", f"pod/{pod}", "--timeout=60s")
        ip = json.loads(lab.kubectl("get", "pod", "-n", ns, "srv", "-o", "json"))["status"]["podIP"]
        for _ in range(30):  # until the policy is realized: connections fail
            if not attempt(ip):
                break
        else:
            pytest.fail("the deny policy never took effect")
        await asyncio.sleep(3.5)  # what is pending is flushed (idle 2.5 s)
        before = len(lines())
        assert before >= 1
        for _ in range(3):
            assert not attempt(ip)
        await asyncio.sleep(3.5)
        new = lines()[before:]
        assert len(new) == 3, new
        src = json.loads(lab.kubectl("get", "pod", "-n", ns, "cli", "-o", "json"))["status"]
        for line in new:
            f = line.split(" ")
            assert f[2:8] == [
                "IngressDefaultRule", f"K8sNetworkPolicy:{ns}/deny-srv", "<nil>", "Drop", "<nil>",
                f"{ns}/srv",
            ], line  # fmt: skip
            assert (f[8], f[10], f[11], f[12]) == (src["podIP"], ip, "80", "TCP"), line
        assert len({ln.split(" ")[9] for ln in new}) == 3  # three source ports
        # A logged rule that allows: one Allow line per new connection, none for its packets.
        allow = f"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: allow-cli, namespace: {ns}}}
spec:
  podSelector: {{matchLabels: {{app: srv}}}}
  ingress: [{{from: [{{podSelector: {{}}}}], ports: [{{port: 80, protocol: TCP}}]}}]
"""
        lab.kubectl("apply", "-f", "-", input=allow)
        for _ in range(30):
            if attempt(ip):
                break
        else:
            pytest.fail("the allow policy never took effect")
        await asyncio.sleep(3.5)

        def allowed() -> list[str]:
            text = log_file.read_text()
            return [ln for ln in text.splitlines() if f"K8sNetworkPolicy:{ns}/allow-cli" in ln]

        before = len(allowed())
        assert before >= 1
        for _ in range(2):
            assert attempt(ip)
        await asyncio.sleep(3.5)
        new = allowed()[before:]
        assert len(new) == 2, new
        for line in new:
            f = line.split(" ")
            assert f[2:8] == [
                "IngressRule", f"K8sNetworkPolicy:{ns}/allow-cli", "<nil>", "Allow", "<nil>",
                f"{ns}/srv",
            ], line  # fmt: skip
            assert line.endswith("[1 packets in 0s]"), line
    finally:
        lab.kubectl("delete", "namespace", ns, "--wait=false", check=False)


ACNP_STATUS = """apiVersion: crd.antrea.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: status-probe}
spec:
  priority: 7
  appliedTo: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}}]
  ingress: [{action: Allow, from: [{podSelector: {}}]}]
"""


@pytest.mark.parametrize("lab", [LabParams(nodes=2, cni="antrea")], indirect=True, ids=["vxlan"])
@pytest.mark.parametrize(
    ("manifest", "where"),
    [(ACNP_STATUS, ("-n", "x")), (ACNP_STATUS_SELF, ("-A",))],
    ids=["x", "match-self"],
)
async def test_antrea_policy_status_converges_to_realized(
    lab: Lab, manifest: str, where: tuple[str, ...]
) -> None:
    """The leader writes .status from the agents' reports: Realized on every node hosting an
    applied-to pod, for the object's current generation."""
    m = await lab.create_model()
    try:
        nodes = {
            p["spec"]["nodeName"]
            for p in json.loads(lab.kubectl("get", "pods", *where, "-o", "json"))["items"]
            if not p["spec"].get("hostNetwork") and (p.get("status") or {}).get("podIP")
        }
        lab.kubectl("apply", "-f", "-", input=manifest)
        want = {
            "phase": "Realized",
            "currentNodesRealized": len(nodes),
            "desiredNodesRealized": len(nodes),
        }
        got: Any = {}
        for _ in range(120):
            obj = json.loads(lab.kubectl("get", "acnp", "status-probe", "-o", "json"))
            got = obj.get("status") or {}
            current = got.get("observedGeneration") == obj["metadata"]["generation"]
            if current and {k: got.get(k) for k in want} == want:
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"status {got}, want {want}")
    finally:
        lab.kubectl("delete", "acnp", "status-probe", "--ignore-not-found", check=False)
        await lab.reset_model(m)


def _pod_netns(lab: Lab, key: str) -> Path:
    from antrea.testbed.lab import sandbox

    sb = sandbox.find(lab.spec, key)
    assert sb is not None, key
    return netns.netns_path(sb.netns)


async def _node_flows(lab: Lab, node: str) -> list[DumpedFlow]:
    import urllib.request

    from antrea.testbed.lab.state import AGENT_API_PORT

    def get() -> list[str]:
        url = f"http://127.0.0.1:{AGENT_API_PORT}/ovsflows?category=network_policy"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return [f["flow"] for f in json.loads(resp.read())]

    lines = await netns.run_in(netns.netns_path(lab.spec.node(node).netns), get)
    return [f for f in map(parse_flow_line, lines) if f is not None]


def _prios(flows: list[DumpedFlow], table: int, nw_src: str) -> set[int]:
    """The priorities of the flows of ``table`` matching source address ``nw_src``."""
    src = ipaddress.ip_address(nw_src)
    return {f.priority for f in flows if f.table == table and f.parsed.match.nw_src == src}


def _total_retrans(s: socket.socket) -> int:
    """tcp_info.tcpi_total_retrans (linux/tcp.h: the u32 at offset 100)."""
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, 100)[0])


def _acnp_yaml(name: str, prio: float, ns: str, action: str, peer: str | None) -> str:
    src = (
        f"from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {ns}}}}}, "
        f"podSelector: {{matchLabels: {{app: {peer}}}}}}}]"
        if peer
        else ""
    )
    rule = f"{{action: {action}, name: r-{name}{', ' + src if src else ''}}}"
    return f"""apiVersion: crd.antrea.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {{name: {name}}}
spec:
  priority: {prio}
  appliedTo: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {ns}}}}},
               podSelector: {{matchLabels: {{app: srv}}}}}}]
  ingress: [{rule}]
---
"""


async def test_priority_reassignment_keeps_a_long_lived_connection(lab: Lab) -> None:
    """Drop policies inserted between an Allow (cli -> srv) and a Drop-all until the Allow rule
    has to move to another OpenFlow priority (one bundle): a TCP connection cli -> srv opened
    before, streaming a request/response every 5 ms throughout, gets every answer in order,
    is never reset and retransmits nothing (no packet lost either way); new connections opened
    every 20 ms meanwhile all succeed. The inserted policies drop another pod (unrelated)."""
    ns = f"reassign-{os.getpid()}"
    pods = "".join(
        f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}
spec:
  nodeName: {node}
  containers: [{{name: c, image: lab, ports: [{{containerPort: 80}}]}}]
---
"""
        for name, node in (("srv", "node2"), ("cli", "node1"), ("other", "node1"))
    )
    lab.kubectl("create", "namespace", ns)
    names: list[str] = []
    stop = threading.Event()
    try:
        lab.kubectl("apply", "-f", "-", input=pods)
        for pod in ("srv", "cli", "other"):
            lab.kubectl("wait", "-n", ns, "--for=condition=Ready", f"pod/{pod}", "--timeout=60s")
        ips = {
            p["metadata"]["name"]: p["status"]["podIP"]
            for p in json.loads(lab.kubectl("get", "pods", "-n", ns, "-o", "json"))["items"]
        }
        srv_ip, cli_ip, other_ip = ips["srv"], ips["cli"], ips["other"]
        names += ["ra-allow", "ra-drop"]
        lab.kubectl(
            "apply", "-f", "-",
            input=_acnp_yaml("ra-allow", 1, ns, "Allow", "cli")
            + _acnp_yaml("ra-drop", 100, ns, "Drop", None),
        )  # fmt: skip
        cli_ns, srv_ns = _pod_netns(lab, f"{ns}/cli"), _pod_netns(lab, f"{ns}/srv")

        def connect(src: Path) -> bool:
            def go() -> bool:
                try:
                    with socket.create_connection((srv_ip, 80), timeout=1.0) as s:
                        return s.recv(100).decode().strip() == f"{ns}/srv"
                except OSError:
                    return False

            return netns.call_in(src, go)

        other_ns = _pod_netns(lab, f"{ns}/other")
        for _ in range(100):  # realized: cli allowed, other dropped
            if connect(cli_ns) and not connect(other_ns):
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("the Allow/Drop policies never took effect")
        allow_before = _prios(await _node_flows(lab, "node2"), 85, cli_ip)
        assert len(allow_before) == 1, allow_before

        # The long-lived connection (a server of our own in srv's netns).
        listener = netns.call_in(srv_ns, lambda: socket.create_server((srv_ip, 7070)))
        client = netns.call_in(cli_ns, lambda: socket.create_connection((srv_ip, 7070), 5))
        conn, _ = listener.accept()
        listener.close()
        errors: list[str] = []
        rounds = [0]

        def echo() -> None:
            try:
                while data := conn.recv(64):
                    conn.sendall(data)
            except OSError as exc:
                errors.append(f"server: {exc!r}")

        def stream() -> None:
            client.settimeout(5.0)
            seq = 0
            try:
                while not stop.is_set():
                    client.sendall(struct.pack("!Q", seq))
                    got = b""
                    while len(got) < 8:
                        chunk = client.recv(8 - len(got))
                        if not chunk:
                            raise ConnectionResetError("closed by the peer")
                        got += chunk
                    if struct.unpack("!Q", got)[0] != seq:
                        raise AssertionError(f"answer {got!r} to request {seq}")
                    seq += 1
                    rounds[0] = seq
                    time.sleep(0.005)
            except (OSError, AssertionError) as exc:
                errors.append(f"client: {exc!r}")

        new_conns: list[bool] = []

        def connect_loop() -> None:
            while not stop.is_set():
                new_conns.append(connect(cli_ns))
                time.sleep(0.02)

        threads = [threading.Thread(target=f, daemon=True) for f in (echo, stream, connect_loop)]
        for th in threads:
            th.start()
        await asyncio.sleep(0.5)
        retrans0 = (_total_retrans(client), _total_retrans(conn))
        # Each lands between ra-allow and the previous one: the gap halves until none is left.
        for n, prio in enumerate((50, 25, 12, 6, 3, 2)):
            name = f"ra-between-{n}"
            names.append(name)
            lab.kubectl("apply", "-f", "-", input=_acnp_yaml(name, prio, ns, "Drop", "other"))
            for _ in range(100):  # realized on node2: one more priority dropping `other`
                flows = await _node_flows(lab, "node2")
                if len(_prios(flows, 85, other_ip)) == n + 1:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"{name} never realized")
        await asyncio.sleep(0.5)
        stop.set()
        threads[1].join(10)
        threads[2].join(10)
        retrans1 = (_total_retrans(client), _total_retrans(conn))
        client.close()
        threads[0].join(10)
        conn.close()
        allow_after = _prios(await _node_flows(lab, "node2"), 85, cli_ip)
        assert allow_after and allow_after != allow_before, "the Allow rule never moved"
        assert not errors, errors
        assert rounds[0] > 50, rounds
        assert retrans1 == retrans0, f"retransmissions (client, server): {retrans0} -> {retrans1}"
        assert len(new_conns) > 20 and all(new_conns), (
            f"{new_conns.count(False)} of {len(new_conns)} new connections failed"
        )
    finally:
        stop.set()
        for name in names:
            lab.kubectl("delete", "acnp", name, "--ignore-not-found", check=False)
        lab.kubectl("delete", "namespace", ns, "--wait=false", check=False)


async def test_antrea_native_rule_logging(lab: Lab) -> None:
    """``enableLogging`` / ``logLabel`` on an ACNP's rules: one np.log line per new connection
    attempt on the applied-to pod's node, with the policy, rule name, action, OpenFlow priority
    and label. The packet-in reason tells the reject responder's packets from the log's: the
    logged Allow is not answered with a reset, the logged Reject still is."""
    ns = f"nplog-{os.getpid()}"
    pods = "".join(
        f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}
spec:
  nodeName: {node}
  containers: [{{name: c, image: lab, ports: [{{containerPort: 80}}]}}]
---
"""
        for name, node in (("srv", "node2"), ("ok", "node1"), ("rej", "node1"), ("drp", "node2"))
    )

    def peer(app: str) -> str:
        return (
            f"[{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {ns}}}}}, "
            f"podSelector: {{matchLabels: {{app: {app}}}}}}}]"
        )

    acnp = f"""apiVersion: crd.antrea.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {{name: {ns}}}
spec:
  priority: 5
  appliedTo: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {ns}}}}},
               podSelector: {{matchLabels: {{app: srv}}}}}}]
  ingress:
  - {{name: let-ok, action: Allow, from: {peer("ok")}, enableLogging: true, logLabel: lbl-ok}}
  - {{name: no-rej, action: Reject, from: {peer("rej")}, enableLogging: true, logLabel: lbl-rej}}
  - {{name: no-drp, action: Drop, from: {peer("drp")}, enableLogging: true}}
"""
    log_file = lab.spec.node("node2").path / "networkpolicy" / "np.log"
    policy = f"AntreaClusterNetworkPolicy:{ns}"

    def lines() -> list[str]:
        text = log_file.read_text() if log_file.exists() else ""
        return [ln for ln in text.splitlines() if f" {policy} " in ln]

    lab.kubectl("create", "namespace", ns)
    try:
        lab.kubectl("apply", "-f", "-", input=pods)
        for pod in ("srv", "ok", "rej", "drp"):
            lab.kubectl("wait", "-n", ns, "--for=condition=Ready", f"pod/{pod}", "--timeout=60s")
        ips = {
            p["metadata"]["name"]: p["status"]["podIP"]
            for p in json.loads(lab.kubectl("get", "pods", "-n", ns, "-o", "json"))["items"]
        }
        lab.kubectl("apply", "-f", "-", input=acnp)

        def attempt(src: str) -> str:
            def go() -> str:
                try:
                    with socket.create_connection((ips["srv"], 80), timeout=2.0) as s:
                        s.settimeout(2.0)
                        return s.recv(100).decode().strip()
                except OSError as exc:
                    return type(exc).__name__

            return netns.call_in(_pod_netns(lab, f"{ns}/{src}"), go)

        want = {"ok": f"{ns}/srv", "rej": "ConnectionRefusedError", "drp": "TimeoutError"}
        for _ in range(60):  # realized
            if all(attempt(src) == w for src, w in want.items()):
                break
            await asyncio.sleep(0.5)
        else:
            pytest.fail(f"the policy never took effect: { {s: attempt(s) for s in want} }")
        await asyncio.sleep(3.5)  # what is pending is flushed (idle 2.5 s)
        before = len(lines())
        for _ in range(2):
            for src, w in want.items():
                assert attempt(src) == w, src
        await asyncio.sleep(3.5)
        new = lines()[before:]
        by_rule: dict[str, list[list[str]]] = {}
        for line in new:
            f = line.split(" ")
            by_rule.setdefault(f[4], []).append(f)
        assert sorted(by_rule) == ["let-ok", "no-drp", "no-rej"], new
        for rule, action, src, label in (
            ("let-ok", "Allow", "ok", "lbl-ok"),
            ("no-rej", "Reject", "rej", "lbl-rej"),
            ("no-drp", "Drop", "drp", "<nil>"),
        ):
            got = by_rule[rule]
            assert len(got) == 2, (rule, new)  # one line per connection attempt
            assert len({f[9] for f in got}) == 2  # two source ports
            for f in got:
                assert f[2:4] == ["AntreaPolicyIngressRule", policy], f
                assert f[5] == action and f[6].isdigit() and f[7] == f"{ns}/srv", f
                assert (f[8], f[10], f[11], f[12]) == (ips[src], ips["srv"], "80", "TCP"), f
                assert f[14] == label, f
    finally:
        lab.kubectl("delete", "acnp", ns, "--ignore-not-found", check=False)
        lab.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _antctl_json(lab: Lab, *args: str) -> Any:
    """antctl from the host (admin kubeconfig), its requests sent from node1's namespace."""
    argv = [sys.executable, "-m", "antrea.cmd.antctl", "--kubeconfig", str(lab.kubeconfig),
            "--netns", lab.spec.node("node1").netns, *args]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if "json" in args else {"text": proc.stdout}


async def test_rule_sessions_aggregated_across_nodes_by_the_controller(lab: Lab) -> None:
    """An ACNP applied to a server on each node, with a named Allow rule: N connections to each
    server are counted by each node's agent, reported to the controller, and the controller's
    ``antreaclusternetworkpolicystats`` shows at least 2N sessions on that rule (each node alone
    saw N), none on the other rule. An agent restart neither loses nor recounts anything."""
    ns = f"npstats-{os.getpid()}"
    n = 4
    pods = "".join(
        f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}
spec:
  nodeName: {node}
  containers: [{{name: c, image: lab, ports: [{{containerPort: 80}}]}}]
---
"""
        for name, app, node in (("srv1", "srv", "node1"), ("srv2", "srv", "node2"),
                                ("cli", "cli", "node1"))
    )  # fmt: skip
    sel = f"namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {ns}}}}}"
    acnp = f"""apiVersion: crd.antrea.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {{name: {ns}}}
spec:
  priority: 6
  appliedTo: [{{{sel}, podSelector: {{matchLabels: {{app: srv}}}}}}]
  ingress:
  - {{name: let-cli, action: Allow, from: [{{{sel}, podSelector: {{matchLabels: {{app: cli}}}}}}]}}
  - {{name: drop-x, action: Drop, from: [{{{sel}, podSelector: {{matchLabels: {{app: x}}}}}}]}}
"""
    lab.kubectl("create", "namespace", ns)
    try:
        lab.kubectl("apply", "-f", "-", input=pods)
        for pod in ("srv1", "srv2", "cli"):
            lab.kubectl("wait", "-n", ns, "--for=condition=Ready", f"pod/{pod}", "--timeout=60s")
        ips = {
            p["metadata"]["name"]: p["status"]["podIP"]
            for p in json.loads(lab.kubectl("get", "pods", "-n", ns, "-o", "json"))["items"]
        }
        lab.kubectl("apply", "-f", "-", input=acnp)
        st: dict[str, Any] = {}
        for _ in range(120):  # realized on both nodes before any connection
            st = json.loads(lab.kubectl("get", "acnp", ns, "-o", "json")).get("status") or {}
            if st.get("phase") == "Realized" and st.get("currentNodesRealized") == 2:
                break
            await asyncio.sleep(0.5)
        else:
            pytest.fail(f"never realized: {st}")

        def connect(ip: str) -> str:
            with socket.create_connection((ip, 80), timeout=3.0) as s:
                s.settimeout(3.0)
                return s.recv(100).decode().strip()

        cli_netns = _pod_netns(lab, f"{ns}/cli")
        for _ in range(n):
            for srv in ("srv1", "srv2"):
                assert netns.call_in(cli_netns, partial(connect, ips[srv])) == f"{ns}/{srv}"

        got: Any = {}
        for _ in range(60):  # agents report every 10 s
            got = _antctl_json(lab, "get", "antreaclusternetworkpolicystats", ns, "-o", "json")
            rules = {r["name"]: r["trafficStats"] for r in got["ruleTrafficStats"]}
            if rules["let-cli"]["sessions"] >= 2 * n:
                break
            await asyncio.sleep(1.0)
        else:
            raise AssertionError(f"the controller's view never counted both nodes: {got}")
        assert got["kind"] == "AntreaClusterNetworkPolicyStats"
        assert got["metadata"]["name"] == ns
        assert rules["drop-x"] == {"packets": 0, "bytes": 0, "sessions": 0}
        assert rules["let-cli"]["packets"] >= 2 * n and rules["let-cli"]["bytes"] > 0
        assert got["trafficStats"]["sessions"] >= 2 * n
        table = _antctl_json(lab, "get", "acnps")["text"].splitlines()
        assert table[0].split() == ["NAME", "SESSIONS", "PACKETS", "BYTES", "RULES"]
        assert any(line.split()[0] == ns for line in table[1:]), table

        # the agent of the controller leader's node restarts (its flows and their counters stay
        # in OVS; the leader, when in that process, fails over and starts from what the agents
        # report): nothing counted before is lost or counted again, and what that node counts
        # afterwards adds up
        holder = lab.kubectl(
            "-n", "kube-system", "get", "lease", "antrea-controller",
            "-o", "jsonpath={.spec.holderIdentity}", check=False,
        ).strip()  # fmt: skip
        node = holder if holder in ("node1", "node2") else "node2"
        srv = {"node1": "srv1", "node2": "srv2"}[node]
        before = rules["let-cli"]["sessions"]
        saved = lab.spec.node(node).agent_state_dir / "networkpolicy" / "stats.json"
        restarted_at = time.time()
        lab.restart_agent(node)
        lifecycle.wait_for_network(lab.spec)
        for _ in range(120):
            cmd = ("antctl", "get", "networkpolicy", "-o", "json")
            proc = lab.exec_node(node, *cmd, check=False)  # its API may not be up yet
            realized = proc.returncode == 0 and any(
                p["sourceRef"]["name"] == ns and p["realized"] for p in json.loads(proc.stdout)
            )
            # the new agent's first reading (a baseline) is saved: later traffic counts
            if realized and saved.exists() and saved.stat().st_mtime > restarted_at:
                break
            await asyncio.sleep(0.5)
        else:
            pytest.fail(f"the restarted agent on {node} never realized the policy and read")
        for _ in range(n):
            assert netns.call_in(cli_netns, lambda: connect(ips[srv])) == f"{ns}/{srv}"
        for _ in range(60):
            got = _antctl_json(lab, "get", "antreaclusternetworkpolicystats", ns, "-o", "json")
            after = {r["name"]: r["trafficStats"] for r in got["ruleTrafficStats"]}["let-cli"]
            if after["sessions"] >= before + n:
                break
            await asyncio.sleep(1.0)
        else:
            raise AssertionError(f"lost across the restart: {got}, before {before}")
        assert after["sessions"] < before + 2 * n, f"counted twice: {after}, before {before}"
    finally:
        lab.kubectl("delete", "acnp", ns, "--ignore-not-found", check=False)
        lab.kubectl("delete", "namespace", ns, "--wait=false", check=False)
