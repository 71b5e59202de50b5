"""`antrea lab up | down | status | restart-agent`: the lab's life cycle, synchronous.

`up` claims ``<root>/<name>`` atomically (mkdir) so two `up`s of one name cannot race, wires the
nodes, starts the supervisor and waits for it to report ready, then (antrea CNI) starts one
agent daemon per node. Any failure runs `down`, so a failed `up` leaves nothing behind.

`down` needs only the lab name: it stops the processes named in the lab's pidfiles (checking
their command lines), deletes every network namespace named ``antrea-<name>-*`` (killing what
still runs inside) and removes the lab directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
import yaml

from antrea.apis import agentapi
from antrea.testbed.lab import netns, topology
from antrea.testbed.lab.cniruntime import reference_conflist
from antrea.testbed.lab.daemons import read_restarts
from antrea.testbed.lab.nodes import network_ready
from antrea.testbed.lab.state import (
    AGENT_API_PORT,
    CONTROLLER_API_PORT,
    CniMode,
    EncapMode,
    KubeMode,
    LabError,
    LabSpec,
    NodeSpec,
    lab_root,
    netns_prefix,
    plan,
    validate_name,
)

log = structlog.get_logger(__name__)

SUPERVISOR_READY_TIMEOUT = 60.0
NETWORK_READY_TIMEOUT = 60.0


def _antrea_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "antrea.cmd.antrea", "--log-format", "json", *args]


def check_prerequisites(cni: CniMode) -> None:
    """Fail early, with the fix in the message, when the host cannot run a lab."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, OVS): run it with sudo")
    missing = [t for t in ("ip", "ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl")
               if shutil.which(t) is None]  # fmt: skip
    if cni == "reference" and not Path("/usr/lib/cni/bridge").exists():
        missing.append("/usr/lib/cni/bridge")
    if missing:
        raise LabError(f"missing {', '.join(missing)}: run `bash bin/setup` (installs them)")


def up(
    *,
    name: str,
    nodes: int,
    cni: CniMode = "reference",
    encap: EncapMode = "vxlan",
    pod_cidr: str = "10.244.0.0/16",
    kubeconfig: str | None = None,
    wait_network: bool = True,
    kubernetes: KubeMode = "embedded",
    k8s_bin: str | None = None,
) -> LabSpec:
    if kubernetes == "real":
        if kubeconfig:
            raise LabError("--kubernetes real runs its own API server: drop --kubeconfig")
        return up_real(name=name, nodes=nodes, pod_cidr=pod_cidr, k8s_bin=k8s_bin)
    if kubeconfig:
        kubeconfig = str(Path(kubeconfig).resolve())
        if not Path(kubeconfig).is_file():
            raise LabError(f"--kubeconfig {kubeconfig}: no such file")
    spec = plan(
        name=name, nodes=nodes, cni=cni, encap=encap, pod_cidr=pod_cidr,
        external_kubeconfig=kubeconfig,
    )  # fmt: skip
    if spec.path.exists():
        raise LabError(
            f"lab {name!r} already exists ({spec.path}); use it, or `antrea lab down --name {name}`"
        )
    check_prerequisites(cni)
    claim(spec)
    try:
        spec.save()
        try:
            topology.build(spec)
        except subprocess.CalledProcessError as exc:
            cmd = " ".join(map(str, exc.cmd))
            raise LabError(f"wiring the lab failed: {cmd}: {(exc.stderr or '').strip()}") from exc
        if cni == "reference":
            for node in spec.nodes:
                conf = reference_conflist(node_pod_cidr=node.pod_cidr, ipam_dir=node.path / "ipam")
                (node.cni_conf_dir / "10-lab-bridge.conflist").write_text(
                    json.dumps(conf, indent=2)
                )
        start_supervisor(spec)
        spec = LabSpec.load(spec.spec_file)  # the supervisor recorded the API port
        if cni == "antrea":
            for node in spec.nodes:
                write_agent_config(spec, node)
                start_agent(spec, node)
            if wait_network:
                wait_for_network(spec)
    except BaseException:
        log.warning("lab_up_failed", lab=name)
        down(name)
        raise
    log.info("lab_up", lab=name, nodes=nodes, cni=cni, kubeconfig=str(spec.kubeconfig))
    return spec


