#!/usr/bin/env python3
"""CNI ADD/DEL latency on one node: antrea-cni + agent, side by side with bridge + host-local.

Usage (root): ``.venv/bin/python benchmarks/cni_latency.py [--pods 50] [--concurrent 20]``

It builds a node the way the lab does (a network namespace with its own userspace OVS, the
embedded API server holding a Node with ``spec.podCIDR``, ``antrea agent`` in the namespace),
then drives both plugins exactly as a container runtime would: one process per operation, run
in the node's namespace, environment + config on stdin, ``prevResult`` on DEL. For each plugin:
``--pods`` sequential ADDs then DELs, and ``--concurrent`` ADDs (then DELs) started at once.
Every pod is a fresh network namespace, created outside the timed section. Everything it set
up is torn down at the end, also on failure or Ctrl-C.

The last line of output is one JSON object (``add_median_ms``, ``add_p95_ms``,
``ref_add_median_ms``, ``ratio`` = ours / reference ADD median, and the DEL and concurrent
figures).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from project_env import use_project_venv

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from antrea.agent.cniserver.install import install_plugin  # noqa: E402
from antrea.testbed.ovssandbox import OvsSandbox  # noqa: E402

REF_BIN = Path("/usr/lib/cni")
KUBECTL = Path(sys.executable).parent / "kubectl"
NETNS_DIR = Path("/var/run/netns")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def sh(*argv: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kw)


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Move the calling thread into netns ``name``; processes and threads it starts follow."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({name})")
        yield
    finally:
        _libc.setns(own, CLONE_NEWNET)
        os.close(own)
        os.close(target)


def antrea_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "antrea.cmd.antrea", "--log-format", "json", *args]


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """SIGTERM the process group we started, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@dataclass
class AntreaNode:
    """One node: netns + OVS + embedded API server + ``antrea agent``, all torn down on exit.

    Also used by tests/integration/test_cni_agent.py.
    """

    workdir: Path
    prefix: str = "antrea-bench"
    node_name: str = "node1"
    pod_cidr: str = "10.244.1.0/24"
    node_ip: str = "172.30.0.1/24"
    netns: str = ""
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    agent: subprocess.Popen[bytes] | None = None
    kubeconfig: Path = Path()
    cni_socket: Path = Path()
    conf_dir: Path = Path()
    bin_dir: Path = Path()
    plugin: Path = Path()

    def __enter__(self) -> AntreaNode:
        try:
            self._start()
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def _start(self) -> None:
        self.netns = f"{self.prefix}-{self.node_name}"
        sh("ip", "netns", "add", self.netns)
        self.stack.callback(sh, "ip", "netns", "del", self.netns, check=False)
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        # The transport interface: holds the Node's InternalIP (MTU 1500 -> pod MTU 1450).
        # (No dummy module in this kernel: a veth pair with both ends in the node netns.)
        sh("ip", "-n", self.netns, "link", "add", "eth0", "type", "veth", "peer", "name", "uplink")
        sh("ip", "-n", self.netns, "addr", "add", self.node_ip, "dev", "eth0")
        sh("ip", "-n", self.netns, "link", "set", "uplink", "up")
        sh("ip", "-n", self.netns, "link", "set", "eth0", "up")

        ovs = OvsSandbox(rundir=self.workdir / "ovs", netns=self.netns)
        self.stack.callback(ovs.stop)
        ovs.start()

        self._start_apiserver()
        self._register_node()

        self.cni_socket = self.workdir / "cni.sock"
        self.conf_dir = self.workdir / "net.d"
        self.bin_dir = self.workdir / "bin"
        config = {
            "nodeName": self.node_name,
            "kubeconfig": str(self.kubeconfig),
            "ovsBridge": "br-int",
            "ovsDatapathType": "netdev",
            "ovsRunDir": str(ovs.rundir),
            "hostGateway": "gw0",
            "tunnelType": "vxlan",
            "trafficEncapMode": "encap",
            "defaultMTU": 0,
            "transportInterface": "eth0",
            "cniSocket": str(self.cni_socket),
            "cniConfDir": str(self.conf_dir),
            "cniBinDir": str(self.bin_dir),
            "stateDir": str(self.workdir / "agent-state"),
            "apiPort": 10350,
            "controllerAPIPort": 10349,
            "leaseNamespace": "kube-system",
        }
        cfg = self.workdir / "agent.yaml"
        cfg.write_text(json.dumps(config, indent=2))  # JSON is YAML
        log = (self.workdir / "agent.log").open("ab")
        env = {**os.environ, "OVS_RUNDIR": str(ovs.rundir), "NODE_NAME": self.node_name}
        self.agent = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, *antrea_argv("agent", "--config", str(cfg))],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd="/",
        )
        log.close()
        self.stack.callback(stop_process, self.agent)
        self.plugin = install_plugin(self.workdir / "plugin-bin")
        self._wait_ready()

    def _start_apiserver(self) -> None:
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        log = (self.workdir / "apiserver.log").open("ab")
        proc = subprocess.Popen(
            [
                "ip", "netns", "exec", self.netns,
                *antrea_argv(
                    "apiserver", "--port", "0", "--data-dir", str(self.workdir / "apiserver"),
                    "--kubeconfig-out", str(self.kubeconfig),
                ),
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd="/",
        )  # fmt: skip
        log.close()
        self.stack.callback(stop_process, proc)
        deadline = time.monotonic() + 60
        while not self.kubeconfig.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"API server did not start:\n{tail(self.workdir / 'apiserver.log')}"
                )
            time.sleep(0.05)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        argv = [
            "ip",
            "netns",
            "exec",
            self.netns,
            str(KUBECTL),
            "--kubeconfig",
            str(self.kubeconfig),
        ]
        deadline = time.monotonic() + 30
        while True:
            proc = subprocess.run(
                [*argv, *args], input=stdin, capture_output=True, text=True, check=False
            )
            if proc.returncode == 0:
                return proc.stdout
            if time.monotonic() > deadline:
                raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr}")
            time.sleep(0.2)

    def _register_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "labels": {"kubernetes.io/os": "linux"}},
            "spec": {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]},
        }
        self.kubectl("create", "-f", "-", stdin=json.dumps(node))
        address = self.node_ip.split("/")[0]
        status = {"status": {"addresses": [{"type": "InternalIP", "address": address}]}}
        self.kubectl(
            "patch", "node", self.node_name, "--subresource=status", "--type=merge",
            "-p", json.dumps(status),
        )  # fmt: skip

    def _wait_ready(self, timeout: float = 90.0) -> None:
        """Ready = the agent wrote its conflist and answers STATUS through the plugin."""
        assert self.agent is not None
        deadline = time.monotonic() + timeout
        conf = {"cniVersion": "1.1.0", "name": "antrea", "type": "antrea",
                "cniSocket": str(self.cni_socket)}  # fmt: skip
        while True:
            if self.agent.poll() is not None:
                raise RuntimeError(f"agent exited:\n{tail(self.workdir / 'agent.log')}")
            if (self.conf_dir / "10-antrea.conflist").exists() and self.cni_socket.exists():
                proc = subprocess.run(
                    [self.plugin], env={"CNI_COMMAND": "STATUS"}, input=json.dumps(conf).encode(),
                    capture_output=True, check=False,
                )  # fmt: skip
                if proc.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent not ready:\n{tail(self.workdir / 'agent.log')}")
            time.sleep(0.1)

    def plugin_config(self) -> dict[str, Any]:
        """Our plugin's stdin, derived from the agent's conflist as libcni derives it."""
        doc = json.loads((self.conf_dir / "10-antrea.conflist").read_text())
        conf = dict(doc["plugins"][0])
        conf.update(name=doc["name"], cniVersion=doc["cniVersion"])
        conf.setdefault("cniSocket", str(self.cni_socket))
        return conf


