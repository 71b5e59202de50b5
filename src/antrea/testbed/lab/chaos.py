"""Fault scenarios on a running 2-node antrea lab, shared by tests/e2e/test_lab_chaos.py (which
asserts) and benchmarks/faults.py (which prints the figures for docs/reliability.md).

Workload (namespace ``chaos``): ``src`` and ``other`` on node1, ``srv`` (TCP 80, 81) and
``free`` (TCP 80, selected by no policy) on node2. Policy ``guard`` selects ``srv``:

- v1: ingress from ``role=src`` on 80;
- v2: ingress from ``role=other`` on 81.

Probed every 20 ms (`antrea.testbed.lab.prober`): ``src->srv:81`` and ``other->srv:80`` are allowed
by neither version (FORBIDDEN: must never connect); ``other->srv:81`` is allowed by v2;
``src->free:80`` is plain cross-node traffic; ``src->srv:80`` (v1 only) is recorded.

Each fault returns a `Result`: the prober series, when the fault was injected and when the
component was back (a new process running, or the supervisor ready again).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from antrea.ovs.openflow.cookie import cookie_round
from antrea.ovs.ovsctl import parse_flow_line
from antrea.testbed.lab import lifecycle, netns, topology
from antrea.testbed.lab.kube import KubeClient
from antrea.testbed.lab.probe import lab_targets
from antrea.testbed.lab.prober import Path as ProbePath
from antrea.testbed.lab.prober import Prober, Series
from antrea.testbed.lab.state import LabSpec, NodeSpec

NS = "chaos"
FORBIDDEN = ("src->srv:81", "other->srv:80")
V2_ALLOWED = "other->srv:81"
CROSS_NODE = "src->free:80"
PATHS = {  # name: (source pod, destination pod, port)
    "src->srv:81": ("src", "srv", 81),
    "other->srv:80": ("other", "srv", 80),
    "other->srv:81": ("other", "srv", 81),
    "src->free:80": ("src", "free", 80),
    "src->srv:80": ("src", "srv", 80),
}


def _pod(name: str, node: str, labels: dict[str, str], ports: list[int]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "nodeName": node,
            "containers": [
                {"name": "c", "image": "lab", "ports": [{"containerPort": p} for p in ports]}
            ],
        },
    }


def policy(version: int) -> dict[str, Any]:
    peer, port = ({"role": "src"}, 80) if version == 1 else ({"role": "other"}, 81)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "guard", "namespace": NS},
        "spec": {
            "podSelector": {"matchLabels": {"app": "srv"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": peer}}], "ports": [{"port": port}]}
            ],
        },
    }


def expected(version: int) -> dict[str, bool]:
    return {
        "src->srv:81": False,
        "other->srv:80": False,
        "other->srv:81": version == 2,
        "src->free:80": True,
        "src->srv:80": version == 1,
    }


async def create_workload(client: KubeClient, spec: LabSpec) -> None:
    n1, n2 = spec.nodes[0].name, spec.nodes[1].name
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    await client.create("/api/v1/namespaces", ns)
    for body in (
        _pod("src", n1, {"role": "src"}, [80]),
        _pod("other", n1, {"role": "other"}, [80]),
        _pod("srv", n2, {"app": "srv"}, [80, 81]),
        _pod("free", n2, {"app": "free"}, [80]),
    ):
        await client.create(f"/api/v1/namespaces/{NS}/pods", body)


async def probe_paths(spec: LabSpec, client: KubeClient) -> list[ProbePath]:
    targets = {t.key: t for t in await lab_targets(spec, client, namespaces=[NS])}
    out = []
    for name, (src, dst, port) in PATHS.items():
        s, d = targets[f"{NS}/{src}"], targets[f"{NS}/{dst}"]
        out.append(ProbePath(name, s.netns_path, d.ip, port))
    return out


def state(paths: list[ProbePath], seconds: float = 0.3) -> dict[str, bool]:
    """Which paths connect now (a short prober run: any success in ``seconds``)."""
    p = Prober(paths, interval=0.05).start()
    time.sleep(seconds)
    series = p.stop()
    return {name: bool(s.successes()) for name, s in series.items()}


def wait_state(paths: list[ProbePath], want: dict[str, bool], timeout: float = 60.0) -> float:
    """Wait until the paths behave as ``want``; returns when (monotonic)."""
    deadline = time.monotonic() + timeout
    while True:
        now = state(paths)
        if now == want:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError(f"paths did not converge: {now} != {want}")
        time.sleep(0.2)


def wait_new_pid(pidfile: Path, old: int | None, expect: str, timeout: float = 60.0) -> float:
    """Wait until ``pidfile`` names a live process other than ``old``; returns when."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = topology.read_pid(pidfile)
        if (pid is not None and pid != old and topology.pid_alive(pid)
                and expect in topology.pid_cmdline(pid)):  # fmt: skip
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"{pidfile}: no new {expect} after {timeout}s")


