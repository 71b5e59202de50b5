"""NetworkPolicy realization against a real OVS bridge, probed with real TCP/UDP.

One userspace OVS in a node namespace, nine pods (x, y, z x a, b, c) as namespaces on veths,
a minimal forwarding pipeline around the policy tables (classifier, conntrack, L2 forwarding
calculation, commit, output; all on one L2 segment), the controller's policy compiler fed with
the model's Pods/Namespaces/NetworkPolicies, and the agent's policy controller fed with the
WatchEvents a node would receive (snapshot diffs). Every conformance case (shared ones and
tests/e2e/netpol/cases) runs against it; the lab suite (tests/e2e/test_conformance.py) runs the
same cases across nodes.
"""

from __future__ import annotations

import array
import asyncio
import copy
import fcntl
import ipaddress
import os
import shutil
import socket
import struct
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from antrea.agent.networkpolicy.controller import NetworkPolicyController as AgentPolicies
from antrea.agent.networkpolicy.reconciler import PolicyReconciler
from antrea.agent.openflow.builder import FlowBuilder, NodeConfig, PodPort
from antrea.agent.openflow.pipeline import FROM_GATEWAY, TARGET_OFPORT
from antrea.apis.controlplane.codec import EventType, WatchEvent
from antrea.apis.controlplane.types import AppliedToGroup, ControlPlaneObject, Kind, PodReference
from antrea.controller.networkpolicy import NetworkPolicyController as Compiler
from antrea.ovs.openflow import (
    Flow,
    Match,
)
from antrea.ovs.openflow.client import FlowClient
from antrea.ovs.openflow.flow import Proto
from antrea.ovs.openflow.native import OpenFlowTransport
from antrea.ovs.ovsctl import DumpedFlow, parse_flow_line
from antrea.testbed.lab import netns as labnetns
from antrea.testbed.lab.probe import Target, probe_matrix, probe_pair
from antrea.testbed.lab.workload import PortSpec, Workload
from antrea.testbed.ovssandbox import OvsSandbox

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e" / "netpol"))
import caselib

pytestmark = [pytest.mark.root, pytest.mark.ovs]

NODE = "n1"
GW_IP = "10.244.1.1"
NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def tx_checksum_off(netns_name: str, ifname: str) -> None:
    """Turn off TX checksum offload on a veth end (what ``ethtool -K IF tx off`` does).

    The userspace datapath receives veth packets with partial checksums; its conntrack then
    sees a bad TCP/UDP checksum and marks the packet ``+inv`` (ping works, TCP does not).
    """

    def off() -> None:
        value = array.array("B", struct.pack("II", ETHTOOL_STXCSUM, 0))
        ifr = struct.pack("16sP", ifname.encode(), value.buffer_info()[0]) + bytes(16)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)

    labnetns.call_in(f"/var/run/netns/{netns_name}", off)


def pipeline(pods: dict[str, tuple[int, str, str]], gw_mac: str) -> list[Flow]:
    """The agent's pipeline (noEncap: everything on one L2 segment), built by its builder."""
    node = NodeConfig(
        pod_cidr=ipaddress.IPv4Network(f"{GW_IP}/24", strict=False),
        gateway_ip=ipaddress.IPv4Address(GW_IP),
        gateway_mac=gw_mac,
        encap=False,
    )
    builder = FlowBuilder(node, round_num=1)
    flows = builder.pipeline_flows() + builder.gateway_flows()
    for ofport, ip, mac in pods.values():
        flows += builder.pod_flows(PodPort(ofport, ipaddress.IPv4Address(ip), mac))
    return flows


def snapshot(compiler: Compiler) -> dict[tuple[Kind, str], ControlPlaneObject]:
    """What the controller would send to NODE now."""
    out: dict[tuple[Kind, str], ControlPlaneObject] = {}
    store = compiler.store
    for kind in (Kind.NETWORK_POLICY, Kind.ADDRESS_GROUP):
        for obj, span in store.list(kind):
            if NODE in span:
                out[(kind, obj.name)] = obj
    for obj, span in store.list(Kind.APPLIED_TO_GROUP):
        if NODE in span:
            atg = store.applied_to_group_for_node(obj.name, NODE)
            assert isinstance(atg, AppliedToGroup)
            out[(Kind.APPLIED_TO_GROUP, obj.name)] = atg
    return out


