"""The real lab's control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

All four run inside the lab's underlay namespace, so their loopback ports are the lab's own
(several labs and other programs on the host never collide) and the API server reaches the
kubelets on the node addresses (``--kubelet-preferred-address-types=InternalIP,Hostname``, for
``kubectl logs``/``exec``). The nodes reach it on <underlay .1>:6443; the host reaches it
through the lab's forwarder (`antrea.testbed.lab.realk8s.forward`).
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from antrea.testbed.lab import netns, topology
from antrea.testbed.lab.realk8s.binaries import Binaries
from antrea.testbed.lab.realk8s.pki import KCM, SCHEDULER, SERVICE_CIDR, Pki
from antrea.testbed.lab.state import UNDERLAY_API_PORT, LabError, LabSpec

ETCD_PORT = 2379
# What each pidfile's process must have in its command line (`down` never signals a stranger).
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def control_dir(spec: LabSpec) -> Path:
    return spec.path / "control"


def pidfile(spec: LabSpec, component: str) -> Path:
    return control_dir(spec) / f"{component}.pid"


def logfile(spec: LabSpec, component: str) -> Path:
    return control_dir(spec) / f"{component}.log"


def spawn(spec: LabSpec, component: str, argv: list[str]) -> int:
    """Start ``argv`` detached inside the underlay namespace; pidfile and log in control/."""
    with logfile(spec, component).open("ab") as logf:
        proc = subprocess.Popen(
            netns.exec_argv(spec.underlay_netns, argv),
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            start_new_session=True, cwd="/",
        )  # fmt: skip
    pidfile(spec, component).write_text(f"{proc.pid}\n")
    return proc.pid


def etcd_argv(spec: LabSpec) -> list[str]:
    url = f"http://127.0.0.1:{ETCD_PORT}"
    peer = "http://127.0.0.1:2380"
    return ["etcd", "--name", "lab", "--data-dir", str(control_dir(spec) / "etcd"),
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"lab={peer}", "--log-level", "warn"]  # fmt: skip


def apiserver_argv(spec: LabSpec, bins: Binaries, p: Pki) -> list[str]:
    return [
        bins.kube_apiserver,
        f"--etcd-servers=http://127.0.0.1:{ETCD_PORT}",
        "--bind-address=0.0.0.0",
        f"--secure-port={UNDERLAY_API_PORT}",
        f"--advertise-address={spec.underlay_api_ip}",
        f"--tls-cert-file={p.apiserver_crt}",
        f"--tls-private-key-file={p.apiserver_key}",
        f"--client-ca-file={p.ca_crt}",
        f"--token-auth-file={p.tokens}",
        f"--service-account-key-file={p.sa_pub}",
        f"--service-account-signing-key-file={p.sa_key}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        # Admission webhooks (antrea's, behind Service antrea) are called at the Service's
        # endpoints: no Service proxy runs in the control plane's namespace.
        "--enable-aggregator-routing=true",
        f"--kubelet-client-certificate={p.kubelet_client_crt}",
        f"--kubelet-client-key={p.kubelet_client_key}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        "--allow-privileged=true",
        f"--cert-dir={control_dir(spec) / 'apiserver-certs'}",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager_argv(spec: LabSpec, bins: Binaries, p: Pki) -> list[str]:
    return [
        bins.kube_controller_manager,
        f"--kubeconfig={p.kubeconfig(KCM)}",
        f"--authentication-kubeconfig={p.kubeconfig(KCM)}",
        f"--authorization-kubeconfig={p.kubeconfig(KCM)}",
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={p.sa_key}",
        f"--root-ca-file={p.ca_crt}",
        # node IPAM: every Node gets a /24 of the cluster CIDR in spec.podCIDR(s)
        "--allocate-node-cidrs=true",
        f"--cluster-cidr={spec.pod_cidr}",
        "--node-cidr-mask-size=24",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--controllers=*,-cloud-node-lifecycle,-service-lb-controller",
        "--v=1",
    ]


def scheduler_argv(bins: Binaries, p: Pki) -> list[str]:
    kc = p.kubeconfig(SCHEDULER)
    return [bins.kube_scheduler, f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}", "--bind-address=127.0.0.1",
            "--leader-elect=false", "--v=1"]  # fmt: skip


def _port_open(spec: LabSpec, port: int) -> bool:
    def attempt() -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", port)) == 0

    return netns.call_in(netns.netns_path(spec.underlay_netns), attempt)


def wait_for(spec: LabSpec, component: str, ready: object, timeout: float) -> None:
    """Poll ``ready()`` until true; fail with the component's log tail if it exits or stalls."""
    assert callable(ready)
    deadline = time.monotonic() + timeout
    while not ready():
        pid = topology.read_pid(pidfile(spec, component))
        if pid is None or not topology.pid_alive(pid):
            raise LabError(f"{component} exited:\n{_tail(logfile(spec, component))}")
        if time.monotonic() > deadline:
            raise LabError(f"{component} not ready after {timeout:.0f}s:\n"
                           f"{_tail(logfile(spec, component))}")  # fmt: skip
        time.sleep(0.2)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def apiserver_ready(server: str, ca: Path, token: str) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(f"{server}/readyz", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def start(spec: LabSpec, bins: Binaries, p: Pki, *, host_server: str, admin_token: str) -> None:
    """Start the control plane; return once the API server is ready through ``host_server``."""
    control_dir(spec).mkdir(parents=True, exist_ok=True)
    spawn(spec, "etcd", etcd_argv(spec))
    wait_for(spec, "etcd", lambda: _port_open(spec, ETCD_PORT), 30.0)
    spawn(spec, "kube-apiserver", apiserver_argv(spec, bins, p))
    wait_for(spec, "kube-apiserver",
             lambda: apiserver_ready(host_server, p.ca_crt, admin_token), 90.0)  # fmt: skip
    spawn(spec, "kube-controller-manager", controller_manager_argv(spec, bins, p))
    spawn(spec, "kube-scheduler", scheduler_argv(bins, p))


def stop(spec_path: Path) -> None:
    """Stop whatever runs of the control plane (reverse order), by pidfile."""
    for component in reversed(COMPONENTS):
        topology.stop_pidfile(spec_path / "control" / f"{component}.pid", expect=component,
                              timeout=10.0)  # fmt: skip