def claim(spec: LabSpec) -> None:
    """Create the lab's directory atomically: two `up`s of one name cannot both get it."""
    name = spec.name
    leftovers = netns.list_netns(netns_prefix(name))
    if leftovers:
        raise LabError(
            f"lab {name!r} has leftover namespaces ({', '.join(leftovers)}): "
            f"run `antrea lab down --name {name}` first"
        )
    lab_root().mkdir(parents=True, exist_ok=True)
    try:
        spec.path.mkdir(parents=True)  # parents: another lab's down may rmdir the root
    except FileExistsError:
        raise LabError(
            f"lab {name!r} already exists ({spec.path}); use it, or `antrea lab down --name {name}`"
        ) from None


def up_real(*, name: str, nodes: int, pod_cidr: str, k8s_bin: str | None) -> LabSpec:
    """A lab on real Kubernetes binaries (see `antrea.testbed.lab.realk8s.lifecycle`)."""
    from antrea.testbed.lab.realk8s import binaries
    from antrea.testbed.lab.realk8s import lifecycle as real

    spec = plan(name=name, nodes=nodes, cni="antrea", encap="vxlan", pod_cidr=pod_cidr)
    if spec.path.exists():
        raise LabError(
            f"lab {name!r} already exists ({spec.path}); use it, or `antrea lab down --name {name}`"
        )
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, containers): run it with sudo")
    bins = binaries.find(k8s_bin)
    spec.kubernetes, spec.k8s_bin = "real", bins.directory
    claim(spec)
    try:
        spec.save()
        try:
            real.build(spec, bins)
        except subprocess.CalledProcessError as exc:
            cmd = " ".join(map(str, exc.cmd))
            raise LabError(f"wiring the lab failed: {cmd}: {(exc.stderr or '').strip()}") from exc
    except BaseException:
        log.warning("lab_up_failed", lab=name)
        down(name)
        raise
    log.info("lab_up", lab=name, nodes=nodes, kubernetes="real", kubeconfig=str(spec.kubeconfig))
    return spec


def start_supervisor(spec: LabSpec) -> None:
    logf = spec.supervisor_log.open("ab")
    proc = subprocess.Popen(
        _antrea_argv("lab", "supervise", "--name", spec.name),
        stdin=subprocess.DEVNULL,
        stdout=logf,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd="/",
    )
    logf.close()
    spec.supervisor_pidfile.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + SUPERVISOR_READY_TIMEOUT
    while not spec.ready_file.exists():
        if proc.poll() is not None:
            raise LabError(
                f"lab supervisor exited ({proc.returncode}):\n{tail(spec.supervisor_log)}"
            )
        if time.monotonic() > deadline:
            raise LabError(f"lab supervisor not ready after {SUPERVISOR_READY_TIMEOUT:.0f}s:\n"
                           f"{tail(spec.supervisor_log)}")  # fmt: skip
        time.sleep(0.05)


def restart_supervisor(spec: LabSpec) -> None:
    """Stop the supervisor and start it again: API state persists, pods are adopted back."""
    topology.stop_pidfile(spec.supervisor_pidfile, expect="supervise", timeout=10.0)
    spec.ready_file.unlink(missing_ok=True)
    start_supervisor(spec)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def agent_config(spec: LabSpec, node: NodeSpec) -> dict[str, Any]:
    """The daemon config of one node (contracts: Antrea key names, lab paths)."""
    return {
        "nodeName": node.name,
        "kubeconfig": str(node.kubeconfig),
        "controllerKubeconfig": str(node.controller_kubeconfig),
        "ovsBridge": "br-int",
        "ovsDatapathType": "netdev",
        "ovsRunDir": str(node.ovs_dir),
        "hostGateway": "gw0",
        "tunnelType": "geneve" if spec.encap == "geneve" else "vxlan",
        "trafficEncapMode": "noEncap" if spec.encap == "none" else "encap",
        "defaultMTU": 0,
        "transportInterface": "br-phy",
        "cniSocket": str(node.cni_socket),
        "cniConfDir": str(node.cni_conf_dir),
        "cniBinDir": str(node.cni_bin_dir),
        "stateDir": str(node.agent_state_dir),
        "apiPort": AGENT_API_PORT,
        "controllerAPIPort": CONTROLLER_API_PORT,
        "leaseNamespace": "kube-system",
        # Antrea's option for datapaths without TX checksum offload (the userspace one).
        "disableTXChecksumOffload": True,
        # NetworkPolicy audit log: per node here (/var/log/antrea/networkpolicy/np.log upstream).
        "networkPolicyAuditLog": str(node.path / "networkpolicy" / "np.log"),
    }


