"""Test helpers shipped with the package: a minimal Kubernetes API for Nodes and Pods.

`FakeKube` serves exactly what the agent reads (GET/list/watch Nodes, list Pods by
``spec.nodeName``) over plain HTTP, so integration tests can run real agents in node namespaces
without the embedded API server. Its listening sockets are created inside the node namespaces
(`antrea.testbed.lab.netns.listen_socket`; a socket keeps the namespace it was created in), so
a server of the test process can be reached at 127.0.0.1 from processes in that namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from antrea.ovs.openflow.flow import FlowFilter
from antrea.ovs.openflow.render import render_filter
from antrea.ovs.ovsctl import DumpedFlow, parse_flow_line
from antrea.testbed.lab.netns import listen_socket
from antrea.testbed.ovssandbox import OvsSandbox

JSON = dict[str, Any]


def node_object(name: str, pod_cidr: str, internal_ip: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "resourceVersion": "1"},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": internal_ip}]},
    }


class FakeKube:
    """Nodes and pods in memory; watchers get ADDED/MODIFIED/DELETED events."""

    def __init__(self) -> None:
        self.nodes: dict[str, JSON] = {}
        self.pods: list[JSON] = []
        self.rv = 1
        self._watchers: list[asyncio.Queue[JSON | None]] = []
        self.app = web.Application()
        self.app.router.add_get("/api/v1/nodes", self._nodes)
        self.app.router.add_get("/api/v1/nodes/{name}", self._node)
        self.app.router.add_get("/api/v1/pods", self._pods)
        self._runner: web.AppRunner | None = None
        self.ports: dict[str | None, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._thread_id = 0

    def _bump(self, obj: JSON) -> JSON:
        self.rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        return obj

    def set_node(self, obj: JSON) -> None:
        """Add or update a Node (thread-safe when the server runs in its own thread)."""
        if self._loop is not None and self._thread_id != threading.get_ident():
            self._loop.call_soon_threadsafe(self.set_node, obj)
            return
        name = obj["metadata"]["name"]
        kind = "MODIFIED" if name in self.nodes else "ADDED"
        self.nodes[name] = self._bump(obj)
        for q in self._watchers:
            q.put_nowait({"type": kind, "object": obj})

    def delete_node(self, name: str) -> None:
        if self._loop is not None and self._thread_id != threading.get_ident():
            self._loop.call_soon_threadsafe(self.delete_node, name)
            return
        obj = self.nodes.pop(name, None)
        if obj is None:
            return
        self._bump(obj)
        for q in self._watchers:
            q.put_nowait({"type": "DELETED", "object": obj})

    async def _node(self, request: web.Request) -> web.Response:
        obj = self.nodes.get(request.match_info["name"])
        if obj is None:
            return web.json_response({"kind": "Status", "code": 404}, status=404)
        return web.json_response(obj)

    async def _pods(self, request: web.Request) -> web.Response:
        sel = request.query.get("fieldSelector", "")
        node = sel.partition("spec.nodeName=")[2]
        items = [p for p in self.pods if not node or p.get("spec", {}).get("nodeName") == node]
        return web.json_response({"kind": "PodList", "metadata": {}, "items": items})

    async def _nodes(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") not in ("true", "1"):
            return web.json_response(
                {
                    "kind": "NodeList",
                    "metadata": {"resourceVersion": str(self.rv)},
                    "items": list(self.nodes.values()),
                }
            )
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        q: asyncio.Queue[JSON | None] = asyncio.Queue()
        self._watchers.append(q)
        try:
            while True:
                ev = await q.get()
                if ev is None:  # shutting down
                    break
                await resp.write(json.dumps(ev).encode() + b"\n")
        finally:
            self._watchers.remove(q)
        return resp

    async def start(self, netns_list: list[str | None]) -> None:
        self._runner = web.AppRunner(self.app, shutdown_timeout=0.5)
        await self._runner.setup()
        for ns in netns_list:
            sock = listen_socket("127.0.0.1", 0, in_netns=ns, backlog=128)
            site = web.SockSite(self._runner, sock)
            await site.start()
            self.ports[ns] = sock.getsockname()[1]

    async def stop(self) -> None:
        for q in list(self._watchers):
            q.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self, netns_list: list[str | None]) -> None:
        """Serve from a private event loop in a thread (tests may then block freely)."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._thread_id = threading.get_ident()
            try:
                loop.run_until_complete(self.start(netns_list))
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=main, name="fake-kube", daemon=True)
        self._thread.start()
        ready.wait(30)
        if errors:
            raise errors[0]

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def kubeconfig(self, path: Path, netns: str | None) -> Path:
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "fake", "cluster": {"server": f"http://127.0.0.1:{self.ports[netns]}"}}
            ],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
        path.write_text(json.dumps(doc))
        return path


