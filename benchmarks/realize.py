"""NetworkPolicy realization: latency vs the raw OVS floor, flow count, datapath cost.

Usage (root): ``python benchmarks/realize.py [--rules N] [--throughput-rules 10000]``

1. Realization latency for 5,000 / 10,000 / 15,000 ingress rules (or ``--rules N``), shaped
   like upstream Antrea's BenchmarkRealizeNetworkPolicy: every rule has one random CIDR peer
   (prefix length 8..32), 10 rules per policy, policies applied to 50 local pods (each pod is
   the target of N/50 rules). Clock: from the control-plane frames arriving at the agent (the
   msgpack bytes the controller would send: initial objects + BOOKMARK) to every flow of the
   initial bundle installed in a real userspace OVS bridge (decode, rule cache, conjunction
   planning, one ``ovs-ofctl --bundle``). The installed flow count is verified with a dump.
   The floor: the very same flows (rendered once, outside the clock) installed on a fresh
   bridge by ONE raw ``ovs-ofctl -O OpenFlow15 --bundle add-flows``. ``ratio`` = ours / floor.
   From the API write (default; ``--no-api`` skips it): a private 1-node lab (our agent, the
   controller in ``antrea daemon``), namespace ``bench`` with pods on node1 created first, then
   the same number of random-CIDR (/16../32) ingress rules written as Kubernetes NetworkPolicies
   (``from: [{ipBlock: {cidr}}]``) in the fewest objects of 2,500 rules, one pod each (the
   shape of the first runs, kept for comparability; any number of rules per pod is realized
   since the priority bands), all created concurrently. Clock: from just before the create
   requests to br-int holding exactly the baseline plus the flows the agent code computes for
   those rules (polled every 20 ms from the tables' statistics over one held OpenFlow
   connection, `FlowCounter`: cheap for ovs-vswitchd, unlike an aggregate request per poll).
   ``api_ratio`` = api_seconds / the floor of the same size.
2. Flow count against the naive cross product for a policy set with many peers, targets and
   ports (conjunctive encoding: sum of the sets, not their product).
3. TCP throughput (iperf3, 3 s) between two pods on the bridge with 0 and with
   ``--throughput-rules`` rules installed (the rules target the server pod; one of them allows
   the client), as a ratio.

The last line is one JSON object with at least ``rules``, ``seconds``, ``floor_seconds``,
``ratio``, ``flows`` (the largest run), plus ``runs`` (every size), ``flow_count``,
``throughput`` and, from the lab, ``api_seconds``, ``api_ratio``, ``api_complete``,
``policies``, ``single_policy_accepted`` (largest run; per size in ``runs``).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import fcntl
import ipaddress
import json
import os
import random
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from project_env import use_project_venv

REPO = Path(__file__).resolve().parents[1]
SIZES = (5000, 10000, 15000)
TARGET_PODS = 50
RULES_PER_POLICY = 10


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


# -- the policy set --------------------------------------------------------------------------
def random_cidr(rng: random.Random) -> str:
    plen = rng.randint(8, 32)
    addr = rng.getrandbits(32)
    return str(ipaddress.IPv4Network((addr, plen), strict=False))


def policy_objects(n_rules: int, seed: int = 7) -> list[Any]:
    """AppliedToGroups (one local pod each) and policies of 10 random-CIDR ingress rules."""
    from antrea.testbed.controlplane import AppliedToGroup, IPBlock, ingress, member, policy

    rng = random.Random(seed)
    objs: list[Any] = []
    for p in range(TARGET_PODS):
        objs.append(
            AppliedToGroup(
                f"atg-{p}", frozenset({member("bench", f"pod{p}", f"10.244.1.{p + 10}")})
            )
        )
    n_policies = (n_rules + RULES_PER_POLICY - 1) // RULES_PER_POLICY
    left = n_rules
    for i in range(n_policies):
        k = min(RULES_PER_POLICY, left)
        left -= k
        rules = [ingress(blocks=[IPBlock(random_cidr(rng))]) for _ in range(k)]
        objs.append(policy(f"np-{i}", rules, [f"atg-{i % TARGET_PODS}"], namespace="bench"))
    return objs


def frames(objs: list[Any], version: int = 2) -> bytes:
    """The stream the controller sends the agent: wire version 2, which agents ask for."""
    from antrea.apis.controlplane.codec import encode_event
    from antrea.testbed.controlplane import BOOKMARK, added

    return b"".join(encode_event(added(o), version) for o in objs) + encode_event(BOOKMARK, version)


# -- OVS ---------------------------------------------------------------------------------------
class Node:
    """A netns with a private OVS; bridges are created per run."""

    def __init__(self, workdir: Path) -> None:
        from antrea.testbed.ovssandbox import OvsSandbox

        self.netns = f"antrea-bench-{uuid.uuid4().hex[:6]}"
        sh("ip", "netns", "add", self.netns)
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        self.ovs = OvsSandbox(rundir=workdir / "ovs", netns=self.netns)
        self.ovs.start()
        self.pods: list[str] = []

    def vswitchd_cpu(self) -> float:
        """CPU seconds (user + system) ovs-vswitchd has used so far."""
        pid = self.ovs.pids()[0]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def add_bridge(self, name: str) -> str:
        self.ovs.vsctl("add-br", name, "--", "set", "bridge", name, "datapath_type=netdev")
        return self.ovs.ofctl_target(name)

    def del_bridge(self, name: str) -> None:
        self.ovs.vsctl("--if-exists", "del-br", name)

    def flow_count(self, bridge: str) -> int:
        out = self.ovs.run(
            [
                "ovs-ofctl",
                "-O",
                "OpenFlow15",
                "--no-stats",
                "dump-flows",
                self.ovs.ofctl_target(bridge),
            ]
        ).stdout
        return sum(1 for line in out.splitlines() if "actions=" in line)

    def ofctl_bundle(self, bridge: str, path: Path) -> float:
        argv = [
            "ovs-ofctl",
            "-O",
            "OpenFlow15",
            "--bundle",
            "add-flows",
            self.ovs.ofctl_target(bridge),
            str(path),
        ]
        start = time.perf_counter()
        self.ovs.run(argv)
        return time.perf_counter() - start

    def close(self) -> None:
        self.ovs.stop()
        for p in self.pods:
            sh("ip", "netns", "del", p, check=False)
        sh("ip", "netns", "del", self.netns, check=False)


# -- 1. latency ------------------------------------------------------------------------------
async def realize_once(node: Node, n_rules: int) -> dict[str, Any]:
    from antrea.agent.controlplane_client import decode_chunk
    from antrea.agent.networkpolicy.controller import NetworkPolicyController
    from antrea.agent.networkpolicy.reconciler import PolicyReconciler
    from antrea.apis.controlplane.codec import FrameDecoder
    from antrea.apis.controlplane.types import PodReference
    from antrea.ovs.openflow.client import FlowClient
    from antrea.ovs.openflow.native import OpenFlowTransport
    from antrea.ovs.openflow.render import render_bundle

    objs = policy_objects(n_rules)
    data = frames(objs)
    ofports = {PodReference("bench", f"pod{p}"): 100 + p for p in range(TARGET_PODS)}
    bridge = f"br-r{n_rules}"
    target = node.add_bridge(bridge)
    try:
        transport = OpenFlowTransport(target)  # the agent's transport
        client = FlowClient(transport)
        rec = PolicyReconciler(
            client,
            round_num=1,
            ofport_of=ofports.get,
            gateway_ip="10.244.1.1",
            install_miss_flows=True,
        )
        ctl = NetworkPolicyController(node_name="bench", reconciler=rec)
        worker = asyncio.create_task(ctl.run(_never()))
        await asyncio.sleep(0)
        cpu0, ovs0 = time.process_time(), node.vswitchd_cpu()
        start = time.perf_counter()
        decoder = FrameDecoder()
        chunk = 1 << 16
        for i in range(0, len(data), chunk):  # as the bytes come off the socket
            for ev in decode_chunk(decoder, data[i : i + chunk]):  # as the agent decodes
                ctl.handle(ev)
            await asyncio.sleep(0)
        await ctl.ready.wait()
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        ovs_cpu = node.vswitchd_cpu() - ovs0
        worker.cancel()
        await transport.close()
        installed = node.flow_count(bridge)
        flows = client.installed()
        assert installed >= len(flows), (installed, len(flows))
        batch = ctl.last_batch
        bundle_s = batch.seconds if batch else 0.0
    finally:
        node.del_bridge(bridge)
    # the floor: the same flows, one raw ovs-ofctl bundle on a fresh bridge
    floor_bridge = f"br-f{n_rules}"
    node.add_bridge(floor_bridge)
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".flows", delete=False) as fh:
            fh.write(render_bundle(add=flows))
            path = Path(fh.name)
        ofctl0, fovs0 = resource.getrusage(resource.RUSAGE_CHILDREN), node.vswitchd_cpu()
        floor = node.ofctl_bundle(floor_bridge, path)
        ofctl1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        floor_ofctl_cpu = (ofctl1.ru_utime - ofctl0.ru_utime) + (ofctl1.ru_stime - ofctl0.ru_stime)
        floor_ovs_cpu = node.vswitchd_cpu() - fovs0
        floor_installed = node.flow_count(floor_bridge)
        path.unlink()
    finally:
        node.del_bridge(floor_bridge)
    # the same flows through the agent's native transport alone (no planning): its floor
    native_bridge = f"br-n{n_rules}"
    native_target = node.add_bridge(native_bridge)
    try:
        fresh = [f.with_cookie(f.cookie) for f in flows]  # keys and encodings not yet computed
        native = OpenFlowTransport(native_target)
        await native.bundle(add=[])  # nothing: connects lazily below
        t0 = time.perf_counter()
        await native.bundle(add=fresh)
        native_s = time.perf_counter() - t0
        await native.close()
    finally:
        node.del_bridge(native_bridge)
    return {
        "rules": n_rules,
        "seconds": round(seconds, 3),
        "reconcile_seconds": round(bundle_s, 3),
        "floor_seconds": round(floor, 3),
        "ratio": round(seconds / floor, 2),
        "native_transport_seconds": round(native_s, 3),
        # CPU seconds, much less sensitive to other load than wall time: the agent process
        # and ovs-vswitchd during ours; ovs-ofctl (+ `ip netns exec`) and ovs-vswitchd for
        # the floor
        "cpu_seconds": round(cpu, 3),
        "vswitchd_cpu_seconds": round(ovs_cpu, 3),
        "floor_ofctl_cpu_seconds": round(floor_ofctl_cpu, 3),
        "floor_vswitchd_cpu_seconds": round(floor_ovs_cpu, 3),
        "cpu_ratio": round((cpu + ovs_cpu) / max(floor_ofctl_cpu + floor_ovs_cpu, 1e-9), 2),
        "flows": len(flows),
        "flows_in_ovs": installed,
        "floor_flows_in_ovs": floor_installed,
        "frames_bytes": len(data),
    }


async def _never() -> Any:
    await asyncio.Event().wait()
    yield None  # pragma: no cover


# -- 1b. latency from the Kubernetes API write -------------------------------------------------
# The rules are split over the fewest policies of API_RULES_PER_POLICY rules, each selecting its
# own pod: the shape of the first runs, when a clause flow shared by more than ~4,000
# conjunctions did not fit one OpenFlow message. Priority bands lifted that limit (any number of
# rules per pod is realized); the shape is kept so the runs stay comparable.
API_RULES_PER_POLICY = 2500
API_NAMESPACE = "bench"
API_TIMEOUT = 300.0
API_SETTLE = 15.0  # a loaded machine may take seconds between two bundles


def api_cidr(rng: random.Random) -> str:
    plen = rng.randint(16, 32)
    return str(ipaddress.IPv4Network((rng.getrandbits(32), plen), strict=False))


def api_shape(n_rules: int, seed: int = 11) -> list[list[str]]:
    """The CIDRs of each policy: ceil(n / API_RULES_PER_POLICY) policies, one pod each."""
    rng = random.Random(seed)
    cidrs = [api_cidr(rng) for _ in range(n_rules)]
    step = API_RULES_PER_POLICY
    return [cidrs[i : i + step] for i in range(0, n_rules, step)]


def api_policy(index: int, cidrs: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"bench-{index}", "namespace": API_NAMESPACE},
        "spec": {
            "podSelector": {"matchLabels": {"pod": f"p{index}"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"ipBlock": {"cidr": c}}]} for c in cidrs],
        },
    }


async def api_expected_flows(shape: list[list[str]]) -> int:
    """How many flows the agent adds for these policies (same code, recorded, not installed)."""
    from antrea.agent.networkpolicy.cache import RuleCache
    from antrea.agent.networkpolicy.reconciler import PolicyReconciler
    from antrea.apis.controlplane.types import AppliedToGroup, IPBlock, PodReference
    from antrea.ovs.openflow.client import FlowClient
    from antrea.testbed.controlplane import added, ingress, member
    from antrea.testbed.controlplane import policy as cp_policy
    from antrea.testbed.openflow import RecordingTransport

    objs: list[Any] = []
    for i, cidrs in enumerate(shape):
        pod = member(API_NAMESPACE, f"p{i}", f"10.244.1.{i + 10}")
        objs.append(AppliedToGroup(f"atg-{i}", frozenset({pod})))
        rules = [ingress(blocks=[IPBlock(c)]) for c in cidrs]
        objs.append(cp_policy(f"np-{i}", rules, [f"atg-{i}"], namespace=API_NAMESPACE))
    ofports = {PodReference(API_NAMESPACE, f"p{i}"): 10 + i for i in range(len(shape))}
    rt = RecordingTransport()
    rec = PolicyReconciler(
        FlowClient(rt), round_num=1, ofport_of=ofports.get, gateway_ip="10.244.1.1"
    )
    cache = RuleCache()
    for o in objs:
        cache.apply(added(o))
    await rec.reconcile({r: cache.completed(r) for r in cache.take_dirty()})
    base = {f.key for f in rec.base_flows()}
    return sum(1 for k in rt.flows if k not in base)


def ovs_flow_count(env: dict[str, str]) -> int:
    """All flows on the node's br-int, via one aggregate request (walks every flow)."""
    out = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow15", "dump-aggregate", "br-int"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return int(out.split("flow_count=")[1].split()[0])