def diff_events(
    old: dict[tuple[Kind, str], ControlPlaneObject], new: dict[tuple[Kind, str], ControlPlaneObject]
) -> list[WatchEvent]:
    evs: list[WatchEvent] = []
    order = {Kind.ADDRESS_GROUP: 0, Kind.APPLIED_TO_GROUP: 1, Kind.NETWORK_POLICY: 2}
    for key in sorted(new, key=lambda k: (order[k[0]], k[1])):
        if key not in old:
            evs.append(WatchEvent(EventType.ADDED, key[0], new[key]))
        elif old[key] != new[key]:
            evs.append(WatchEvent(EventType.MODIFIED, key[0], new[key]))
    for key in sorted(old, key=lambda k: (-order[k[0]], k[1])):
        if key not in new:
            evs.append(WatchEvent(EventType.DELETED, key[0], old[key]))
    return evs


class LocalCluster:
    """The `caselib.Cluster` of this harness."""

    def __init__(self, ovs: OvsSandbox, prefix: str) -> None:
        self.ovs = ovs
        self.prefix = prefix
        self.compiler = Compiler()
        self.pods: dict[str, dict[str, Any]] = {}
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.policies: dict[tuple[str, str], dict[str, Any]] = {}
        self.ips: dict[str, str] = {}
        self.ofports: dict[PodReference, int] = {}
        self.workloads: list[Workload] = []
        self.sent: dict[tuple[Kind, str], ControlPlaneObject] = {}
        self.agent: AgentPolicies | None = None
        self.client: FlowClient | None = None

    def pod_netns(self, key: str) -> str:
        return f"{self.prefix}-{key.replace('/', '-')}"

    async def start(self) -> None:
        ovs = self.ovs
        ovs.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev")
        ovs.vsctl(
            "add-port", "br-int", "gw0", "--", "set", "interface", "gw0", "type=internal",
            "ofport_request=2",
        )  # fmt: skip
        node = ovs.netns
        assert node is not None
        for _ in range(50):
            if (
                subprocess.run(
                    ["ip", "-n", node, "link", "show", "gw0"], check=False, capture_output=True
                ).returncode
                == 0
            ):
                break
            await asyncio.sleep(0.1)
        _sh("ip", "-n", node, "addr", "add", f"{GW_IP}/24", "dev", "gw0")
        _sh("ip", "-n", node, "link", "set", "gw0", "up")
        gw_mac = subprocess.run(
            ["ip", "netns", "exec", node, "cat", "/sys/class/net/gw0/address"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        pod_ports: dict[str, tuple[int, str, str]] = {}
        for i, key in enumerate(f"{ns}/{p}" for ns in NAMESPACES for p in PODS):
            ns, name = key.split("/")
            pns = self.pod_netns(key)
            ip = f"10.244.1.{10 + i}"
            mac = f"02:00:0a:f4:01:{10 + i:02x}"
            host_if = f"v{ns}{name}{self.prefix[-4:]}"
            _sh("ip", "netns", "add", pns)
            _sh("ip", "link", "add", host_if, "netns", node, "type", "veth", "peer", "name",
                "eth0", "netns", pns)  # fmt: skip
            _sh("ip", "-n", pns, "link", "set", "eth0", "address", mac)
            _sh("ip", "-n", pns, "addr", "add", f"{ip}/24", "dev", "eth0")
            _sh("ip", "-n", pns, "link", "set", "eth0", "up")
            _sh("ip", "-n", pns, "link", "set", "lo", "up")
            _sh("ip", "-n", pns, "route", "add", "default", "via", GW_IP)
            tx_checksum_off(pns, "eth0")
            _sh("ip", "-n", node, "link", "set", host_if, "up")
            ofport = 10 + i
            ovs.vsctl("add-port", "br-int", host_if, "--", "set", "interface", host_if,
                      f"ofport_request={ofport}")  # fmt: skip
            pod_ports[key] = (ofport, ip, mac)
            self.ips[key] = ip
            self.ofports[PodReference(ns, name)] = ofport
            w = Workload(key, f"/var/run/netns/{pns}")
            await w.start([PortSpec(port, proto) for port in (80, 81) for proto in ("TCP", "UDP")])
            self.workloads.append(w)
            self.pods[key] = {
                "metadata": {"namespace": ns, "name": name, "labels": {"pod": name}},
                "spec": {
                    "nodeName": NODE,
                    "containers": [
                        {
                            "name": f"cont-{port}-{proto.lower()}",
                            "ports": [
                                {
                                    "containerPort": port,
                                    "name": f"serve-{port}-{proto.lower()}",
                                    "protocol": proto,
                                }
                            ],
                        }
                        for port in (80, 81)
                        for proto in ("TCP", "UDP", "SCTP")
                    ],
                },
                "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
            }
        for ns in NAMESPACES:
            self.namespaces[ns] = {
                "metadata": {"name": ns, "labels": {"ns": ns, "kubernetes.io/metadata.name": ns}}
            }
        with self.compiler.batch():
            for nsobj in self.namespaces.values():
                self.compiler.add_namespace(nsobj)
            for pod in self.pods.values():
                self.compiler.add_pod(pod)
        # the agent's default transport: one held OpenFlow 1.5 connection
        self.transport = OpenFlowTransport(ovs.ofctl_target("br-int"))
        self.client = FlowClient(self.transport)
        await self.client.sync({"test-pipeline": pipeline(pod_ports, gw_mac)})
        reconciler = PolicyReconciler(
            self.client,
            round_num=1,
            ofport_of=self.ofports.get,
            settle=self.revalidate,
            gateway_ip=GW_IP,
            gateway_mark=FROM_GATEWAY.match(),
        )
        self.agent = AgentPolicies(node_name=NODE, reconciler=reconciler)
        self.sent = snapshot(self.compiler)
        for ev in diff_events({}, self.sent):
            self.agent.handle(ev)
        self.agent.handle(WatchEvent(EventType.BOOKMARK))
        self._worker = asyncio.create_task(self.agent.run(self._never()))
        await self.settle()

    async def revalidate(self) -> None:
        await asyncio.to_thread(
            self.ovs.run,
            ["ovs-appctl", "-t", f"{self.ovs.rundir}/ovs-vswitchd.ctl", "revalidator/wait"],
        )

    async def _never(self) -> AsyncIterator[WatchEvent]:
        await asyncio.Event().wait()
        yield WatchEvent(EventType.BOOKMARK)  # pragma: no cover

    async def stop(self) -> None:
        if getattr(self, "_worker", None) is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        for w in self.workloads:
            await w.stop()
        if getattr(self, "transport", None) is not None:
            await self.transport.close()

    # -- caselib.Cluster ------------------------------------------------------------------
    async def pod_ips(self) -> dict[str, str]:
        return dict(self.ips)

    async def list_policies(self) -> list[tuple[str, str]]:
        return sorted(self.policies)

    async def apply_policy(self, policy: dict[str, Any]) -> None:
        meta = policy["metadata"]
        key = (meta.get("namespace", "default"), meta["name"])
        old = self.policies.get(key)
        meta.setdefault("namespace", key[0])
        meta["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
        meta["generation"] = old["metadata"]["generation"] + 1 if old else 1
        self.policies[key] = policy
        if old is None:
            self.compiler.add_network_policy(policy)
        else:
            self.compiler.update_network_policy(old, policy)

    async def delete_policy(self, namespace: str, name: str) -> None:
        old = self.policies.pop((namespace, name), None)
        if old is not None:
            self.compiler.delete_network_policy(old)

    async def relabel_pod(self, key: str, set_: dict[str, str], remove: list[str]) -> None:
        old = self.pods[key]
        labels = {k: v for k, v in old["metadata"]["labels"].items() if k not in remove}
        labels.update(set_)
        new = {**old, "metadata": {**old["metadata"], "labels": labels}}
        self.pods[key] = new
        self.compiler.update_pod(old, new)

    async def relabel_namespace(self, ns: str, set_: dict[str, str], remove: list[str]) -> None:
        old = self.namespaces[ns]
        labels = {k: v for k, v in old["metadata"]["labels"].items() if k not in remove}
        labels.update(set_)
        new = {"metadata": {**old["metadata"], "labels": labels}}
        self.namespaces[ns] = new
        self.compiler.update_namespace(old, new)

    async def settle(self) -> None:
        assert self.agent is not None
        now = snapshot(self.compiler)
        for ev in diff_events(self.sent, now):
            self.agent.handle(ev)
        self.sent = now
        await asyncio.sleep(0)
        await self.agent.wait_idle()

    async def probe(self, protocol: str, port: int) -> dict[tuple[str, str], bool | str]:
        targets = [
            Target(k, f"/var/run/netns/{self.pod_netns(k)}", ip) for k, ip in self.ips.items()
        ]
        doc = await probe_matrix(targets, protocol=protocol, port=port)
        return {(s, d): ok for s, row in doc["matrix"].items() for d, ok in row.items()}

    async def reset(self) -> None:
        for key in list(self.policies):
            await self.delete_policy(*key)
        for pod_key, pod in list(self.pods.items()):
            if pod["metadata"]["labels"] != {"pod": pod_key.split("/")[1]}:
                await self.relabel_pod(
                    pod_key, {"pod": pod_key.split("/")[1]}, list(pod["metadata"]["labels"])
                )
        for ns, obj in list(self.namespaces.items()):
            want = {"ns": ns, "kubernetes.io/metadata.name": ns}
            if obj["metadata"]["labels"] != want:
                await self.relabel_namespace(ns, want, list(obj["metadata"]["labels"]))
        await self.settle()

    def dump(self, table: int) -> list[str]:
        out = self.ovs.run(
            ["ovs-ofctl", "-O", "OpenFlow15", "--no-stats", "dump-flows",
             self.ovs.ofctl_target("br-int"), f"table={table}"]
        ).stdout  # fmt: skip
        return [line.strip() for line in out.splitlines() if "priority" in line]

    def flows(self, table: int) -> list[DumpedFlow]:
        """`dump` parsed (`antrea.ovs.ovsctl`: the match and conjunctions as values)."""
        return [f for f in map(parse_flow_line, self.dump(table)) if f is not None]


def _need_root_and_ovs() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if shutil.which("ovs-vswitchd") is None:
        pytest.skip("needs Open vSwitch")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalCluster]:
    _need_root_and_ovs()
    prefix = f"antrea-np-{uuid.uuid4().hex[:6]}"
    node = f"{prefix}-node"
    subprocess.run(["ip", "netns", "add", node], check=True)
    sandbox = OvsSandbox(rundir=tmp_path_factory.mktemp("ovs"), netns=node)
    c = LocalCluster(sandbox, prefix)
    try:
        sandbox.start()
        await c.start()
        yield c
    finally:
        await c.stop()
        sandbox.stop()
        for key in c.pods:
            subprocess.run(["ip", "netns", "del", c.pod_netns(key)], check=False)
        for ns in NAMESPACES:
            for p in PODS:
                subprocess.run(["ip", "netns", "del", c.pod_netns(f"{ns}/{p}")], check=False,
                               capture_output=True)  # fmt: skip
        subprocess.run(["ip", "netns", "del", node], check=False)


CASES = caselib.all_cases()


@pytest.mark.asyncio(loop_scope="module")
async def test_no_policy_everything_connected(cluster: LocalCluster) -> None:
    got = await cluster.probe("TCP", 80)
    assert all(got.values()), caselib.render(got)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
async def test_case(cluster: LocalCluster, case: Any) -> None:
    await cluster.reset()
    try:
        failures = await caselib.run_case(case, cluster)
    finally:
        await cluster.reset()
    assert not failures, "\n".join(failures)
    # nothing stale: with every policy gone only the fixed flows remain
    assert cluster.agent is not None
    assert not cluster.agent.reconciler.realized


@pytest.mark.asyncio(loop_scope="module")
async def test_flows_read_like_antrea(cluster: LocalCluster) -> None:
    await cluster.reset()
    await cluster.apply_policy(
        {
            "metadata": {"namespace": "x", "name": "a-from-yb"},
            "spec": {
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                       "podSelector": {"matchLabels": {"pod": "b"}}}]}],
            },
        }
    )  # fmt: skip
    await cluster.settle()
    t90 = cluster.dump(90)
    t100 = cluster.dump(100)
    yb = cluster.ips["y/b"]
    ofport = cluster.ofports[PodReference("x", "a")]
    assert any(f"priority=200,ip,nw_src={yb} actions=conjunction(" in x for x in t90), t90
    assert any(f"priority=200,ip,reg1={ofport:#x} actions=conjunction(" in x for x in t90), t90
    assert any("priority=190,conj_id=" in x for x in t90), t90
    assert any(f"priority=200,ip,reg1={ofport:#x} actions=drop" in x for x in t100), t100
    # the gateway (host, kubelet probes) still reaches the isolated pod
    node = cluster.ovs.netns
    assert node is not None
    out = subprocess.run(
        ["ip", "netns", "exec", node, sys.executable, "-c",
         "import socket,sys; s=socket.create_connection((sys.argv[1], 80), timeout=2); print('ok')",
         cluster.ips["x/a"]], check=False, capture_output=True, text=True,
    )  # fmt: skip
    assert out.stdout.strip() == "ok", out.stderr
    got = await cluster.probe("TCP", 80)
    assert not got[("x/b", "x/a")] and got[("y/b", "x/a")]
    await cluster.reset()