# -- a small multi-node harness: netns nodes with OVS, an underlay, real agent processes -----
@dataclass
class PodHandle:
    namespace: str
    name: str
    netns: str
    container_id: str
    node: NodeHandle
    result: JSON = field(default_factory=dict)

    @property
    def ip(self) -> str:
        return str(self.result["ips"][0]["address"]).split("/")[0]

    def exec(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@dataclass
class NodeHandle:
    index: int
    name: str
    netns: str
    dir: Path
    ip: str
    pod_cidr: str
    ovs: OvsSandbox
    config: JSON = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.dir / "agent.yaml"

    @property
    def cni_bin(self) -> Path:
        return self.dir / "cni-bin"

    @property
    def cni_conf(self) -> Path:
        return self.dir / "cni-conf"

    def start_agent(self) -> None:
        self.config_path.write_text(json.dumps(self.config))
        log = open(self.dir / "agent.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.netns,
                sys.executable,
                "-m",
                "antrea.cmd.antrea",
                "--log-format",
                "json",
                "--log-level",
                "debug",
                "agent",
                "--config",
                str(self.config_path),
            ],
            stdout=log,
            stderr=log,
            env=self.ovs.env(),
        )
        log.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the agent answers /healthz with ok (inside the node namespace)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"agent on {self.name} exited: {self.log_tail()}")
            out = self.run(["curl", "-s", "-m", "1", f"http://127.0.0.1:{self.api_port}/healthz"])
            if out.stdout.strip() == "ok":
                return
            time.sleep(0.2)
        raise TimeoutError(f"agent on {self.name} not ready: {self.log_tail()}")

    def api(self, path: str) -> Any:
        out = self.run(["curl", "-s", "-m", "5", f"http://127.0.0.1:{self.api_port}{path}"])
        return json.loads(out.stdout) if path != "/metrics" else out.stdout

    @property
    def api_port(self) -> int:
        return int(self.config["apiPort"])

    def log_tail(self, n: int = 4000) -> str:
        try:
            return (self.dir / "agent.log").read_text()[-n:]
        except OSError:
            return ""

    def stop_agent(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart_vswitchd(self) -> None:
        """Stop ovs-vswitchd by pid and start it again (ovsdb-server keeps running)."""
        rundir = self.ovs.rundir
        pid = int((rundir / "ovs-vswitchd.pid").read_text().strip())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.ovs.run(
            [
                "ovs-vswitchd",
                self.ovs.db_sock,
                f"--pidfile={rundir}/ovs-vswitchd.pid",
                "--detach",
                f"--log-file={rundir}/ovs-vswitchd.log",
                f"--unixctl={rundir}/ovs-vswitchd.ctl",
            ]
        )

    def run(self, argv: list[str], *, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True,
            text=True,
            env=self.ovs.env(),
            check=check,
            timeout=60,
        )

    def vsctl(self, *args: str) -> str:
        return self.ovs.vsctl(*args)

    def dump_flows(self, flow_filter: FlowFilter | None = None) -> list[DumpedFlow]:
        """The node's br-int flows (no stats), parsed as the agent parses them."""
        text = render_filter(flow_filter) if flow_filter is not None else ""
        argv = ["ovs-ofctl", "-O", "OpenFlow15", "--no-stats", "dump-flows"]
        argv += [self.ovs.ofctl_target("br-int")] + ([text] if text else [])
        out = self.ovs.run(argv).stdout
        flows = [parse_flow_line(line) for line in out.splitlines()]
        return [f for f in flows if f is not None]

    def cni(
        self,
        command: str,
        *,
        container_id: str,
        netns: str = "",
        ifname: str = "eth0",
        pod: tuple[str, str] = ("default", "pod"),
        prev_result: JSON | None = None,
        cni_version: str = "1.0.0",
        env: dict[str, str] | None = None,
    ) -> tuple[int, JSON]:
        """Run the installed plugin binary the way a container runtime does."""
        conflist = json.loads((self.cni_conf / "10-antrea.conflist").read_text())
        conf = dict(conflist["plugins"][0])
        conf["cniVersion"] = cni_version
        conf["name"] = conflist["name"]
        if prev_result is not None:
            conf["prevResult"] = prev_result
        e = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": str(self.cni_bin),
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={pod[0]};K8S_POD_NAME={pod[1]}",
        }
        e.update(env or {})
        proc = subprocess.run(
            [str(self.cni_bin / "antrea")],
            input=json.dumps(conf),
            capture_output=True,
            text=True,
            env=e,
            timeout=60,
            check=False,
        )
        out = json.loads(proc.stdout) if proc.stdout.strip() else {}
        return proc.returncode, out


