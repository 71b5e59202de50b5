"""The lab's user-facing features on one shared 2-node lab (reference CNI)."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from antrea.testbed.lab import netns, sandbox
from antrea.testbed.lab.testing import KUBECTL, Lab, LabParams, lab_session

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.lab]

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p", "namespace": "default"},
    "spec": {"containers": [{"name": "c", "image": "lab", "ports": [{"containerPort": 8080}]}]},
}


@pytest.fixture(scope="module")
def lab() -> object:
    with lab_session(LabParams(nodes=2, cni="reference")) as handle:
        yield handle


async def wait_for(predicate: object, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_nodes_registered_and_ready(lab: Lab) -> None:
    nodes = json.loads(lab.kubectl("get", "nodes", "-o", "json"))["items"]
    assert [n["metadata"]["name"] for n in nodes] == ["node1", "node2"]
    for n, spec in zip(nodes, lab.spec.nodes, strict=True):
        assert n["spec"]["podCIDR"] == spec.pod_cidr
        addrs = {a["type"]: a["address"] for a in n["status"]["addresses"]}
        assert addrs == {"InternalIP": spec.underlay_ip, "Hostname": spec.name}
        ready = [c for c in n["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"
    async with lab.client() as c:

        async def leases() -> bool:
            path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
            items = (await c.list(path)).get("items") or []
            return sorted(i["spec"]["holderIdentity"] for i in items) == ["node1", "node2"]

        await wait_for(leases)


async def test_unbound_pod_is_scheduled_served_checked_and_removed(lab: Lab) -> None:
    """Scheduler honours nodeSelector; CNI CHECK passes; delete removes the namespace."""
    body = json.loads(json.dumps(POD))
    body["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "node2"}
    async with lab.client() as c:
        await c.create("/api/v1/namespaces/default/pods", body)

        async def running() -> bool:
            p = await c.get("/api/v1/namespaces/default/pods/p")
            return bool(p.get("status", {}).get("podIP"))

        await wait_for(running)
        pod = await c.get("/api/v1/namespaces/default/pods/p")
        assert pod["spec"]["nodeName"] == "node2"
        assert pod["status"]["hostIP"] == lab.spec.node("node2").underlay_ip
        sb = sandbox.find(lab.spec, "default/p")
        assert sb is not None and sb.ip == pod["status"]["podIP"]
        assert netns.netns_path(sb.netns).exists()

        out = lab.exec_pod("default/p", "ip", "-4", "-o", "addr", "show", "eth0").stdout
        assert sb.ip in out
        assert lab.antrea("cni-check", "default/p").returncode == 0
        doc = await lab.probe(port=8080, namespaces=["default"])
        assert doc["matrix"] == {"default/p": {"default/p": True}}

        await c.delete("/api/v1/namespaces/default/pods/p")

        async def gone() -> bool:
            return (
                not netns.netns_path(sb.netns).exists()
                and (await c.get_or_none("/api/v1/namespaces/default/pods/p")) is None
            )

        await wait_for(gone)
        assert sandbox.find(lab.spec, "default/p") is None


async def test_node_exec_reaches_the_nodes_own_ovs(lab: Lab) -> None:
    show = lab.exec_node("node1", "ovs-vsctl", "show").stdout
    assert "br-phy" in show
    flows = lab.exec_node("node1", "ovs-ofctl", "dump-flows", "br-phy").stdout
    assert "actions=NORMAL" in flows
    assert "ovs-vswitchd" in lab.exec_node("node2", "ovs-appctl", "version").stdout
    env = lab.exec_node("node2", "env").stdout
    assert "NODE_NAME=node2" in env and "ANTREA_AGENT_API=http://127.0.0.1:10350" in env


async def test_status_and_kubeconfig_commands(lab: Lab) -> None:
    doc = json.loads(lab.antrea("status", "-o", "json").stdout)
    assert doc["supervisor"]["running"]
    assert [n["ovs"] for n in doc["nodes"]] == [True, True]
    assert lab.antrea("kubeconfig").stdout.strip() == str(lab.kubeconfig)
    assert "lab_ready" in lab.antrea("logs", "supervisor").stdout
    assert lab.antrea("logs", "node1", check=False).returncode == 1  # reference CNI: no agent


async def test_up_refuses_a_name_in_use(lab: Lab) -> None:
    proc = lab.antrea("up", "--nodes", "1", check=False)
    assert proc.returncode != 0 and "already exists" in proc.stderr
    assert lab.antrea("status").returncode == 0  # the running lab is untouched


async def test_supervisor_restart_keeps_pods_and_serves_them_again(lab: Lab) -> None:
    """After a supervisor restart the API state persists and pods are adopted, not recreated."""
    body = json.loads(json.dumps(POD))
    body["metadata"]["name"] = "survivor"
    async with lab.client() as c:
        await c.create("/api/v1/namespaces/default/pods", body)

        async def running() -> bool:
            p = await c.get("/api/v1/namespaces/default/pods/survivor")
            return bool(p.get("status", {}).get("podIP"))

        await wait_for(running)
    before = sandbox.find(lab.spec, "default/survivor")
    assert before is not None
    lab.antrea("restart-supervisor")
    after = sandbox.find(lab.spec, "default/survivor")
    assert after is not None and after.container_id == before.container_id
    doc = await lab.probe(port=8080, namespaces=["default"])
    assert doc["matrix"] == {"default/survivor": {"default/survivor": True}}
    async with lab.client() as c:
        await c.delete("/api/v1/namespaces/default/pods/survivor")

        async def gone() -> bool:
            return sandbox.find(lab.spec, "default/survivor") is None

        await wait_for(gone)
    assert not netns.netns_path(before.netns).exists()


async def test_nodes_reach_the_api_server_over_the_underlay(lab: Lab) -> None:
    """kubectl inside a node namespace: admin by default, the node's identity on request."""
    proc = lab.exec_node(
        "node1", str(KUBECTL), "get", "nodes", "-o", "name", "--request-timeout=10s"
    )
    assert proc.stdout.split() == ["node/node1", "node/node2"]
    node_kc = str(lab.spec.node("node2").kubeconfig)
    own = lab.exec_node("node2", str(KUBECTL), "--kubeconfig", node_kc, "get", "node", "node2")
    assert "node2" in own.stdout
    env = lab.exec_node("node2", "env").stdout
    assert f"ANTREA_NODE_KUBECONFIG={node_kc}" in env


