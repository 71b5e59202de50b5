"""One real lab node: containerd + runc + kubelet in the node's network namespace.

Each node's containerd and kubelet run together under ``tini -s`` (a subreaper: PID 1 here does
not reap exited shims) in one private mount namespace, entered with
``nsenter --net=<node netns> unshare -m --propagation slave``. In that mount namespace:

- the machine-wide sysctls a kubelet would otherwise rewrite (``vm.overcommit_memory``,
  ``kernel.panic``, ...) are bind-masked with files already holding the values it wants;
- the host paths that a node's runtime and a CNI's DaemonSet write (``/etc/cni/net.d``,
  ``/opt/cni/bin``, ``/var/run/netns``, ``/var/run/antrea``, ``/var/log/pods``, ...) are
  bind-masked with per-node directories, so nodes do not share them with each other or with
  the host. ``/opt/cni/bin`` starts with the reference ``loopback`` plugin, as on a node
  provisioned by kubeadm; the CNI's install step adds its own.

Every process of a node (tini, containerd, kubelet, shims, containers) lives in the node's
``cgroupRoot`` (``/antrea-lab-<lab>-<node>`` in every cgroup v1 hierarchy), created before the
kubelet starts; `down` kills what is in it and removes it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import yaml

from antrea.testbed.lab import netns, topology
from antrea.testbed.lab.realk8s.binaries import Binaries
from antrea.testbed.lab.realk8s.images import PAUSE_IMAGE
from antrea.testbed.lab.realk8s.pki import Pki
from antrea.testbed.lab.state import LabError, LabSpec, NodeSpec

CGROUP_FS = Path("/sys/fs/cgroup")
REFERENCE_CNI_DIR = Path("/usr/lib/cni")
# Paths the node's runtime, kubelet and DaemonSet pods write on "the host".
HOST_MASKS = ("/etc/cni/net.d", "/opt/cni/bin", "/var/lib/cni", "/var/run/netns",
              "/var/run/antrea", "/var/log/antrea", "/var/lib/antrea", "/var/log/pods",
              "/var/log/containers", "/run/containerd")  # fmt: skip
# The values a kubelet enforces (it rewrites them machine-wide when they differ).
SYSCTL_MASKS = {"vm/overcommit_memory": "1", "vm/panic_on_oom": "0", "kernel/panic": "10",
                "kernel/panic_on_oops": "1", "kernel/keys/root_maxkeys": "1000000",
                "kernel/keys/root_maxbytes": "25000000"}  # fmt: skip


def cgroup_root(spec_name: str, node_name: str) -> str:
    return f"/antrea-lab-{spec_name}-{node_name}"


def hierarchies() -> list[Path]:
    """Every cgroup v1 hierarchy mounted under /sys/fs/cgroup (not the v2 ``unified`` one)."""
    if not CGROUP_FS.is_dir():
        return []
    return sorted(p for p in CGROUP_FS.iterdir()
                  if p.is_dir() and not p.is_symlink() and p.name != "unified"
                  and (p / "cgroup.procs").exists())  # fmt: skip


def all_hierarchies() -> list[Path]:
    """The v1 hierarchies and, on a hybrid host, the v2 ``unified`` one (runc writes there too)."""
    unified = CGROUP_FS / "unified"
    return hierarchies() + ([unified] if (unified / "cgroup.procs").exists() else [])


def create_cgroup_root(root: str) -> None:
    for h in hierarchies():
        d = h / root.lstrip("/")
        d.mkdir(exist_ok=True)
        for f in ("cpuset.cpus", "cpuset.mems"):
            if (d / f).exists() and not (d / f).read_text().strip():
                (d / f).write_text((h / f).read_text())


def cgroup_pids(root: str) -> set[int]:
    pids: set[int] = set()
    for h in all_hierarchies():
        base = h / root.lstrip("/")
        if not base.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(base):
            try:
                text = (Path(dirpath) / "cgroup.procs").read_text()
            except OSError:
                continue
            pids.update(int(x) for x in text.split())
    return pids


def remove_cgroup_root(root: str, *, timeout: float = 15.0) -> list[int]:
    """Kill every process in the node's cgroups, then remove them; returns survivors' pids."""
    deadline = time.monotonic() + timeout
    while True:
        pids = {p for p in cgroup_pids(root) if topology.pid_alive(p)}
        if not pids or time.monotonic() > deadline:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    # A killed task keeps its cgroup busy until the kernel has finished its exit: retry the
    # removal (deepest first) for a little while rather than leave empty cgroups behind.
    rm_deadline = time.monotonic() + 10.0
    while True:
        left = False
        for h in all_hierarchies():
            base = h / root.lstrip("/")
            if not base.is_dir():
                continue
            for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda t: -len(t[0])):
                try:
                    Path(dirpath).rmdir()
                except OSError:
                    left = True
        if not left or time.monotonic() > rm_deadline:
            break
        time.sleep(0.2)
    return sorted(p for p in cgroup_pids(root) if topology.pid_alive(p))


class RealNode:
    """Paths and processes of one node of a real lab."""

    def __init__(self, spec: LabSpec, node: NodeSpec) -> None:
        self.spec, self.node = spec, node
        self.dir = node.path
        self.cgroup_root = cgroup_root(spec.name, node.name)

    @property
    def containerd_dir(self) -> Path:
        return self.dir / "containerd"

    @property
    def socket(self) -> Path:
        return self.containerd_dir / "containerd.sock"

    @property
    def kubelet_dir(self) -> Path:
        return self.dir / "kubelet"

    @property
    def pidfile(self) -> Path:
        return self.dir / "runtime.pid"

    @property
    def log(self) -> Path:
        return self.dir / "runtime.log"

    def host_dir(self, path: str) -> Path:
        return self.dir / "host" / path.lstrip("/")

    def containerd_config(self) -> str:
        d = self.containerd_dir
        return f'''version = 2
root = "{d / "root"}"
state = "{d / "state"}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d / "runc"}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
'''

    def kubelet_config(self, p: Pki) -> dict[str, object]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.node.underlay_ip,
            "port": 10250,
            "readOnlyPort": 0,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "failCgroupV1": False,
            "oomScoreAdj": 0,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(p.ca_crt)},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDomain": "cluster.local",
            "clusterDNS": ["10.96.0.10"],
            "resolvConf": str(self.dir / "resolv.conf"),
            "failSwapOn": False,
            "protectKernelDefaults": True,  # the masks hold the values: never write the host's
            "systemReserved": {"cpu": "100m", "memory": "256Mi"},
            "kubeReserved": {"cpu": "100m", "memory": "256Mi"},
            "enforceNodeAllocatable": ["pods"],
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "rotateCertificates": False,
            "nodeStatusReportFrequency": "1m",
        }

    def launcher(self, bins: Binaries, p: Pki) -> str:
        """The script tini runs inside the node's private mount namespace."""
        q = shlex.quote
        lines = ["#!/bin/bash", "set -eu"]
        # tini ($PPID) and this shell join the node's cgroups first: all below inherit them.
        for h in hierarchies():
            procs = q(str(h / self.cgroup_root.lstrip("/") / "cgroup.procs"))
            lines.append(f"echo $PPID > {procs}; echo $$ > {procs}")
        for path in HOST_MASKS:
            lines.append(f"mkdir -p {q(path)} && mount --bind {q(str(self.host_dir(path)))} "
                         f"{q(path)}")  # fmt: skip
        # As on a systemd host: "/" is a shared mount here (a new peer group, private to this
        # namespace), so containers can ask for HostToContainer propagation (the CNI's
        # /var/run/netns). On this host "/" is private, and the copy unshare made is too.
        lines.append("mount --make-rshared /")
        for key in SYSCTL_MASKS:
            src = self.dir / "sysctl" / key.replace("/", ".")
            lines.append(f"mount --bind {q(str(src))} /proc/sys/{key}")
        kubelet = [
            bins.kubelet, f"--config={self.dir / 'kubelet.yaml'}",
            f"--kubeconfig={p.kubeconfig(f'system:node:{self.node.name}')}",
            f"--root-dir={self.kubelet_dir}", f"--cert-dir={self.kubelet_dir / 'pki'}",
            f"--hostname-override={self.node.name}", f"--node-ip={self.node.underlay_ip}",
            "--node-labels=antrea.io/lab-node=true", "--v=1",
        ]  # fmt: skip
        lines += [
            f"containerd --config {q(str(self.containerd_dir / 'config.toml'))} "
            f">> {q(str(self.dir / 'containerd.log'))} 2>&1 &",
            f"for _ in $(seq 600); do [ -S {q(str(self.socket))} ] && break; sleep 0.1; done",
            f"{shlex.join(kubelet)} >> {q(str(self.dir / 'kubelet.log'))} 2>&1 &",
            "wait",
        ]
        return "\n".join(lines) + "\n"

    def prepare(self, bins: Binaries, p: Pki) -> None:
        for path in HOST_MASKS:
            self.host_dir(path).mkdir(parents=True, exist_ok=True)
        cni_bin = self.host_dir("/opt/cni/bin")
        for plugin in ("loopback", "host-local", "portmap", "bridge"):
            if (REFERENCE_CNI_DIR / plugin).exists():
                shutil.copy2(REFERENCE_CNI_DIR / plugin, cni_bin / plugin)
        (self.dir / "sysctl").mkdir(exist_ok=True)
        for key, value in SYSCTL_MASKS.items():
            (self.dir / "sysctl" / key.replace("/", ".")).write_text(f"{value}\n")
        (self.dir / "resolv.conf").write_text("")
        self.containerd_dir.mkdir(exist_ok=True)
        (self.containerd_dir / "config.toml").write_text(self.containerd_config())
        self.kubelet_dir.mkdir(exist_ok=True)
        (self.dir / "kubelet.yaml").write_text(yaml.safe_dump(self.kubelet_config(p)))
        (self.dir / "run.sh").write_text(self.launcher(bins, p))
        create_cgroup_root(self.cgroup_root)

    def start(self) -> int:
        argv = ["nsenter", f"--net={netns.netns_path(self.node.netns)}", "unshare", "-m",
                "--propagation", "slave", "tini", "-s", "-g", "--", "bash",
                str(self.dir / "run.sh")]  # fmt: skip
        with self.log.open("ab") as logf:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True, cwd="/",
            )  # fmt: skip
        self.pidfile.write_text(f"{proc.pid}\n")
        return proc.pid

    def wait_containerd(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            pid = topology.read_pid(self.pidfile)
            if pid is None or not topology.pid_alive(pid) or time.monotonic() > deadline:
                logs = f"{_tail(self.log)}\n{_tail(self.dir / 'containerd.log')}"
                raise LabError(f"containerd on {self.node.name} did not start:\n{logs}")
            time.sleep(0.1)

    def import_image(self, archive: Path) -> None:
        proc = subprocess.run(
            ["ctr", "--address", str(self.socket), "-n", "k8s.io", "images", "import",
             str(archive)], capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise LabError(f"importing {archive.name} into {self.node.name}: {proc.stderr.strip()}")


def stop_node(spec_name: str, node_dir: Path, node_name: str) -> list[int]:
    """Stop a node's runtime (tini first, then everything left in its cgroups)."""
    topology.stop_pidfile(node_dir / "runtime.pid", expect="tini", timeout=10.0)
    return remove_cgroup_root(cgroup_root(spec_name, node_name))


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