@dataclass
class Pod:
    name: str
    netns: str
    container_id: str
    result: dict[str, Any] | None = None


class Plugin:
    """How to invoke one CNI plugin (executable + config + CNI_PATH) for a pod."""

    def __init__(self, *, label: str, exe: Path, config: dict[str, Any], cni_path: str) -> None:
        self.label = label
        self.exe = exe
        self.config = config
        self.cni_path = cni_path

    def call(
        self, command: str, pod: Pod, *, check: bool = True
    ) -> tuple[float, subprocess.CompletedProcess[bytes]]:
        """Run ``command`` for ``pod``; returns (milliseconds, process). Raises unless ``check``
        is false when the plugin fails."""
        conf = dict(self.config)
        if command != "ADD" and pod.result is not None:
            conf["prevResult"] = pod.result
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": pod.container_id,
            "CNI_NETNS": str(NETNS_DIR / pod.netns),
            "CNI_IFNAME": "eth0",
            "CNI_PATH": self.cni_path,
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={pod.name};"
            f"K8S_POD_INFRA_CONTAINER_ID={pod.container_id}",
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        data = json.dumps(conf).encode()
        start = time.perf_counter()
        proc = subprocess.run([self.exe], env=env, input=data, capture_output=True, check=False)
        elapsed = (time.perf_counter() - start) * 1000
        if proc.returncode != 0 and check:
            raise RuntimeError(
                f"{self.label} {command} {pod.name} failed: {proc.stdout!r} {proc.stderr!r}"
            )
        if command == "ADD" and proc.returncode == 0:
            pod.result = json.loads(proc.stdout)
        return elapsed, proc

    def version_ms(self, runs: int = 20) -> float:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(
                [self.exe], env={"CNI_COMMAND": "VERSION"}, input=b'{"cniVersion":"1.0.0"}',
                capture_output=True, check=True,
            )  # fmt: skip
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)