class AgentLab:
    """N nodes (netns + private OVS + br-phy on a shared underlay) running real agents."""

    def __init__(
        self, base: Path, *, nodes: int = 2, encap: str = "vxlan", network_policy: bool = False
    ) -> None:
        self.base = base
        self.tag = uuid.uuid4().hex[:6]
        self.encap = encap
        self.network_policy = network_policy
        self.kube = FakeKube()
        self.underlay = f"at{self.tag}-ul"
        self.nodes: list[NodeHandle] = []
        self.pods: list[PodHandle] = []
        self._netns: list[str] = []
        for i in range(1, nodes + 1):
            ns = f"at{self.tag}-n{i}"
            d = base / f"node{i}"
            self.nodes.append(
                NodeHandle(
                    index=i,
                    name=f"node{i}",
                    netns=ns,
                    dir=d,
                    ip=f"172.30.0.{i}",
                    pod_cidr=f"10.244.{i}.0/24",
                    ovs=OvsSandbox(rundir=d / "ovs", netns=ns),
                )
            )

    def _ip(self, *argv: str) -> None:
        subprocess.run(["ip", *argv], check=True, capture_output=True)

    def _register(self) -> None:
        """Record what this lab owns, so a later run can clean up after a killed test process."""
        REGISTRY.mkdir(parents=True, exist_ok=True)
        doc = {
            "owner": os.getpid(),
            "netns": self._netns,
            "ovs": [str(n.ovs.rundir) for n in self.nodes],
            "agents": [str(n.config_path) for n in self.nodes],
        }
        (REGISTRY / f"{self.tag}.json").write_text(json.dumps(doc))

    def _add_netns(self, name: str) -> None:
        self._netns.append(name)
        self._register()
        self._ip("netns", "add", name)
        self._ip("-n", name, "link", "set", "lo", "up")

    def start(self) -> None:
        sweep_stale_labs()
        self._add_netns(self.underlay)
        self._ip("-n", self.underlay, "link", "add", "br0", "type", "bridge")
        self._ip("-n", self.underlay, "link", "set", "br0", "up")
        for n in self.nodes:
            self._add_netns(n.netns)
            n.dir.mkdir(parents=True, exist_ok=True)
            n.ovs.start()
            self._ip("link", "add", "eth1", "netns", n.netns, "type", "veth", "peer", "name",
                     f"p{n.index}", "netns", self.underlay)  # fmt: skip
            self._ip("-n", self.underlay, "link", "set", f"p{n.index}", "master", "br0", "up")
            n.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
                    "--", "add-port", "br-phy", "eth1")  # fmt: skip
            self._ip("-n", n.netns, "link", "set", "eth1", "up")
            self._ip("-n", n.netns, "addr", "add", f"{n.ip}/24", "dev", "br-phy")
            self._ip("-n", n.netns, "link", "set", "br-phy", "up")
        self.kube.start_in_thread([n.netns for n in self.nodes])
        for n in self.nodes:
            self.kube.set_node(node_object(n.name, n.pod_cidr, n.ip))
            n.config = {
                "nodeName": n.name,
                "kubeconfig": str(self.kube.kubeconfig(n.dir / "kubeconfig", n.netns)),
                "ovsBridge": "br-int",
                "ovsDatapathType": "netdev",
                "ovsRunDir": str(n.ovs.rundir),
                "tunnelType": "geneve" if self.encap == "geneve" else "vxlan",
                "trafficEncapMode": "noEncap" if self.encap == "none" else "encap",
                "cniSocket": str(n.dir / "cni.sock"),
                "cniConfDir": str(n.cni_conf),
                "cniBinDir": str(n.cni_bin),
                "stateDir": str(n.dir / "state"),
                "apiPort": 10350,
                "policyReadyTimeout": 2,
                "ovsCheckInterval": 1,
                "disableTXChecksumOffload": True,
                "enableNetworkPolicy": self.network_policy,
                "transportInterface": "br-phy",
            }

    def start_agents(self) -> None:
        for n in self.nodes:
            n.start_agent()
        for n in self.nodes:
            n.wait_ready()

    def add_pod(self, node: NodeHandle, namespace: str, name: str) -> PodHandle:
        ns = f"at{self.tag}-{namespace}-{name}"
        self._add_netns(ns)
        cid = uuid.uuid4().hex
        pod = PodHandle(namespace, name, ns, cid, node)
        rc, out = node.cni(
            "ADD", container_id=cid, netns=f"/var/run/netns/{ns}", pod=(namespace, name)
        )
        if rc != 0:
            raise RuntimeError(f"CNI ADD failed ({rc}): {out}\n{node.log_tail()}")
        pod.result = out
        self.pods.append(pod)
        return pod

    def stop(self) -> None:
        for n in self.nodes:
            try:
                n.stop_agent()
            except Exception:
                pass
        try:
            self.kube.stop_thread()
        finally:
            for n in self.nodes:
                try:
                    n.ovs.stop()
                except Exception:
                    pass
        for ns in reversed(self._netns):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        (REGISTRY / f"{self.tag}.json").unlink(missing_ok=True)


REGISTRY = Path("/var/run/antrea-agentlab")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _agent_pids(config_paths: list[str]) -> list[int]:
    """Pids of agent processes started with one of these (lab-private) config files."""
    wanted = {p.encode() for p in config_paths}
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"agent" in argv and wanted & set(argv):
            pids.append(int(proc.name))
    return pids


def sweep_stale_labs() -> list[str]:
    """Remove labs whose owning test process died without cleaning up (e.g. SIGKILLed).

    Only what the registry file of such a lab names is touched: its agents and OVS daemons by
    pid (from the recorded pids and pid files), its namespaces by name.
    """
    removed: list[str] = []
    if not REGISTRY.is_dir():
        return removed
    for entry in REGISTRY.glob("*.json"):
        try:
            doc = json.loads(entry.read_text())
        except (OSError, ValueError):
            continue
        if _alive(int(doc.get("owner", 0))):
            continue
        for pid in _agent_pids(doc.get("agents") or []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for rundir in doc.get("ovs") or []:
            OvsSandbox(rundir=Path(rundir)).stop()
        for ns in reversed(doc.get("netns") or []):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        entry.unlink(missing_ok=True)
        removed.append(entry.stem)
    return removed