def write_agent_config(spec: LabSpec, node: NodeSpec) -> Path:
    node.agent_config.write_text(yaml.safe_dump(agent_config(spec, node), sort_keys=False))
    return node.agent_config


def start_agent(spec: LabSpec, node: NodeSpec) -> int:
    """Start `antrea daemon` in the node namespace (detached; log and pidfile in the node dir)."""
    if not node.agent_config.exists():
        write_agent_config(spec, node)
    env = dict(os.environ)
    env.update(node.env())
    logf = node.agent_log.open("ab")
    proc = subprocess.Popen(
        netns.exec_argv(node.netns, _antrea_argv("daemon", "--config", str(node.agent_config))),
        stdin=subprocess.DEVNULL,
        stdout=logf,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd="/",
        env=env,
    )
    logf.close()
    node.agent_pidfile.write_text(f"{proc.pid}\n")
    log.info("lab_agent_started", node=node.name, pid=proc.pid)
    return proc.pid


def stop_agent(node: NodeSpec, *, timeout: float = 10.0) -> None:
    topology.stop_pidfile(node.agent_pidfile, expect="daemon", timeout=timeout)
    node.agent_pidfile.unlink(missing_ok=True)


def agent_lock_path(node: NodeSpec) -> Path:
    return node.path / "agent.lock"


_held: dict[Path, tuple[int, int]] = {}  # lock -> (fd, depth) held by this process
_held_guard = threading.Lock()


@contextlib.contextmanager
def holding_agent(node: NodeSpec) -> Iterator[None]:
    """Hold the node's agent lock: the supervisor leaves the agent alone meanwhile (it does not
    restart one that is gone). `restart-agent` holds it while it works; a test holds it to keep
    an agent down on purpose. Re-entrant within one process."""
    path = agent_lock_path(node)
    with _held_guard:
        fd, depth = _held.get(path, (-1, 0))
        if not depth:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        _held[path] = (fd, depth + 1)
    try:
        if not depth:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with _held_guard:
            fd, depth = _held.pop(path)
            if depth > 1:
                _held[path] = (fd, depth - 1)
            else:
                os.close(fd)  # releases the lock


def restart_agent(spec: LabSpec, node_name: str) -> int:
    node = spec.node(node_name)
    if spec.cni != "antrea":
        raise LabError(f"lab {spec.name!r} runs the reference CNI: there is no agent to restart")
    with holding_agent(node):
        stop_agent(node)
        pid = start_agent(spec, node)
        wait_agent_ready(node, pid)
        return pid


def agent_ready(node: NodeSpec, timeout: float = 1.0) -> bool:
    """The agent's local API answers /healthz "ok" inside the node namespace: it is the last thing
    the agent starts (after policy, proxy and CNI), only once the agent is ready."""
    url = f"http://127.0.0.1:{AGENT_API_PORT}{agentapi.HEALTHZ}"
    argv = netns.exec_argv(node.netns, ["curl", "-s", "-m", str(timeout), url])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=9)
    except subprocess.TimeoutExpired:
        return False
    return done.stdout.strip() == "ok"


def wait_agent_ready(node: NodeSpec, pid: int, timeout: float = NETWORK_READY_TIMEOUT) -> None:
    """Wait until the (re)started agent ``pid`` is ready (its local API answers /healthz "ok"),
    not only the node network: callers go on to use the agent's API (antctl) right away."""
    deadline = time.monotonic() + timeout
    while not agent_ready(node):
        if not topology.pid_alive(pid):
            raise LabError(f"agent on {node.name} exited:\n{tail(node.agent_log)}")
        if time.monotonic() > deadline:
            raise LabError(
                f"agent on {node.name} not ready after {timeout:.0f}s ({node.agent_log}):\n"
                f"{tail(node.agent_log)}"
            )
        time.sleep(0.2)


def wait_for_network(spec: LabSpec, timeout: float = NETWORK_READY_TIMEOUT) -> None:
    """Wait until every node's agent has installed its CNI config (node network ready)."""
    deadline = time.monotonic() + timeout
    while True:
        pending = [n for n in spec.nodes if not network_ready(n)]
        if not pending:
            return
        for n in pending:
            pid = topology.read_pid(n.agent_pidfile)
            if pid is None or not topology.pid_alive(pid):
                raise LabError(f"agent on {n.name} exited:\n{tail(n.agent_log)}")
        if time.monotonic() > deadline:
            names = ", ".join(n.name for n in pending)
            where = pending[0].agent_log
            raise LabError(
                f"node network not ready on {names} after {timeout:.0f}s ({where}):\n{tail(where)}"
            )
        time.sleep(0.2)