# OpenFlow 1.5 (wire version 6): header, HELLO, ECHO, MULTIPART request/reply, TABLE_STATS
OFP_HEADER = struct.Struct("!BBHI")
OFP15, OFPT_HELLO, OFPT_ECHO_REQUEST, OFPT_ECHO_REPLY = 6, 0, 2, 3
OFPT_MULTIPART_REQUEST, OFPT_MULTIPART_REPLY, OFPMP_TABLE_STATS, OFPMPF_REPLY_MORE = 18, 19, 3, 1
TABLE_STATS = struct.Struct("!B3xIQQ")  # table_id, active_count, lookup_count, matched_count


class FlowCounter:
    """br-int's flow count while a run is clocked, from the tables' statistics over one held
    connection to its management socket.

    The count is the sum of every table's ``active_count`` (the same number as
    ``dump-aggregate``'s ``flow_count``, checked against it when opened). ovs-vswitchd answers
    it by reading each table's rule count (~1 ms at 45,000 flows) where an aggregate request
    walks every flow (~10 ms, on the thread that is also applying the bundle being measured),
    and no ``ovs-ofctl`` process (~6 ms of CPU) is started per poll: polling every 20 ms must not
    slow down what it measures.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.path = str(Path(env["OVS_RUNDIR"]) / "br-int.mgmt")
        self.xid = 0
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> FlowCounter:
        self.reader, self.writer = await asyncio.open_unix_connection(self.path)
        self.writer.write(OFP_HEADER.pack(OFP15, OFPT_HELLO, OFP_HEADER.size, 0))
        version, kind, _ = await self._read()
        if kind != OFPT_HELLO or version < OFP15:
            raise RuntimeError(f"{self.path}: no OpenFlow 1.5 hello (version {version})")
        viewed, walked = await self.count(), await asyncio.to_thread(ovs_flow_count, self.env)
        if viewed != walked:
            raise RuntimeError(f"table statistics count {viewed} flows, dump-aggregate {walked}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()

    async def _read(self) -> tuple[int, int, bytes]:
        assert self.reader is not None and self.writer is not None
        while True:
            head = await self.reader.readexactly(OFP_HEADER.size)
            version, kind, length, xid = OFP_HEADER.unpack(head)
            body = await self.reader.readexactly(length - OFP_HEADER.size)
            if kind == OFPT_ECHO_REQUEST:  # keepalive: answered, not returned
                self.writer.write(OFP_HEADER.pack(version, OFPT_ECHO_REPLY, length, xid) + body)
                continue
            if kind == OFPT_HELLO or (kind == OFPT_MULTIPART_REPLY and xid == self.xid):
                return version, kind, body

    async def count(self) -> int:
        """Flows in every table now (one TABLE_STATS request; the reply may span messages)."""
        assert self.writer is not None
        self.xid += 1
        request = OFP_HEADER.pack(OFP15, OFPT_MULTIPART_REQUEST, OFP_HEADER.size + 8, self.xid)
        self.writer.write(request + struct.pack("!HH4x", OFPMP_TABLE_STATS, 0))
        total = 0
        while True:
            _, _, body = await self._read()
            _, flags = struct.unpack_from("!HH", body)
            total += sum(int(e[1]) for e in TABLE_STATS.iter_unpack(body[8:]))
            if not flags & OFPMPF_REPLY_MORE:
                return total


async def _wait_count(
    counter: FlowCounter, target: int, baseline: int, start: float
) -> tuple[float, int, bool, list[list[float]]]:
    """Poll until br-int holds `target` flows: (seconds since start, count, reached, steps).

    `steps` are [seconds, flows added since `baseline`] at every change seen, showing how many
    bundles landed. If the count settles elsewhere (no change for API_SETTLE s), report the time
    of the last change instead, marked not reached, so a mismatch in the expected count shows up.
    """
    first = last = await counter.count()
    # a bundle that landed before the first poll is the first step
    steps = [[round(time.perf_counter() - start, 3), first - baseline]] if first != baseline else []
    last_change = time.perf_counter()
    while True:
        count = await counter.count()
        now = time.perf_counter()
        if count != last:
            last, last_change = count, now
            steps.append([round(now - start, 3), count - baseline])
        if count == target:
            return now - start, count, True, steps
        if count != baseline and now - last_change > API_SETTLE:
            return last_change - start, count, False, steps
        if now - start > API_TIMEOUT:
            return now - start, count, False, steps
        await asyncio.sleep(0.02)


async def api_realize_once(spec: Any, env: dict[str, str], n_rules: int) -> dict[str, Any]:
    from antrea.testbed.lab.kube import KubeClient

    shape = api_shape(n_rules)
    expected = await api_expected_flows(shape)
    bodies = [api_policy(i, cidrs) for i, cidrs in enumerate(shape)]
    path = f"/apis/networking.k8s.io/v1/namespaces/{API_NAMESPACE}/networkpolicies"
    async with FlowCounter(env) as counter, KubeClient.from_kubeconfig(spec.kubeconfig) as client:
        baseline = await counter.count()
        start = time.perf_counter()
        await asyncio.gather(*(client.create(path, b) for b in bodies))
        written = time.perf_counter() - start
        seconds, count, reached, steps = await _wait_count(
            counter, baseline + expected, baseline, start
        )
        for b in bodies:
            await client.delete(f"{path}/{b['metadata']['name']}")
        await _wait_count(counter, baseline, baseline + expected, time.perf_counter())
    return {
        "rules": n_rules,
        "policies": len(bodies),
        "api_seconds": round(seconds, 3),
        "api_write_seconds": round(written, 3),
        "api_flows_added": count - baseline,
        "api_flows_expected": expected,
        "api_complete": reached,
        "api_steps": steps,
        "request_bytes": sum(len(json.dumps(b)) for b in bodies),
    }


async def api_measure(spec: Any, sizes: list[int]) -> list[dict[str, Any]]:
    """Namespace + pods on node1 first (outside the clock), then one measured run per size."""
    from antrea.testbed.lab import model as labmodel
    from antrea.testbed.lab.kube import KubeClient

    n_pods = max((n + API_RULES_PER_POLICY - 1) // API_RULES_PER_POLICY for n in sizes)
    m = labmodel.Model(
        namespaces=(API_NAMESPACE,),
        pods=tuple(f"p{i}" for i in range(n_pods)),
        ports=(80,),
        protocols=("TCP",),
        nodes=("node1",),
    )
    async with KubeClient.from_kubeconfig(spec.kubeconfig) as client:
        await labmodel.create(client, m)
        await labmodel.wait_running(client, m.keys, timeout=120)
    env = dict(os.environ, **spec.node("node1").env())
    runs = [await api_realize_once(spec, env, n) for n in sizes]
    runs[-1]["single_policy_accepted"] = await api_single_policy_accepted(spec, max(sizes))
    return runs


async def api_single_policy_accepted(spec: Any, n_rules: int) -> bool:
    """Would the API server take all n rules in ONE object? (It selects no pod: never realized.)"""
    from antrea.k8s.errors import KubeError
    from antrea.testbed.lab.kube import KubeClient

    body = api_policy(0, [c for cidrs in api_shape(n_rules) for c in cidrs])
    body["metadata"]["name"] = "bench-single"
    body["spec"]["podSelector"] = {"matchLabels": {"pod": "none"}}
    path = f"/apis/networking.k8s.io/v1/namespaces/{API_NAMESPACE}/networkpolicies"
    async with KubeClient.from_kubeconfig(spec.kubeconfig) as client:
        try:
            created = await client.create(path, body)
        except KubeError as exc:
            print(f"one {n_rules}-rule policy rejected: {exc}", file=sys.stderr)
            return False
        ok = len(created["spec"]["ingress"]) == n_rules
        await client.delete(f"{path}/bench-single")
    return ok


def api_bench(sizes: list[int]) -> list[dict[str, Any]]:
    """A private 1-node lab (default CNI: our agent + controller), always taken down."""
    import uvloop

    from antrea.testbed.lab import lifecycle
    from antrea.testbed.lab.defaults import default_cni

    name = f"rz{os.getpid() % 10**8}"
    lifecycle.down(name)
    try:
        spec = lifecycle.up(name=name, nodes=1, cni=default_cni())
        return uvloop.run(api_measure(spec, sizes))
    finally:
        lifecycle.down(name)


# -- 2. flow count vs cross product -----------------------------------------------------------
async def flow_count() -> dict[str, Any]:
    """One namespace-wide policy: 200 peer pods x 100 local targets x 8 ports, 3 rules."""
    from antrea.agent.networkpolicy.cache import RuleCache
    from antrea.agent.networkpolicy.reconciler import PolicyReconciler
    from antrea.apis.controlplane.types import ControlPlaneObject, PodReference
    from antrea.ovs.openflow.client import FlowClient
    from antrea.testbed.controlplane import (
        AddressGroup,
        AppliedToGroup,
        added,
        egress,
        ingress,
        member,
        policy,
        tcp,
    )
    from antrea.testbed.openflow import RecordingTransport

    peers = frozenset(
        member("peer", f"p{i}", f"10.245.{i // 250}.{i % 250 + 1}") for i in range(200)
    )
    targets = frozenset(member("app", f"t{i}", f"10.244.1.{i + 10}") for i in range(100))
    ports = [tcp(p) for p in (80, 443, 8080, 8443, 9090, 5432, 6379, 27017)]
    objs: list[ControlPlaneObject] = [
        AddressGroup("peers", peers),
        AppliedToGroup("targets", targets),
        policy(
            "np",
            [
                ingress(groups=["peers"], services=ports),
                ingress(groups=["peers"], services=ports[:2]),
                egress(groups=["peers"], services=ports),
            ],
            ["targets"],
        ),
    ]
    ofports = {PodReference("app", f"t{i}"): 10 + i for i in range(100)}
    rt = RecordingTransport()
    rec = PolicyReconciler(FlowClient(rt), round_num=1, ofport_of=ofports.get)
    cache = RuleCache()
    for o in objs:
        cache.apply(added(o))
    await rec.reconcile({r: cache.completed(r) for r in cache.take_dirty()})
    base = len(rec.base_flows())
    ours = len(rt.flows) - base
    # naive: one flow per (peer, target, port) per rule + one drop per target and direction
    naive = 200 * 100 * 8 + 200 * 100 * 2 + 100 * 200 * 8 + 100 * 2
    return {
        "peers": 200,
        "targets": 100,
        "ports": 8,
        "rules": 3,
        "flows": ours,
        "naive_flows": naive,
        "reduction": round(naive / ours, 1),
    }


# -- 3. throughput ------------------------------------------------------------------------------
SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17


def tx_checksum_off(netns: str, ifname: str) -> None:
    from antrea.testbed.lab import netns as labnetns

    def off() -> None:
        value = array.array("B", struct.pack("II", ETHTOOL_STXCSUM, 0))
        ifr = struct.pack("16sP", ifname.encode(), value.buffer_info()[0]) + bytes(16)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)

    labnetns.call_in(f"/var/run/netns/{netns}", off)


def node_pipeline(pods: list[tuple[int, str, str]]) -> list[Any]:
    """The agent's own pipeline (noEncap, no gateway traffic) for pods (ofport, IP, MAC),
    built by the agent's `FlowBuilder`: policy tables see what they see on a node."""
    from antrea.agent.openflow.builder import FlowBuilder, NodeConfig, PodPort

    node = NodeConfig(
        pod_cidr=ipaddress.IPv4Network("10.244.1.0/24"),
        gateway_ip=ipaddress.IPv4Address("10.244.1.1"),
        gateway_mac="02:00:0a:f4:01:01",
        encap=False,
    )
    builder = FlowBuilder(node, round_num=1)
    flows = builder.pipeline_flows()
    for ofport, ip, mac in pods:
        flows += builder.pod_flows(PodPort(ofport, ipaddress.IPv4Address(ip), mac))
    return flows