def make_pods(prefix: str, count: int, created: list[str]) -> list[Pod]:
    pods = []
    for i in range(count):
        name = f"{prefix}-{i}"
        sh("ip", "netns", "add", name)
        created.append(name)
        cid = hashlib.sha256(name.encode()).hexdigest()
        pods.append(Pod(name=name, netns=name, container_id=cid))
    return pods


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "p95": p95(values)}


def pod_address(pod: Pod) -> str:
    out = sh("ip", "-n", pod.netns, "-o", "-4", "addr", "show", "dev", "eth0", check=False).stdout
    return out.split("inet ")[1].split()[0] if "inet " in out else ""


def check_pods(plugin: Plugin, pods: list[Pod]) -> None:
    """Outside the timed section: every pod got an address on eth0 matching its result."""
    for pod in pods:
        assert pod.result is not None
        want = next(ip["address"] for ip in pod.result["ips"] if ":" not in ip["address"])
        got = pod_address(pod)
        if got != want:
            raise RuntimeError(
                f"{plugin.label}: {pod.name} has {got!r} on eth0, result says {want}"
            )


def sequential(plugin: Plugin, pods: list[Pod]) -> dict[str, list[float]]:
    adds = [plugin.call("ADD", pod)[0] for pod in pods]
    check_pods(plugin, pods)
    dels = [plugin.call("DEL", pod)[0] for pod in pods]
    return {"add": adds, "del": dels}


def concurrent(plugin: Plugin, pods: list[Pod]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for command in ("ADD", "DEL"):
        barrier = threading.Barrier(len(pods))

        def one(pod: Pod, command: str = command, barrier: threading.Barrier = barrier) -> float:
            barrier.wait()
            return plugin.call(command, pod)[0]

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(pods)) as pool:
            times = list(pool.map(one, pods))
        out[command.lower()] = times
        out[f"{command.lower()}_wall"] = (time.perf_counter() - start) * 1000
        if command == "ADD":
            check_pods(plugin, pods)
    return out