def kill_pidfile(pidfile: Path) -> int:
    pid = topology.read_pid(pidfile)
    assert pid is not None, f"no pid in {pidfile}"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while topology.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return pid


@dataclass
class Result:
    fault: str
    injected: float
    returned: float
    series: dict[str, Series]
    notes: dict[str, Any] = field(default_factory=dict)

    def forbidden_successes(self) -> dict[str, int]:
        return {p: len(self.series[p].successes()) for p in FORBIDDEN}

    def back_after_return(self, path: str) -> float | None:
        """Seconds from the component's return until ``path`` connected for good (0: it never
        failed after the return; None: it did not come back)."""
        back = self.series[path].back_for_good()
        if back is None:
            return None
        return max(0.0, back - self.returned)

    def lost(self, path: str) -> int:
        return len(self.series[path].failures())

    def outage_seconds(self, path: str) -> float:
        span = self.series[path].outage()
        return 0.0 if span is None else span[1] - span[0]

    def figures(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "fault": self.fault,
            "component_down_s": round(self.returned - self.injected, 2),
            "forbidden_connections": sum(self.forbidden_successes().values()),
        }
        for path in (CROSS_NODE, V2_ALLOWED):
            s = self.series[path]
            back = self.back_after_return(path)
            doc[path] = {
                "attempts": len(s.attempts),
                "failed": self.lost(path),
                "outage_s": round(self.outage_seconds(path), 2),
                "back_after_return_s": None if back is None else round(back, 2),
            }
        doc.update(self.notes)
        return doc


@contextlib.contextmanager
def probing(paths: list[ProbePath], *, settle: float = 1.0) -> Iterator[Prober]:
    p = Prober(paths).start()
    time.sleep(settle)
    try:
        yield p
    finally:
        p.stop()


def finish(p: Prober, *, returned: float, until_back: list[str], window: float = 6.0,
           timeout: float = 60.0) -> dict[str, Series]:  # fmt: skip
    """Keep probing until every path in ``until_back`` has connected since ``returned``, then
    ``window`` more seconds (so "back for good" is seen as such)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.series[name].successes(since=returned) for name in until_back):
            break
        time.sleep(0.1)
    time.sleep(window)
    return p.stop()


def kubectl_apply(kubectl: Callable[..., str], doc: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(doc))


def agent_info(node: NodeSpec, timeout: float = 1.0) -> dict[str, Any]:
    argv = netns.exec_argv(node.netns, ["curl", "-s", "-m", str(timeout),
                                        "http://127.0.0.1:10350/agentinfo"])  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    try:
        doc = json.loads(out)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def flow_rounds(node: NodeSpec) -> dict[int, int]:
    """Flow count per round (of the cookie) in the node's br-int."""
    argv = netns.exec_argv(node.netns, ["ovs-ofctl", "-O", "OpenFlow15", "dump-flows",
                                        f"{node.ovs_dir}/br-int.mgmt"])  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rounds: dict[int, int] = {}
    for flow in filter(None, map(parse_flow_line, out.splitlines())):
        r = cookie_round(flow.cookie)
        rounds[r] = rounds.get(r, 0) + 1
    return rounds


