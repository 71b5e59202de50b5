"""Lab acceptance for the controller (issue 4): per-node distribution and leader failover.

In a 3-node lab (one `antrea daemon` per node: agent + controller candidate), each node's
stream — read from inside the node's namespace with the node's own identity — holds exactly the
objects whose span includes the node, AppliedToGroups with only that node's pods; a node may
not watch another node's stream; killing the leader's daemon (SIGKILL, no lease release) hands
leadership to another node, and the streams converge on changes made after the failover.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from antrea.testbed.lab import lifecycle, topology
from antrea.testbed.lab.testing import Lab, LabParams

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.lab]

POLICIES = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: cp}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: db}}}], ports: [{port: 80}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: cp}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress, Egress]
"""


def snapshot(
    lab: Lab, node: str, as_node: str | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    spec = lab.spec.node(as_node or node)
    argv = [
        "ip",
        "netns",
        "exec",
        spec.netns,
        sys.executable,
        "-m",
        "antrea.agent.controlplane_client",
        "--node",
        node,
        "--kubeconfig",
        str(spec.kubeconfig),
        "--timeout",
        str(timeout),
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def received(lab: Lab, node: str) -> dict[str, dict[str, list[str]]]:
    """{kind: {policy name | group name: sorted pod names}} as the node's stream has it."""
    proc = snapshot(lab, node)
    assert proc.returncode == 0, proc.stderr[-2000:]
    view = json.loads(proc.stdout)
    out: dict[str, dict[str, list[str]]] = {}
    for kind, objs in view.items():
        for name, obj in objs.items():
            if kind == "NetworkPolicy":
                out.setdefault(kind, {})[obj["ref"][2]] = []
            else:
                assert all(m[3] == node for m in obj["members"]) or kind == "AddressGroup"
                out.setdefault(kind, {})[name] = sorted(m[1] for m in obj["members"])
    return out


def expected(pods: dict[str, tuple[str, str]], node: str) -> dict[str, dict[str, list[str]]]:
    """From pod placement: web policy where web pods run, db policy where db pods run; the db
    AddressGroup wherever the web policy is; AppliedToGroups with this node's pods only."""

    def on(app: str, n: str | None = None) -> list[str]:
        return sorted(p for p, (a, pn) in pods.items() if a == app and (n is None or pn == n))

    out: dict[str, dict[str, list[str]]] = {}
    for app in ("web", "db"):
        if on(app, node):
            out.setdefault("NetworkPolicy", {})[app] = []
            out.setdefault("AppliedToGroup", {})[app] = on(app, node)
    if on("web", node):
        out["AddressGroup"] = {"db": on("db")}
    return out


def normalize(got: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    """Group names are UUIDs: compare groups by member lists."""
    return {
        k: sorted(v.values()) if k != "NetworkPolicy" else sorted(v) for k, v in got.items() if v
    }


def placements(lab: Lab) -> dict[str, tuple[str, str]]:
    doc = json.loads(lab.kubectl("-n", "cp", "get", "pods", "-o", "json"))
    return {
        p["metadata"]["name"]: (p["metadata"]["labels"]["app"], p["spec"]["nodeName"])
        for p in doc["items"]
        if (p.get("status") or {}).get("podIP")
    }


def converge(lab: Lab, nodes: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pods = placements(lab)
        diffs = {}
        for n in nodes:
            want = normalize(expected(pods, n))
            got = normalize(received(lab, n))
            if got != want:
                diffs[n] = (got, want)
        if not diffs:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"streams did not converge: {diffs}")
        time.sleep(1.0)


def check_antctl(lab: Lab, timeout: float = 30.0) -> None:
    """antctl (admin kubeconfig, from the host, request sent from a node namespace) shows both
    policies with the span computed from pod placement, realized on every node of the span."""
    argv = [
        sys.executable,
        "-m",
        "antrea.cmd.antctl",
        "--kubeconfig",
        str(lab.kubeconfig),
        "--netns",
        lab.spec.node("node1").netns,
        "get",
        "netpol",
        "-n",
        "cp",
        "-o",
        "json",
    ]
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        items = {o["sourceRef"]["name"]: o for o in json.loads(proc.stdout)}
        pods = placements(lab)
        spans = {app: sorted({n for a, n in pods.values() if a == app}) for app in ("web", "db")}
        assert {k: v["span"] for k, v in items.items()} == spans
        st = [v["status"] for v in items.values()]
        if all(s["currentNodesRealized"] == s["desiredNodesRealized"] for s in st):
            return
        assert time.monotonic() < deadline, f"not realized everywhere: {st}"
        time.sleep(1.0)


def lease_holder(lab: Lab) -> str:
    out = lab.kubectl(
        "-n",
        "kube-system",
        "get",
        "lease",
        "antrea-controller",
        "-o",
        "jsonpath={.spec.holderIdentity}",
        check=False,
    )
    return out.strip()


@pytest.mark.parametrize("lab", [LabParams(nodes=3, cni="antrea")], indirect=True, ids=["3nodes"])
def test_streams_follow_span_and_survive_leader_failover(lab: Lab) -> None:
    lab.kubectl("create", "namespace", "cp")
    try:
        for i in range(6):
            app = "web" if i < 4 else "db"
            lab.kubectl(
                "-n",
                "cp",
                "run",
                f"p{i}",
                "--image=busybox",
                f"--labels=app={app}",
                "--restart=Never",
                "--",
                "sleep",
                "3600",
            )
        lab.kubectl("apply", "-f", "-", input=POLICIES)
        deadline = time.monotonic() + 120
        while len(placements(lab)) < 6:
            assert time.monotonic() < deadline, "pods did not get IPs"
            time.sleep(0.5)
        converge(lab, lab.nodes)
        check_antctl(lab)

        # a node identity cannot read another node's stream
        denied = snapshot(lab, "node2", as_node="node1", timeout=4)
        assert denied.returncode == 1 and "HTTP 403" in denied.stderr, denied.stderr[-500:]

        # SIGKILL the leader's daemon: another node takes the Lease, streams converge
        leader = lease_holder(lab)
        assert leader in lab.nodes
        node = lab.spec.node(leader)
        with lifecycle.holding_agent(node):  # keep it down: the supervisor would restart it
            pid = topology.read_pid(node.agent_pidfile)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while lease_holder(lab) in ("", leader):
                assert time.monotonic() < deadline, "no takeover"
                time.sleep(0.5)
            survivors = [n for n in lab.nodes if n != leader]
            lab.kubectl("-n", "cp", "label", "pod", "p0", "app=db", "--overwrite")
            converge(lab, survivors)
        lab.restart_agent(leader)
        converge(lab, lab.nodes)
    finally:
        lab.kubectl("delete", "namespace", "cp", "--wait=false", check=False)