async def test_pods_wait_for_the_node_network(lab: Lab) -> None:
    """No CNI config: node NotReady, pod Pending with a Warning event; config back: it runs."""
    node = lab.spec.node("node2")
    conf = node.cni_conf_dir / "10-lab-bridge.conflist"
    parked = node.path / "parked.conflist"
    conf.rename(parked)
    body = json.loads(json.dumps(POD))
    body["metadata"]["name"] = "waiter"
    body["spec"]["nodeName"] = "node2"
    try:
        async with lab.client() as c:

            async def node_not_ready() -> bool:
                n = await c.get("/api/v1/nodes/node2")
                return any(
                    x["type"] == "Ready" and x["status"] == "False"
                    for x in n["status"]["conditions"]
                )

            await wait_for(node_not_ready)
            await c.create("/api/v1/namespaces/default/pods", body)

            async def warned() -> bool:
                evs = (await c.list("/api/v1/namespaces/default/events")).get("items") or []
                return any(
                    e["involvedObject"]["name"] == "waiter"
                    and e["reason"] == "FailedCreatePodSandBox"
                    for e in evs
                )

            await wait_for(warned)
            pod = await c.get("/api/v1/namespaces/default/pods/waiter")
            assert not pod.get("status", {}).get("podIP")
            parked.rename(conf)

            async def running() -> bool:
                p = await c.get("/api/v1/namespaces/default/pods/waiter")
                return bool(p.get("status", {}).get("podIP"))

            await wait_for(running)
            assert not await node_not_ready()
            await c.delete("/api/v1/namespaces/default/pods/waiter")

            async def gone() -> bool:
                return sandbox.find(lab.spec, "default/waiter") is None

            await wait_for(gone)
    finally:
        if parked.exists():
            parked.rename(conf)


def test_kubectl_logs_exec_events(lab: Lab) -> None:
    """kubectl logs shows what the pod's workload served, exec runs in the pod's network
    namespace (exit codes kept), and the kubelet's events show in get events / describe."""
    body = json.loads(json.dumps(POD))
    body["metadata"]["name"] = "streams"
    lab.kubectl("apply", "-f", "-", input=json.dumps(body))
    try:
        lab.kubectl("wait", "--for=condition=Ready", "pod/streams", "--timeout=60s")
        ip = json.loads(lab.kubectl("get", "pod", "streams", "-o", "json"))["status"]["podIP"]
        addrs = lab.kubectl("exec", "streams", "--", "ip", "-4", "-o", "addr", "show", "eth0")
        assert f"inet {ip}/" in addrs
        banner = lab.kubectl(
            "exec", "streams", "--", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080; cat <&3"
        )
        assert banner.strip() == "default/streams"
        failed = subprocess.run(
            [str(KUBECTL), "exec", "streams", "--", "sh", "-c", "echo oops >&2; exit 3"],
            env=lab.env(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert failed.returncode == 3 and "oops" in failed.stderr
        logs = lab.kubectl("logs", "streams").splitlines()
        assert any(line.endswith("listening on :8080/TCP") for line in logs)
        assert any("tcp 127.0.0.1:" in line and "-> :8080 answered" in line for line in logs)
        assert len(lab.kubectl("logs", "streams", "--tail=1").splitlines()) == 1
        events = lab.kubectl("get", "events", "--field-selector", "involvedObject.name=streams")
        assert "Started" in events and "Started container c" in events
        assert "Started container c" in lab.kubectl("describe", "pod", "streams")
    finally:
        lab.kubectl("delete", "pod", "streams", "--wait=false")