# -- no size ceiling ------------------------------------------------------------------------
# A clause flow carries at most MAX_CONJUNCTIONS_PER_FLOW conjunction actions (one OpenFlow
# message); beyond that the reconciler spreads conjunctions over priority bands of the table.


def _cidr_rules(n: int, port: int | None = None) -> list[dict[str, Any]]:
    """n ingress rules from distinct /32s of 172.16/12 (no pod there), optionally on TCP port."""
    rules: list[dict[str, Any]] = []
    for i in range(n):
        rule: dict[str, Any] = {
            "from": [{"ipBlock": {"cidr": f"172.{16 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}/32"}}]
        }
        if port is not None:
            rule["ports"] = [{"protocol": "TCP", "port": port}]
        rules.append(rule)
    return rules


def _allow_from(name: str, target: str, peer: str, port: int) -> dict[str, Any]:
    """A policy admitting pod `peer` ("ns/name") to pod `target` on one TCP port."""
    ns, pod = target.split("/")
    peer_ns, peer_pod = peer.split("/")
    return {
        "metadata": {"namespace": ns, "name": name},
        "spec": {
            "podSelector": {"matchLabels": {"pod": pod}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": peer_ns}},
                                   "podSelector": {"matchLabels": {"pod": peer_pod}}}],
                         "ports": [{"protocol": "TCP", "port": port}]}],
        },
    }  # fmt: skip