def down(name: str) -> list[str]:
    """Remove lab ``name`` entirely; returns what was removed (namespaces, dir)."""
    validate_name(name)
    root = lab_root() / name
    removed: list[str] = []
    removed += forget_external(root)
    topology.stop_pidfile(root / "supervisor.pid", expect="supervise", timeout=10.0)
    removed += real_teardown(root, name)
    nodes_dir = root / "nodes"
    node_dirs = sorted(nodes_dir.iterdir()) if nodes_dir.is_dir() else []
    for d in node_dirs:
        topology.stop_pidfile(d / "agent.pid", expect="daemon", timeout=5.0)
    for d in node_dirs:
        for prog in ("ovs-vswitchd", "ovsdb-server"):
            topology.stop_pidfile(d / "ovs" / f"{prog}.pid", expect=prog, timeout=3.0)
    for ns in netns.list_netns(netns_prefix(name)):
        netns.delete(ns)
        removed.append(ns)
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
        removed.append(str(root))
    try:
        lab_root().rmdir()  # only when no other lab is left
    except OSError:
        pass
    log.info("lab_down", lab=name, removed=len(removed))
    return removed


def real_teardown(root: Path, name: str) -> list[str]:
    from antrea.testbed.lab.realk8s.lifecycle import leftover_cgroup_roots, teardown

    marks = [root / "control", root / "forward.pid", *(root / "nodes").glob("*/run.sh")]
    if not any(m.exists() for m in marks) and not leftover_cgroup_roots(name):
        return []

    return teardown(root, name)


def forget_external(root: Path) -> list[str]:
    """External API server: delete what the lab wrote there (its Nodes and their pods)."""
    try:
        spec = LabSpec.load(root / "lab.json")
    except (OSError, ValueError, TypeError, KeyError):
        return []
    if not spec.external_kubeconfig or spec.kubernetes != "embedded":
        return []
    from antrea.testbed.lab.external import forget

    return forget(spec)


def status(spec: LabSpec) -> dict[str, Any]:
    """Process and readiness facts about a lab (no API calls: works when the API is down)."""
    real = spec.kubernetes == "real"
    # A real lab has no supervisor: its host-side process is the API forwarder.
    sup = topology.read_pid(spec.path / "forward.pid" if real else spec.supervisor_pidfile)
    doc: dict[str, Any] = {
        "name": spec.name,
        "kubernetes": spec.kubernetes,
        "dir": spec.dir,
        "cni": spec.cni,
        "encap": spec.encap,
        "kubeconfig": str(spec.kubeconfig),
        "apiserver": "external"
        if spec.external_kubeconfig
        else f"https://127.0.0.1:{spec.api_port}",  # real: the forwarder's port
        "supervisor": {"pid": sup, "running": bool(sup and topology.pid_alive(sup))},
        "nodes": [],
    }
    if real:
        from antrea.testbed.lab.realk8s import control

        pids = {c: topology.read_pid(control.pidfile(spec, c)) for c in control.COMPONENTS}
        pids["runtime"] = None
        doc["components"] = {
            c: bool(p and topology.pid_alive(p)) for c, p in pids.items() if c != "runtime"
        }
        for node in spec.nodes:
            pid = topology.read_pid(node.path / "runtime.pid")
            doc["components"][f"{node.name}/containerd+kubelet"] = bool(
                pid and topology.pid_alive(pid)
            )
    for node in spec.nodes:
        ovs = {
            p: topology.read_pid(node.ovs_dir / f"{p}.pid")
            for p in ("ovsdb-server", "ovs-vswitchd")
        }
        agent = topology.read_pid(node.agent_pidfile)
        doc["nodes"].append(
            {
                "name": node.name,
                "netns": node.netns,
                "ip": node.underlay_ip,
                "podCIDR": node.pod_cidr,
                "ovs": all(p is not None and topology.pid_alive(p) for p in ovs.values()),
                "agent": None
                if spec.cni != "antrea"
                else bool(agent and topology.pid_alive(agent)),
                "restarts": read_restarts(node),
                "networkReady": network_ready(node),
                "pods": len(list(node.sandbox_dir.glob("*.json"))),
                "netnsExists": netns.netns_path(node.netns).exists(),
            }
        )
    return doc
