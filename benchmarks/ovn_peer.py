"""The OVN peer, side by side: one policy set realized by OVN (OVN-Kubernetes-style ACLs) and by
our controller + agent, in one run.

Usage (root): ``python benchmarks/ovn_peer.py [--policies 1000|5000] [--pods 1000] [--changes 5]``

The policy set: ``--pods`` pods (default 1,000) in namespace ``bench``, in groups of 10 by the
label ``grp=g<i // 10>``; ``--policies`` Kubernetes NetworkPolicies, policy ``j`` selecting group
``j % G`` and admitting group ``(7 j + 1 + j // G) % G`` (never itself) on TCP 8080 (G = pods/10).

* **OVN** (Debian's ovn-central + ovn-host, 23.03): private NB/SB ovsdb-servers, ovn-northd,
  ovn-controller and an OVS (userspace ``netdev`` bridge) in a private run dir and network
  namespace, one logical switch, one logical port per pod bound to a ``dummy`` port of br-int.
  Each policy is written the way OVN-Kubernetes writes it: a port group of the selected pods, an
  address set of the rule's peers, a ``to-lport`` ``allow-related`` ACL at priority 1001
  ``outport == @pg && ip4.src == $as && tcp && tcp.dst == 8080``, and the selected pods in the
  default-deny port group (``to-lport`` drop ``outport == @deny && ip``, priority 1000, ARP
  allowed at 1001). Clock: from the first ``ovn-nbctl`` write (``--no-wait``, 500 policies per
  transaction) to ``ovn-nbctl --wait=hv sync`` returning (ovn-controller has installed the
  flows for the last NB change).
* **Ours**: the real compiler (`antrea.controller.networkpolicy`), the real distribution
  (`Dispatcher`: the msgpack frames a node's watch stream carries) and the real agent
  (`NetworkPolicyController` + `PolicyReconciler` + the native OpenFlow transport) on a private
  userspace OVS bridge. Not in the clock: the API server and the HTTP stream (the frames are
  handed to the agent's decoder in-process). Pods are local with an ofport each (no OVS
  port: the flows match on the number). Clock: from the compiler's batch of policy adds to the
  agent's bundle committed in OVS (the agent's datapath wait, ``revalidator/wait``, is off, as
  ``--wait=hv`` does not wait for revalidators either).

Per system: seconds, flows added by the policy set (``dump-aggregate`` of br-int before and
after), RSS (sum of the processes: ovn-northd + both ovsdb-servers + ovn-controller; ours: this
process, which holds the compiler and the agent; ovs-vswitchd reported separately for both), and
the median latency over ``--changes`` runs of: +1 peer IP (a new pod in a peer group), +1 policy
and -1 policy. The last line is one JSON object with at least ``ours_seconds``, ``ovn_seconds``,
``ours_flows``, ``ovn_flows``, ``ours_add_policy_ms``, ``ovn_add_policy_ms``,
``ours_del_policy_ms``, ``ovn_del_policy_ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from project_env import use_project_venv

REPO = Path(__file__).resolve().parents[1]
NS = "bench"
PORT = 8080
CHUNK = 500  # policies per ovn-nbctl transaction


def sh(*argv: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(argv, check=False, capture_output=True, text=True, env=env, timeout=1200)
    if check and out.returncode:
        raise RuntimeError(f"{' '.join(argv)[:300]}: exit {out.returncode}: {out.stderr[-2000:]}")
    return out.stdout


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- the policy set -----------------------------------------------------------------------------
def pod_ip(i: int) -> str:
    return f"10.244.{i // 250}.{i % 250 + 2}"


def pod_mac(i: int) -> str:
    return f"0a:58:0a:f4:{i // 250:02x}:{i % 250 + 2:02x}"


def shape(policies: int, pods: int) -> list[tuple[int, int]]:
    """(selected group, peer group) of each policy."""
    g = pods // 10
    out = []
    for j in range(policies):
        a = j % g
        b = (7 * j + 1 + j // g) % g
        if b == a:
            b = (b + 1) % g
        out.append((a, b))
    return out


def k8s_pod(i: int, group: int | None = None) -> dict[str, Any]:
    grp = i // 10 if group is None else group
    ip = pod_ip(i)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"p{i}",
            "namespace": NS,
            "uid": str(uuid.uuid4()),
            "labels": {"grp": f"g{grp}"},
        },
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def k8s_policy(j: int, a: int, b: int) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"np{j}", "namespace": NS, "uid": str(uuid.uuid4()), "generation": 1},
        "spec": {
            "podSelector": {"matchLabels": {"grp": f"g{a}"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {"grp": f"g{b}"}}}],
                    "ports": [{"protocol": "TCP", "port": PORT}],
                }
            ],
        },
    }


# -- OVN ----------------------------------------------------------------------------------------
class Ovn:
    """Private NB + SB databases, ovn-northd, OVS (with dummy ports) and ovn-controller."""

    def __init__(self, workdir: Path, pods: int) -> None:
        self.dir = workdir / "ovn"
        self.dir.mkdir(parents=True)
        self.netns = f"ovnpeer-{uuid.uuid4().hex[:6]}"
        self.pods = pods
        self.env = {
            **os.environ,
            "OVS_RUNDIR": str(self.dir),
            "OVS_DBDIR": str(self.dir),
            "OVN_RUNDIR": str(self.dir),
            "OVN_DBDIR": str(self.dir),
        }
        self.nb = f"unix:{self.dir}/nb.sock"
        self.sb = f"unix:{self.dir}/sb.sock"
        self.ovs = f"unix:{self.dir}/db.sock"
        self.pidfiles: list[str] = []

    def _daemon(self, name: str, argv: Sequence[str], netns: bool = False) -> None:
        pre = ["ip", "netns", "exec", self.netns] if netns else []
        # (ovn-controller has no --unixctl: its control socket goes to OVN_RUNDIR)
        ctl = [] if name == "ovn-controller" else [f"--unixctl={self.dir}/{name}.ctl"]
        sh(
            *pre,
            *argv,
            "--detach",
            f"--pidfile={self.dir}/{name}.pid",
            f"--log-file={self.dir}/{name}.log",
            *ctl,
            env=self.env,
        )
        self.pidfiles.append(name)

    def pid(self, name: str) -> int:
        return int((self.dir / f"{name}.pid").read_text().strip())

    def nbctl(self, *args: str) -> str:
        return sh("ovn-nbctl", f"--db={self.nb}", *args, env=self.env)

    def vsctl(self, *args: str) -> str:
        return sh("ovs-vsctl", f"--db={self.ovs}", "--timeout=60", *args, env=self.env)

    def start(self) -> None:
        sh("ip", "netns", "add", self.netns)
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        d = self.dir
        for db, schema in (
            ("nb", "/usr/share/ovn/ovn-nb.ovsschema"),
            ("sb", "/usr/share/ovn/ovn-sb.ovsschema"),
            ("conf", "/usr/share/openvswitch/vswitch.ovsschema"),
        ):
            sh("ovsdb-tool", "create", f"{d}/{db}.db", schema)
        self._daemon("ovsdb-nb", ["ovsdb-server", f"--remote=p{self.nb}", f"{d}/nb.db"])
        self._daemon("ovsdb-sb", ["ovsdb-server", f"--remote=p{self.sb}", f"{d}/sb.db"])
        self.nbctl("init")
        sh("ovn-sbctl", f"--db={self.sb}", "init", env=self.env)
        self._daemon("ovn-northd", ["ovn-northd", f"--ovnnb-db={self.nb}", f"--ovnsb-db={self.sb}"])
        self._daemon("ovsdb-ovs", ["ovsdb-server", f"--remote=p{self.ovs}", f"{d}/conf.db"])
        self.vsctl("--no-wait", "init")
        self._daemon("ovs-vswitchd", ["ovs-vswitchd", self.ovs, "--enable-dummy"], netns=True)
        self.vsctl(
            "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
            "fail_mode=secure", "other_config:disable-in-band=true",
        )  # fmt: skip
        self.vsctl(
            "set", "open", ".", f"external_ids:ovn-remote={self.sb}",
            "external_ids:ovn-encap-type=geneve", "external_ids:ovn-encap-ip=127.0.0.1",
            "external_ids:system-id=chassis1", "external_ids:ovn-bridge-datapath-type=netdev",
        )  # fmt: skip
        self._daemon("ovn-controller", ["ovn-controller", self.ovs], netns=True)
        # the pods: one logical switch, one logical port per pod bound to a dummy OVS port
        args: list[str] = ["ls-add", "ls0"]
        for i in range(self.pods):
            mac_ip = f"{pod_mac(i)} {pod_ip(i)}"
            args += ["--", "lsp-add", "ls0", f"p{i}"]
            args += ["--", "lsp-set-addresses", f"p{i}", mac_ip]
            args += ["--", "lsp-set-port-security", f"p{i}", mac_ip]
        args += ["--", "pg-add", "deny"]
        args += ["--", "acl-add", "deny", "to-lport", "1000", "outport == @deny && ip", "drop"]
        args += ["--", "acl-add", "deny", "to-lport", "1001", "outport == @deny && arp", "allow"]
        self.nbctl(*args)
        vs: list[str] = []
        for i in range(self.pods):
            vs += ["--", "add-port", "br-int", f"p{i}"]
            vs += ["--", "set", "interface", f"p{i}", "type=dummy", f"external_ids:iface-id=p{i}"]
        self.vsctl(*vs)
        self.nbctl("--wait=hv", "sync")
        # ovn-controller may still be binding ports after the sync: start the clock only once
        # the flow count has held still for a while
        last, still = -1, 0
        while still < 4:
            time.sleep(0.5)
            n = self.flows()
            still, last = (still + 1, n) if n == last else (0, n)

    def flows(self) -> int:
        out = sh(
            "ovs-ofctl", "-O", "OpenFlow15", "dump-aggregate", f"unix:{self.dir}/br-int.mgmt",
            env=self.env,
        )  # fmt: skip
        return int(out.split("flow_count=")[1].split()[0])

    @staticmethod
    def policy_cmds(j: int, a: int, b: int, pod_groups: dict[int, list[int]]) -> list[str]:
        """One policy as OVN-Kubernetes writes it: port group, address set, allow ACL."""
        ips = ",".join(f'"{pod_ip(i)}"' for i in pod_groups[b])
        pg, aset = f"np{j}", f"np{j}_ingress0"
        match = f"outport == @{pg} && ip4.src == ${aset} && tcp && tcp.dst == {PORT}"
        return [
            "--", "pg-add", pg, *[f"p{i}" for i in pod_groups[a]],
            "--", "create", "Address_Set", f"name={aset}", f"addresses=[{ips}]",
            "--", "--type=port-group", "acl-add", pg, "to-lport", "1001", match, "allow-related",
        ]  # fmt: skip

    def rss(self) -> dict[str, float]:
        return {n: round(rss_mb(self.pid(n)), 1) for n in self.pidfiles}

    def close(self) -> None:
        from antrea.testbed.lab.topology import stop_pid

        for name in reversed(self.pidfiles):
            try:
                pid = self.pid(name)
            except (OSError, ValueError):
                continue
            stop_pid(pid)
        sh("ip", "netns", "del", self.netns, check=False)


def ovn_bench(
    workdir: Path, pols: list[tuple[int, int]], pods: int, changes: int
) -> dict[str, Any]:
    ovn = Ovn(workdir, pods)
    try:
        ovn.start()
        groups: dict[int, list[int]] = {}
        for i in range(pods):
            groups.setdefault(i // 10, []).append(i)
        base = ovn.flows()
        # the default-deny group: every selected pod (set once, in the first transaction)
        selected = sorted({i for a, _ in pols for i in groups[a]})
        pids = [ovn.pid(n) for n in ovn.pidfiles]
        cpu0 = sum(cpu_s(p) for p in pids)
        start = time.perf_counter()
        for c in range(0, len(pols), CHUNK):
            args: list[str] = []
            if c == 0:
                args += ["--", "pg-set-ports", "deny", *[f"p{i}" for i in selected]]
            for j in range(c, min(c + CHUNK, len(pols))):
                args += Ovn.policy_cmds(j, *pols[j], groups)
            ovn.nbctl("--no-wait", *args[1:])
        ovn.nbctl("--wait=hv", "sync")
        seconds = time.perf_counter() - start
        cpu = sum(cpu_s(p) for p in pids) - cpu0
        flows = ovn.flows() - base
        rss = ovn.rss()
        vswitchd_rss = rss.pop("ovs-vswitchd")
        rss.pop("ovsdb-ovs", None)
        peer_ms, add_ms, del_ms = [], [], []
        for k in range(changes):
            # +1 peer IP: a new pod in policy 0's peer group
            ip = f"10.245.0.{k + 2}"
            t0 = time.perf_counter()
            ovn.nbctl("--wait=hv", "add", "Address_Set", "np0_ingress0", "addresses", f'"{ip}"')
            peer_ms.append((time.perf_counter() - t0) * 1000)
            j = len(pols) + k
            a, b = pols[k]
            t0 = time.perf_counter()
            ovn.nbctl("--wait=hv", *Ovn.policy_cmds(j, a, b, groups)[1:])
            add_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            ovn.nbctl(
                "--wait=hv", "pg-del", f"np{j}", "--", "destroy", "Address_Set",
                f"np{j}_ingress0",
            )  # fmt: skip
            del_ms.append((time.perf_counter() - t0) * 1000)
        return {
            "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu, 3),  # every OVN process and ovs-vswitchd (nbctl not)
            "flows": flows,
            "rss_mb": round(sum(rss.values()), 1),
            "rss_by_process_mb": rss,
            "vswitchd_rss_mb": vswitchd_rss,
            "add_peer_ms": round(statistics.median(peer_ms), 1),
            "add_policy_ms": round(statistics.median(add_ms), 1),
            "del_policy_ms": round(statistics.median(del_ms), 1),
        }
    finally:
        ovn.close()


# -- ours -------------------------------------------------------------------------------------
class Ours:
    """The compiler, the distribution to node1 and node1's agent on a private userspace OVS."""

    def __init__(self, workdir: Path, pods: int) -> None:
        from antrea.agent.networkpolicy.controller import NetworkPolicyController as Agent
        from antrea.agent.networkpolicy.reconciler import PolicyReconciler
        from antrea.apis.controlplane.codec import FrameDecoder
        from antrea.apis.controlplane.types import PodReference
        from antrea.controller.distribution import Dispatcher
        from antrea.controller.networkpolicy import NetworkPolicyController
        from antrea.ovs.openflow.client import FlowClient
        from antrea.ovs.openflow.native import OpenFlowTransport
        from antrea.testbed.ovssandbox import OvsSandbox

        self.netns = f"ourpeer-{uuid.uuid4().hex[:6]}"
        sh("ip", "netns", "add", self.netns)
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        self.ovs = OvsSandbox(rundir=workdir / "ours", netns=self.netns)
        self.ovs.start()
        self.ovs.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev")
        self.target = self.ovs.ofctl_target("br-int")
        self.compiler = NetworkPolicyController()
        self.dispatcher = Dispatcher(self.compiler.store, max_queue=1 << 30)
        self.compiler.subscribe(self.dispatcher.on_change)
        ofports = {PodReference(NS, f"p{i}"): 10 + i for i in range(pods)}
        self.transport = OpenFlowTransport(self.target)
        self.reconciler = PolicyReconciler(
            FlowClient(self.transport),
            round_num=1,
            ofport_of=ofports.get,
            gateway_ip="10.244.0.1",
            install_miss_flows=True,
        )
        self.agent = Agent(node_name="node1", reconciler=self.reconciler)
        self.decoder = FrameDecoder()
        self.watcher: Any = None
        self.worker: asyncio.Task[None] | None = None

    async def start(self, pods: list[dict[str, Any]]) -> None:
        with self.compiler.batch():
            self.compiler.add_namespace({"metadata": {"name": NS, "labels": {}}})
            for p in pods:
                self.compiler.add_pod(p)
        self.watcher, initial = self.dispatcher.register("node1")
        self.worker = asyncio.create_task(self.agent.run(_never()))
        self._deliver(initial)
        await self.agent.ready.wait()

    def _deliver(self, frames: list[bytes]) -> None:
        from antrea.agent.controlplane_client import decode_chunk

        for f in frames:
            for ev in decode_chunk(self.decoder, f):  # as the agent decodes
                self.agent.handle(ev)

    async def realized(self) -> None:
        """Hand what the node's stream holds to the agent; return once it is in OVS."""
        self._deliver(await self.watcher.next_frames(timeout=0))
        await asyncio.sleep(0)
        await self.agent.wait_idle()

    def flows(self) -> int:
        out = self.ovs.run(["ovs-ofctl", "-O", "OpenFlow15", "dump-aggregate", self.target]).stdout
        return int(out.split("flow_count=")[1].split()[0])

    async def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        await self.transport.close()
        self.ovs.stop()
        sh("ip", "netns", "del", self.netns, check=False)