class AgentLog:
    """The agent's own per-request timings (``cni_request_handled`` log lines, field ``ms``).

    They split a plugin invocation into agent work and everything else (plugin process start,
    validation, socket round trip). Best effort: missing lines just leave the figures out.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def handled_ms(self, since: int, command: str) -> list[float]:
        with self.path.open("rb") as f:
            f.seek(since)
            lines = f.read().splitlines()
        out = []
        for line in lines:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("event") == "cni_request_handled" and doc.get("command") == command:
                with contextlib.suppress(TypeError, ValueError):
                    out.append(float(doc["ms"]))
        return out


def reference_config(workdir: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "bench-ref",
        "type": "bridge",
        "bridge": "cni-bench0",
        "isGateway": True,
        "ipMasq": False,
        "mtu": 1450,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.245.1.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": str(workdir / "host-local"),
        },
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="antrea-cni-bench-"))
    pod_namespaces: list[str] = []
    try:
        with AntreaNode(workdir=workdir) as node:
            ours = Plugin(label="antrea", exe=node.plugin, config=node.plugin_config(),
                          cni_path=str(node.plugin.parent))  # fmt: skip
            ref = Plugin(label="reference", exe=REF_BIN / "bridge",
                         config=reference_config(workdir), cni_path=str(REF_BIN))  # fmt: skip
            pods = {
                (label, kind): make_pods(f"{node.prefix}-{label}-{kind}", count, pod_namespaces)
                for label in ("ours", "ref")
                for kind, count in (("seq", args.pods), ("conc", args.concurrent))
            }
            with in_netns(node.netns):  # the runtime runs plugins in the node's namespace
                # Warm-up: first ADD pays one-off costs (bytecode, bridge creation) on both sides.
                for plugin, label in ((ours, "ours"), (ref, "ref")):
                    (warm,) = make_pods(f"{node.prefix}-{label}-warm", 1, pod_namespaces)
                    plugin.call("ADD", warm)
                    plugin.call("DEL", warm)
                exec_ms = {"ours": ours.version_ms(), "ref": ref.version_ms()}
                agent_log = AgentLog(workdir / "agent.log")
                mark = agent_log.mark()
                seq = {"ours": sequential(ours, pods["ours", "seq"])}
                agent_seq = {c: agent_log.handled_ms(mark, c.upper()) for c in ("add", "del")}
                seq["ref"] = sequential(ref, pods["ref", "seq"])
                mark = agent_log.mark()
                conc = {"ours": concurrent(ours, pods["ours", "conc"])}
                agent_conc = {c: agent_log.handled_ms(mark, c.upper()) for c in ("add", "del")}
                conc["ref"] = concurrent(ref, pods["ref", "conc"])
                # Repeated DEL must still succeed (and costs what a no-op DEL costs).
                redel = [ours.call("DEL", pod)[0] for pod in pods["ours", "seq"][:10]]
    finally:
        for name in pod_namespaces:
            sh("ip", "netns", "del", name, check=False)
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    report: dict[str, Any] = {"pods": args.pods, "concurrent_pods": args.concurrent}
    for who, prefix in (("ours", ""), ("ref", "ref_")):
        for op in ("add", "del"):
            s = summary(seq[who][op])
            report[f"{prefix}{op}_median_ms"] = round(s["median"], 2)
            report[f"{prefix}{op}_p95_ms"] = round(s["p95"], 2)
            c = summary(conc[who][op])
            report[f"{prefix}concurrent_{op}_median_ms"] = round(c["median"], 2)
            report[f"{prefix}concurrent_{op}_p95_ms"] = round(c["p95"], 2)
            report[f"{prefix}concurrent_{op}_wall_ms"] = round(conc[who][f"{op}_wall"], 2)
        report[f"{prefix}exec_version_ms"] = round(exec_ms[who], 2)
    report["repeated_del_median_ms"] = round(statistics.median(redel), 2)
    for op in ("add", "del"):
        if agent_seq[op]:
            report[f"agent_{op}_median_ms"] = round(statistics.median(agent_seq[op]), 2)
        if agent_conc[op]:
            report[f"agent_concurrent_{op}_median_ms"] = round(statistics.median(agent_conc[op]), 2)
    report["ratio"] = round(report["add_median_ms"] / report["ref_add_median_ms"], 2)
    report["del_ratio"] = round(report["del_median_ms"] / report["ref_del_median_ms"], 2)
    report["concurrent_ratio"] = round(
        report["concurrent_add_median_ms"] / report["ref_concurrent_add_median_ms"], 2
    )
    return report


def print_table(report: dict[str, Any]) -> None:
    rows = [
        (f"ADD, {report['pods']} sequential", "add"),
        (f"DEL, {report['pods']} sequential", "del"),
        (f"ADD, {report['concurrent_pods']} concurrent", "concurrent_add"),
        (f"DEL, {report['concurrent_pods']} concurrent", "concurrent_del"),
    ]
    print(f"{'':28} {'antrea median':>14} {'p95':>8} {'reference median':>17} {'p95':>8}")
    for label, key in rows:
        print(
            f"{label:28} {report[f'{key}_median_ms']:>11.1f} ms {report[f'{key}_p95_ms']:>8.1f}"
            f" {report[f'ref_{key}_median_ms']:>14.1f} ms {report[f'ref_{key}_p95_ms']:>8.1f}"
        )
    if "agent_add_median_ms" in report:
        print(
            "agent-side handling (its log), sequential median: "
            f"ADD {report['agent_add_median_ms']:.1f} ms, "
            f"DEL {report.get('agent_del_median_ms', 0):.1f} ms"
        )
    print(
        f"plugin process start (VERSION): antrea {report['exec_version_ms']:.1f} ms, "
        f"reference {report['ref_exec_version_ms']:.1f} ms"
    )


def main() -> int:
    use_project_venv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50, help="sequential pods per plugin")
    parser.add_argument("--concurrent", type=int, default=20, help="concurrent pods per plugin")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, OVS)", file=sys.stderr)
        return 2

    def _terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through every teardown

    signal.signal(signal.SIGTERM, _terminate)
    report = run(args)
    print_table(report)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
