"""Where the real mode's programs come from, and what is missing when they cannot be found.

The Kubernetes binaries are not in any package registry this project can use: they are taken
from one directory (``--k8s-bin DIR``, else the ``PATH``), exactly as a user who downloaded a
release would have them. Everything else comes from Debian packages (`bin/setup` installs them).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

K8S_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")
# Debian packages: etcd-server, containerd, runc, tini, util-linux; gcc + libc6-dev build the
# static pause and workload programs; busybox-static gives the workload image its shell.
HOST_TOOLS = ("etcd", "containerd", "containerd-shim-runc-v2", "ctr", "runc", "tini", "nsenter",
              "unshare", "gcc")  # fmt: skip
BUSYBOX = Path("/bin/busybox")
ENV_K8S_BIN = "ANTREA_K8S_BIN"
FALLBACK_K8S_BIN = "/opt/kubernetes/bin"


@dataclass(frozen=True, slots=True)
class Binaries:
    """Absolute paths of the Kubernetes programs (kubectl when the directory has one)."""

    kube_apiserver: str
    kube_controller_manager: str
    kube_scheduler: str
    kubelet: str
    kubectl: str | None

    @property
    def directory(self) -> str:
        return str(Path(self.kubelet).parent)


def _which(prog: str, k8s_bin: str | None) -> str | None:
    if k8s_bin:
        cand = Path(k8s_bin) / prog
        return str(cand) if cand.is_file() and os.access(cand, os.X_OK) else None
    return shutil.which(prog)


def missing_kubernetes(k8s_bin: str | None) -> list[str]:
    return [p for p in K8S_BINARIES if _which(p, k8s_bin) is None]


def missing_host_tools() -> list[str]:
    missing = [t for t in HOST_TOOLS if shutil.which(t) is None]
    if not BUSYBOX.exists():
        missing.append(str(BUSYBOX))
    return missing


def find(k8s_bin: str | None) -> Binaries:
    """The Kubernetes binaries in ``k8s_bin`` (or on the PATH); raise naming what is missing."""
    from antrea.testbed.lab.state import LabError

    where = f"in {k8s_bin}" if k8s_bin else "on the PATH"
    missing = missing_kubernetes(k8s_bin)
    if missing:
        raise LabError(
            f"--kubernetes real: {', '.join(missing)} not found {where}: pass --k8s-bin DIR with "
            "the Kubernetes server binaries (kube-apiserver, kube-controller-manager, "
            "kube-scheduler, kubelet)"
        )
    tools = missing_host_tools()
    if tools:
        raise LabError(
            f"--kubernetes real: missing {', '.join(tools)}: run `bash bin/setup` (installs them)"
        )
    paths = {p: _which(p, k8s_bin) or "" for p in K8S_BINARIES}
    return Binaries(
        kube_apiserver=paths["kube-apiserver"],
        kube_controller_manager=paths["kube-controller-manager"],
        kube_scheduler=paths["kube-scheduler"],
        kubelet=paths["kubelet"],
        kubectl=_which("kubectl", k8s_bin),
    )


def search_dir() -> str | None:
    """For tests: $ANTREA_K8S_BIN, else the PATH (None), else /opt/kubernetes/bin if it has them."""
    env = os.environ.get(ENV_K8S_BIN)
    if env:
        return env
    if not missing_kubernetes(None):
        return None
    return FALLBACK_K8S_BIN