def iperf_server(netns: str) -> subprocess.Popen[bytes]:
    """A one-shot iperf3 server in the pod's namespace."""
    return subprocess.Popen(
        ["ip", "netns", "exec", netns, "iperf3", "-s", "-1", "-p", "5201"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def throughput(node: Node, n_rules: int, seconds: int) -> dict[str, Any]:
    from antrea.agent.networkpolicy.controller import NetworkPolicyController
    from antrea.agent.networkpolicy.reconciler import PolicyReconciler
    from antrea.apis.controlplane.types import PodReference
    from antrea.ovs.openflow.bundle import OfctlBundleTransport
    from antrea.ovs.openflow.client import FlowClient
    from antrea.testbed.controlplane import (
        BOOKMARK,
        AppliedToGroup,
        IPBlock,
        added,
        ingress,
        member,
        policy,
    )

    if shutil.which("iperf3") is None:
        return {"skipped": "iperf3 not installed"}
    bridge = "br-tput"
    target = node.add_bridge(bridge)
    ports: list[tuple[int, str, str]] = []
    ips = {}
    for i, name in enumerate(("client", "server")):
        pns = f"{node.netns}-{name}"
        host_if = f"vb{name[:3]}{node.netns[-4:]}"
        ip, mac, ofport = f"10.244.1.{10 + i}", f"02:00:0a:f4:01:{10 + i:02x}", 10 + i
        sh("ip", "netns", "add", pns)
        node.pods.append(pns)
        sh(
            "ip",
            "link",
            "add",
            host_if,
            "netns",
            node.netns,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pns,
        )
        sh("ip", "-n", pns, "link", "set", "eth0", "address", mac)
        sh("ip", "-n", pns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", pns, "link", "set", "eth0", "up")
        sh("ip", "-n", pns, "link", "set", "lo", "up")
        sh("ip", "-n", node.netns, "link", "set", host_if, "up")
        tx_checksum_off(pns, "eth0")
        node.ovs.vsctl(
            "add-port",
            bridge,
            host_if,
            "--",
            "set",
            "interface",
            host_if,
            f"ofport_request={ofport}",
        )
        ports.append((ofport, ip, mac))
        ips[name] = ip
    client = FlowClient(OfctlBundleTransport(target))
    await client.sync({"pipeline": node_pipeline(ports)})
    server_ns, client_ns = f"{node.netns}-server", f"{node.netns}-client"
    srv = iperf_server(server_ns)
    results: dict[str, Any] = {}
    try:
        ofports = {PodReference("bench", f"pod{p}"): 100 + p for p in range(TARGET_PODS)}
        ofports[PodReference("b", "server")] = 11
        rec = PolicyReconciler(client, round_num=1, ofport_of=ofports.get)
        ctl = NetworkPolicyController(node_name="bench", reconciler=rec)
        ctl.handle(BOOKMARK)
        await ctl.realize_dirty()
        results["gbps_0_rules"] = await _iperf(client_ns, ips["server"], seconds, srv)
        srv = iperf_server(server_ns)
        # the same shape as the latency runs: rules spread over 50 target pods, the server
        # being one of them; one more rule lets the client reach the server
        objs = policy_objects(n_rules - 1)
        server = member("b", "server", ips["server"])
        for o in objs:
            is_server_group = isinstance(o, AppliedToGroup) and o.name == "atg-0"
            ctl.handle(
                added(AppliedToGroup("atg-0", frozenset({server})) if is_server_group else o)
            )
        ctl.handle(
            added(
                policy(
                    "allow-client",
                    [ingress(blocks=[IPBlock(f"{ips['client']}/32")])],
                    ["atg-0"],
                    namespace="b",
                )
            )
        )
        await ctl.realize_dirty()
        results["flows_with_rules"] = node.flow_count(bridge)
        results[f"gbps_{n_rules}_rules"] = await _iperf(client_ns, ips["server"], seconds, srv)
        results["rules"] = n_rules
        results["ratio"] = round(results[f"gbps_{n_rules}_rules"] / results["gbps_0_rules"], 3)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
        node.del_bridge(bridge)
    return results


async def _iperf(
    client_ns: str, server_ip: str, seconds: int, srv: subprocess.Popen[bytes]
) -> float:
    await asyncio.sleep(0.5)
    out = await asyncio.to_thread(
        sh,
        "ip",
        "netns",
        "exec",
        client_ns,
        "iperf3",
        "-c",
        server_ip,
        "-p",
        "5201",
        "-t",
        str(seconds),
        "-J",
    )
    srv.wait(timeout=10)
    doc = json.loads(out.stdout)
    return round(float(doc["end"]["sum_received"]["bits_per_second"]) / 1e9, 3)


# -- main -----------------------------------------------------------------------------------
async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="antrea-realize-"))
    node = Node(workdir)
    try:
        sizes = [args.rules] if args.rules else list(SIZES)
        runs = []
        for n in sizes:
            r = await realize_once(node, n)
            runs.append(r)
            print(
                f"{n} rules: {r['seconds']:.3f} s (floor {r['floor_seconds']:.3f} s, "
                f"ratio {r['ratio']}), {r['flows']} flows",
                file=sys.stderr,
            )
        fc = await flow_count()
        print(f"flow count: {fc['flows']} vs naive {fc['naive_flows']}", file=sys.stderr)
        tp: dict[str, Any] = {"skipped": "--no-throughput"}
        if not args.no_throughput:
            tp = await throughput(node, args.throughput_rules, args.iperf_seconds)
            print(f"throughput: {tp}", file=sys.stderr)
        last = runs[-1]
        return {
            "rules": last["rules"],
            "seconds": last["seconds"],
            "floor_seconds": last["floor_seconds"],
            "ratio": last["ratio"],
            "flows": last["flows"],
            "clock": "control-plane frames arriving at the agent -> flows in OVS",
            "runs": runs,
            "flow_count": fc,
            "throughput": tp,
        }
    finally:
        node.close()
        shutil.rmtree(workdir, ignore_errors=True)


def add_api_runs(report: dict[str, Any], api_runs: list[dict[str, Any]]) -> None:
    """Merge the API-clocked runs into `runs` (by size) and the top level (largest size)."""
    by_size = {r["rules"]: r for r in report["runs"]}
    for a in api_runs:
        r = by_size[a["rules"]]
        r.update(a)
        r["api_ratio"] = round(a["api_seconds"] / r["floor_seconds"], 2)
        print(
            f"{a['rules']} rules from the API write: {a['api_seconds']:.3f} s "
            f"(floor {r['floor_seconds']:.3f} s, ratio {r['api_ratio']}), "
            f"{a['api_flows_added']}/{a['api_flows_expected']} flows, "
            f"{a['policies']} policies",
            file=sys.stderr,
        )
    last = by_size[report["rules"]]
    for key in ("api_seconds", "api_ratio", "api_complete", "policies", "single_policy_accepted"):
        report[key] = last[key]
    report["api_clock"] = "before the NetworkPolicy create requests -> flows in the node's OVS"


def main() -> int:
    use_project_venv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=0, help="one size instead of 5k/10k/15k")
    parser.add_argument("--throughput-rules", type=int, default=10000)
    parser.add_argument("--iperf-seconds", type=int, default=3)
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument(
        "--no-api", action="store_true", help="skip the lab run clocked from the API write"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, OVS)", file=sys.stderr)
        return 2
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    import uvloop

    # Ctrl-C and SIGTERM unwind as SystemExit wherever they land (asyncio's own Ctrl-C handling
    # only cancels the main task, which a running step may absorb), so the `finally` blocks
    # always take the OVS sandbox and the lab down.
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = uvloop.run(run(args))
    if not args.no_api:
        add_api_runs(report, api_bench([r["rules"] for r in report["runs"]]))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