async def _never() -> Any:
    await asyncio.Event().wait()
    yield None  # pragma: no cover


async def ours_bench(
    workdir: Path, pols: list[tuple[int, int]], pods: int, changes: int
) -> dict[str, Any]:
    ours = Ours(workdir, pods)
    try:
        await ours.start([k8s_pod(i) for i in range(pods)])
        policies = [k8s_policy(j, a, b) for j, (a, b) in enumerate(pols)]
        base = ours.flows()
        rss0 = rss_mb(os.getpid())
        vswitchd = ours.ovs.pids()[0]
        start = time.perf_counter()
        cpu0 = time.process_time() + cpu_s(vswitchd)
        with ours.compiler.batch():
            for np in policies:
                ours.compiler.add_network_policy(np)
        await ours.realized()
        seconds = time.perf_counter() - start
        cpu = time.process_time() + cpu_s(vswitchd) - cpu0
        flows = ours.flows() - base
        rss = rss_mb(os.getpid())
        vswitchd_rss = rss_mb(ours.ovs.pids()[0])
        peer_ms, add_ms, del_ms = [], [], []
        for k in range(changes):
            peer = k8s_pod(pods + k, group=pols[0][1])
            peer["spec"]["nodeName"] = "node2"  # a remote peer: its IP joins an address group
            peer["status"]["podIP"] = ip = f"10.245.0.{k + 2}"
            peer["status"]["podIPs"] = [{"ip": ip}]
            t0 = time.perf_counter()
            ours.compiler.add_pod(peer)
            await ours.realized()
            peer_ms.append((time.perf_counter() - t0) * 1000)
            a, b = pols[k]
            np = k8s_policy(len(pols) + k, a, b)
            t0 = time.perf_counter()
            ours.compiler.add_network_policy(np)
            await ours.realized()
            add_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            ours.compiler.delete_network_policy(np)
            await ours.realized()
            del_ms.append((time.perf_counter() - t0) * 1000)
        return {
            "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu, 3),  # this process (compiler + agent) and ovs-vswitchd
            "flows": flows,
            "rss_mb": round(rss, 1),
            "rss_before_policies_mb": round(rss0, 1),
            "vswitchd_rss_mb": round(vswitchd_rss, 1),
            "add_peer_ms": round(statistics.median(peer_ms), 1),
            "add_policy_ms": round(statistics.median(add_ms), 1),
            "del_policy_ms": round(statistics.median(del_ms), 1),
        }
    finally:
        await ours.close()


# -- main -------------------------------------------------------------------------------------
def main() -> int:
    use_project_venv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=5, help="runs of each single change")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, OVS)", file=sys.stderr)
        return 2
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    import uvloop

    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pols = shape(args.policies, args.pods)
    with tempfile.TemporaryDirectory(prefix="ovn-peer-") as tmp:
        ours = uvloop.run(ours_bench(Path(tmp), pols, args.pods, args.changes))
        print(f"ours: {json.dumps(ours)}", flush=True)
        ovn = ovn_bench(Path(tmp), pols, args.pods, args.changes)
        print(f"ovn:  {json.dumps(ovn)}", flush=True)
    report: dict[str, Any] = {
        "pods": args.pods,
        "policies": args.policies,
        "load": round(os.getloadavg()[0], 2),
    }
    for name, res in (("ours", ours), ("ovn", ovn)):
        for k, v in res.items():
            report[f"{name}_{k}"] = v
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