def _target(cluster: LocalCluster, key: str) -> Target:
    return Target(key, f"/var/run/netns/{cluster.pod_netns(key)}", cluster.ips[key])


async def _reachable(cluster: LocalCluster, src: str, dst: str, port: int) -> bool:
    return await probe_pair(_target(cluster, src), _target(cluster, dst), protocol="TCP", port=port)


def _clause_priorities(cluster: LocalCluster, match: Match) -> set[int]:
    """The priorities (bands) of table 90's clause flows matching exactly `match`."""
    return {f.priority for f in cluster.flows(90) if f.conjunctions and f.parsed.exact == match}


def _ip(*, ofport: int | None = None, src: str | None = None) -> Match:
    """An ``ip`` match on a pod's ofport (reg1: the ingress "to" clause, the isolation) or a
    source address (a peer clause)."""
    regs = (TARGET_OFPORT.match(ofport),) if ofport is not None else ()
    return Match(proto=Proto.IP, regs=regs, nw_src=ipaddress.ip_address(src) if src else None)


@pytest.mark.asyncio(loop_scope="module")
async def test_one_pod_targeted_by_15000_rules(cluster: LocalCluster) -> None:
    """15,000 rules on x/a: its reg1 clause is shared by 15,000 conjunctions (4 bands); a rule
    added afterwards lands in the last band and is enforced with real packets."""
    await cluster.reset()
    try:
        await cluster.apply_policy(
            {
                "metadata": {"namespace": "x", "name": "many"},
                "spec": {
                    "podSelector": {"matchLabels": {"pod": "a"}},
                    "ingress": _cidr_rules(15000),
                },
            }
        )
        await cluster.settle()
        assert cluster.agent is not None
        reg1 = _ip(ofport=cluster.ofports[PodReference("x", "a")])
        assert _clause_priorities(cluster, reg1) == {200, 199, 198, 197}
        await cluster.apply_policy(_allow_from("yb", "x/a", "y/b", 80))
        await cluster.settle()
        assert _clause_priorities(cluster, _ip(src=cluster.ips["y/b"])) == {197}
        assert await _reachable(cluster, "y/b", "x/a", 80)
        assert not await _reachable(cluster, "x/b", "x/a", 80)
        assert await _reachable(cluster, "x/b", "x/c", 80)  # not isolated
    finally:
        await cluster.reset()
    assert not [f for f in cluster.flows(90) if f.conjunctions]