def wait_round_persisted(node: NodeSpec, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = agent_info(node)
        if info.get("roundPersisted"):
            return info
        time.sleep(0.3)
    raise AssertionError(f"{node.name}: round not persisted: {info}")


def underlay_macs(spec: LabSpec, count: int = 3) -> dict[str, set[str]]:
    """MACs answering ARP for each node address, seen from the underlay (arping)."""
    out: dict[str, set[str]] = {}
    for node in spec.nodes:
        argv = netns.exec_argv(spec.underlay_netns, ["arping", "-c", str(count), "-w", "3",
                                                     "-I", "br0", node.underlay_ip])  # fmt: skip
        text = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
        out[node.underlay_ip] = {
            line.split("[")[1].split("]")[0].lower() for line in text.splitlines() if "[" in line
        }
    return out


def br_phy_mac(node: NodeSpec) -> str:
    argv = netns.exec_argv(node.netns, ["cat", "/sys/class/net/br-phy/address"])
    return netns.run(argv).stdout.strip().lower()


def sample_connected(
    node: NodeSpec, samples: list[tuple[float, Any]], stop: Callable[[], bool]
) -> None:
    """Append ``controllerConnected`` of the node's agent to ``samples`` every 0.1 s."""
    while not stop():
        samples.append((time.monotonic(), agent_info(node, 0.5).get("controllerConnected")))
        time.sleep(0.1)


Kubectl = Callable[..., str]


def use_policy(kubectl: Kubectl, paths: list[ProbePath], version: int) -> None:
    kubectl_apply(kubectl, policy(version))
    wait_state(paths, expected(version))


def agent_restart(spec: LabSpec, kubectl: Kubectl, paths: list[ProbePath]) -> Result:
    """SIGKILL node2's agent (it enforces ``guard``), switch the policy v1 -> v2 while it is
    down (3 s), let the supervisor restart it."""
    node = spec.nodes[1]
    use_policy(kubectl, paths, 1)
    before = agent_info(node)
    with probing(paths) as p:
        with lifecycle.holding_agent(node):
            injected = time.monotonic()
            old = kill_pidfile(node.agent_pidfile)
            kubectl_apply(kubectl, policy(2))
            time.sleep(3)
        returned = wait_new_pid(node.agent_pidfile, old, "daemon")
        series = finish(p, returned=returned, until_back=[V2_ALLOWED, CROSS_NODE])
    r = Result("agent SIGKILL, policy changed while down", injected, returned, series)
    v2 = series[V2_ALLOWED].back_for_good()
    r.notes["policy_realized_after_return_s"] = None if v2 is None else round(v2 - returned, 2)
    info = wait_round_persisted(node)
    rounds = flow_rounds(node)
    r.notes["round"] = [before.get("round"), info.get("round")]
    r.notes["stale_flows"] = sum(n for rnd, n in rounds.items() if rnd != info.get("round"))
    return r


def vswitchd_restart(spec: LabSpec, kubectl: Kubectl, paths: list[ProbePath]) -> Result:
    """SIGKILL node2's ovs-vswitchd; the supervisor restarts it, the agent replays its flows."""
    node = spec.nodes[1]
    use_policy(kubectl, paths, 2)
    pidfile = node.ovs_dir / "ovs-vswitchd.pid"
    with probing(paths) as p:
        injected = time.monotonic()
        old = kill_pidfile(pidfile)
        returned = wait_new_pid(pidfile, old, "ovs-vswitchd")
        series = finish(p, returned=returned, until_back=[V2_ALLOWED, CROSS_NODE])
    return Result("ovs-vswitchd SIGKILL", injected, returned, series)


def ovsdb_restart(spec: LabSpec, kubectl: Kubectl, paths: list[ProbePath]) -> Result:
    """SIGKILL node2's ovsdb-server; the supervisor restarts it (vswitchd keeps forwarding)."""
    node = spec.nodes[1]
    use_policy(kubectl, paths, 2)
    pidfile = node.ovs_dir / "ovsdb-server.pid"
    with probing(paths) as p:
        injected = time.monotonic()
        old = kill_pidfile(pidfile)
        returned = wait_new_pid(pidfile, old, "ovsdb-server")
        series = finish(p, returned=returned, until_back=[V2_ALLOWED, CROSS_NODE])
    return Result("ovsdb-server SIGKILL", injected, returned, series)


def lease_holder(kubectl: Kubectl) -> str:
    out = kubectl("-n", "kube-system", "get", "lease", "antrea-controller",
                  "-o", "jsonpath={.spec.holderIdentity}", check=False)  # fmt: skip
    return out.strip()


def leader_kill(spec: LabSpec, kubectl: Kubectl, paths: list[ProbePath]) -> Result:
    """SIGKILL the daemon of the leader controller (it shares the process with that node's
    agent), keep it down 3 s, let the supervisor restart it. The other node's agentinfo is
    sampled meanwhile: ``controllerConnected`` must drop and come back."""
    use_policy(kubectl, paths, 2)
    leader = lease_holder(kubectl)
    node = spec.node(leader)
    survivor = next(n for n in spec.nodes if n.name != leader)
    deadline = time.monotonic() + 60
    while agent_info(survivor).get("controllerConnected") is not True:  # a steady start
        assert time.monotonic() < deadline, f"{survivor.name}: {agent_info(survivor)}"
        time.sleep(0.2)
    done = threading.Event()
    samples: list[tuple[float, Any]] = []
    sampler = threading.Thread(
        target=sample_connected, args=(survivor, samples, done.is_set), daemon=True
    )
    try:
        with probing(paths) as p:
            sampler.start()
            time.sleep(0.5)
            with lifecycle.holding_agent(node):
                injected = time.monotonic()
                old = kill_pidfile(node.agent_pidfile)
                time.sleep(3)
            returned = wait_new_pid(node.agent_pidfile, old, "daemon")
            deadline = time.monotonic() + 60
            while not (samples and samples[-1][1] is True and samples[-1][0] > returned):
                assert time.monotonic() < deadline, f"{survivor.name} never reconnected: {samples}"
                time.sleep(0.1)
            series = finish(p, returned=returned, until_back=[V2_ALLOWED, CROSS_NODE])
    finally:
        done.set()
        if sampler.is_alive():
            sampler.join(10)
    r = Result(f"leader controller SIGKILL ({leader}, down 3 s)", injected, returned, series)
    # during the outage (before the leader's node is back), not only at the reconnect
    down = [t for t, c in samples if c is False and injected <= t <= returned]
    back = [t for t, c in samples if c is True and down and t > down[0]]
    r.notes["leader"] = leader
    r.notes["survivor_disconnected_after_s"] = round(down[0] - injected, 2) if down else None
    r.notes["survivor_reconnected_after_return_s"] = round(back[0] - returned, 2) if back else None
    r.notes["connected_before"] = [c for t, c in samples if t < injected][-1:]
    return r


def apiserver_restart(spec: LabSpec, kubectl: Kubectl, paths: list[ProbePath]) -> Result:
    """`antrea lab restart-supervisor`: the embedded API server (and the supervisor's kubelets
    and pod servers, which live in the same process) stop and start again."""
    use_policy(kubectl, paths, 2)
    with probing(paths) as p:
        injected = time.monotonic()
        lifecycle.restart_supervisor(spec)
        returned = time.monotonic()
        series = finish(p, returned=returned, until_back=[V2_ALLOWED, CROSS_NODE])
    return Result("API server restart (lab supervisor)", injected, returned, series)


FAULTS: dict[str, Callable[[LabSpec, Kubectl, list[ProbePath]], Result]] = {
    "agent": agent_restart,
    "vswitchd": vswitchd_restart,
    "ovsdb": ovsdb_restart,
    "leader": leader_kill,
    "apiserver": apiserver_restart,
}