@pytest.mark.asyncio(loop_scope="module")
async def test_5000_policies_share_one_port_clause(cluster: LocalCluster) -> None:
    """5,000 policies admitting distinct peers on TCP 8080 to x/a: the shared tcp,tp_dst=8080
    clause (and x/a's reg1 clause) carry 5,000 conjunctions, over two bands."""
    await cluster.reset()
    extra = Workload("x/a:8080", f"/var/run/netns/{cluster.pod_netns('x/a')}")
    await extra.start([PortSpec(8080, "TCP")])
    try:
        rules = _cidr_rules(4999, port=8080)
        for i, rule in enumerate(rules):
            await cluster.apply_policy(
                {
                    "metadata": {"namespace": "x", "name": f"p{i}"},
                    "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [rule]},
                }
            )
        await cluster.apply_policy(_allow_from("p-yb", "x/a", "y/b", 8080))
        await cluster.settle()
        assert cluster.agent is not None
        assert len(cluster.agent.reconciler.realized) == 5000
        assert _clause_priorities(cluster, Match(proto=Proto.TCP, tp_dst=8080)) == {200, 199}
        assert await _reachable(cluster, "y/b", "x/a", 8080)
        assert not await _reachable(cluster, "z/b", "x/a", 8080)
        assert not await _reachable(cluster, "y/b", "x/a", 80)  # isolated, 80 not admitted
    finally:
        await extra.stop()
        await cluster.reset()
    assert not [f for f in cluster.flows(90) if f.conjunctions]


# -- fail closed, per rule (issue 9) ----------------------------------------------------------
POISON = "10.66.66.0/24"


def _poisoned(name: str) -> dict[str, Any]:
    """x/a admits x/b — plus a peer whose realization the test makes fail."""
    return {
        "metadata": {"namespace": "x", "name": name},
        "spec": {
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}},
                                  {"ipBlock": {"cidr": POISON}}]}],
        },
    }  # fmt: skip


DENY_Y = {"metadata": {"namespace": "y", "name": "deny-all"},
          "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}  # fmt: skip


async def _check_failed_closed(cluster: LocalCluster, name: str, stage: str, why: str) -> None:
    from prometheus_client import CollectorRegistry

    from antrea.agent.networkpolicy.metrics import PolicyMetrics

    assert cluster.agent is not None
    registry = CollectorRegistry()
    metrics = PolicyMetrics(registry, dict)
    cluster.agent.on_batch = metrics.observe_batch
    try:
        await cluster.apply_policy(_poisoned(name))
        await cluster.settle()
        # its pod keeps its isolation: nothing reaches x/a, not even what the rule allows
        assert not await _reachable(cluster, "x/b", "x/a", 80)
        assert not await _reachable(cluster, "y/a", "x/a", 80)
        assert await _reachable(cluster, "x/b", "x/c", 80)  # other pods untouched
        ofport = cluster.ofports[PodReference("x", "a")]
        assert any(f.drops and f.parsed.exact == _ip(ofport=ofport) for f in cluster.flows(100))
        uid = cluster.policies[("x", name)]["metadata"]["uid"]
        state = cluster.agent.policy_state(uid)
        assert state is not None and state.phase == "Failed" and why in state.message, state
        count = registry.get_sample_value(
            "antrea_agent_networkpolicy_rule_failures_total", {"stage": stage}
        )
        assert count is not None and count >= 1
        # a policy created afterwards, elsewhere, is enforced
        await cluster.apply_policy(copy.deepcopy(DENY_Y))
        await cluster.settle()
        assert not await _reachable(cluster, "x/b", "y/b", 80)
        assert not await _reachable(cluster, "z/a", "y/c", 80)
        assert await _reachable(cluster, "y/a", "z/b", 80)
        deny_uid = cluster.policies[("y", "deny-all")]["metadata"]["uid"]
        assert cluster.agent.policy_state(deny_uid).phase == "Realized"  # type: ignore[union-attr]
    finally:
        cluster.agent.on_batch = None
        await cluster.reset()


@pytest.mark.asyncio(loop_scope="module")
async def test_rule_whose_planning_crashes_fails_closed(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from antrea.agent.networkpolicy import conjunctions
    from antrea.agent.networkpolicy import reconciler as reconciler_mod

    real = conjunctions.plan_rule

    def plan_rule(rule: Any, ofport_of: Any, *memo: Any) -> Any:
        if any(b.cidr == POISON for b in rule.peer_blocks):
            raise TypeError("injected planner failure")
        return real(rule, ofport_of, *memo)

    await cluster.reset()
    monkeypatch.setattr(reconciler_mod, "plan_rule", plan_rule)
    await _check_failed_closed(cluster, "poisoned-plan", "plan", "injected planner failure")


@pytest.mark.asyncio(loop_scope="module")
async def test_rule_the_switch_refuses_fails_closed(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OVS itself refuses one clause flow (a goto_table backwards): the bundle is bisected, the
    rule's other flows are withdrawn, its pod stays isolated."""
    from antrea.agent.networkpolicy import flows as fb
    from antrea.ovs.openflow.flow import GotoTable

    real = fb.clause_flow

    def clause_flow(round_num: int, table: int, match: Any, actions: Any, band: int = 0) -> Any:
        flow = real(round_num, table, match, actions, band)
        if str(match.nw_src) == POISON:
            return flow.with_actions((GotoTable(10),))  # OVS: "goto_table to earlier table"
        return flow

    await cluster.reset()
    monkeypatch.setattr(fb, "clause_flow", clause_flow)
    await _check_failed_closed(cluster, "poisoned-ovs", "apply", "np-match")


@pytest.mark.asyncio(loop_scope="module")
async def test_rule_whose_isolation_crashes_too_gets_the_last_resort(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planning AND the isolation retry crash (`isolation_atoms` injected): the rule used to end
    with no flow at all, x/a open to everyone. The last resort (agent/networkpolicy/
    lastresort.py) drops x/a's new ingress from its ofport alone, on the real bridge."""
    from antrea.agent.networkpolicy import conjunctions
    from antrea.agent.networkpolicy import reconciler as reconciler_mod
    from antrea.agent.openflow.pipeline import ANTREA_INGRESS_RULE, PRIO_LAST_RESORT

    real_plan, real_iso = conjunctions.plan_rule, conjunctions.isolation_atoms

    def poisoned(rule: Any) -> bool:
        return any(b.cidr == POISON for b in rule.peer_blocks)

    def plan_rule(rule: Any, ofport_of: Any, *memo: Any) -> Any:
        if poisoned(rule):
            raise TypeError("injected planner failure")
        return real_plan(rule, ofport_of, *memo)

    def isolation_atoms(rule: Any, ofport_of: Any) -> Any:
        if poisoned(rule):
            raise TypeError("injected isolation failure")
        return real_iso(rule, ofport_of)

    await cluster.reset()
    monkeypatch.setattr(reconciler_mod, "plan_rule", plan_rule)
    monkeypatch.setattr(reconciler_mod, "isolation_atoms", isolation_atoms)
    assert cluster.agent is not None
    try:
        await cluster.apply_policy(_poisoned("poisoned-iso"))
        await cluster.settle()
        assert not await _reachable(cluster, "x/b", "x/a", 80)
        assert not await _reachable(cluster, "y/a", "x/a", 80)
        assert await _reachable(cluster, "x/b", "x/c", 80)  # other pods untouched
        ofport = cluster.ofports[PodReference("x", "a")]
        last = [f for f in cluster.flows(ANTREA_INGRESS_RULE) if f.priority == PRIO_LAST_RESORT]
        assert [f.parsed.exact for f in last if f.drops] == [_ip(ofport=ofport)], last
        uid = cluster.policies[("x", "poisoned-iso")]["metadata"]["uid"]
        state = cluster.agent.policy_state(uid)
        assert state is not None and state.phase == "Failed", state
        assert "realization crashed" in state.message, state
    finally:
        await cluster.reset()
    assert not [f for f in cluster.flows(ANTREA_INGRESS_RULE) if f.priority == PRIO_LAST_RESORT]
