"""Finding a real lab pod's network namespace from the host, without asking the runtime.

With the cgroupfs driver the kubelet puts every container of pod ``<uid>`` under a cgroup
named ``pod<uid>``; any live process there (the sandbox's pause, or a container) gives the
pod's network namespace as ``/proc/<pid>/ns/net``. That is what `antrea lab probe` and
`antrea lab exec NS/POD` enter.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.request
from pathlib import Path

from antrea.testbed.lab.realk8s.node import cgroup_root
from antrea.testbed.lab.state import LabSpec

PIDS_HIERARCHY = Path("/sys/fs/cgroup/pids")


def pod_pids(cgroup_root: str, uid: str) -> list[int]:
    """Pids of the pod ``uid`` under a node's ``cgroupRoot`` (sandbox first when known)."""
    base = PIDS_HIERARCHY / cgroup_root.lstrip("/")
    needle = f"pod{uid}"
    out: list[int] = []
    for dirpath, dirs, _files in os.walk(base):
        if Path(dirpath).name != needle:
            continue
        for sub in sorted([dirpath, *(os.path.join(dirpath, d) for d in dirs)]):
            try:
                out += [int(x) for x in Path(sub, "cgroup.procs").read_text().split()]
            except OSError:
                continue
        dirs.clear()
    return out


def pod_netns_path(cgroup_roots: list[str], uid: str) -> str | None:
    """``/proc/<pid>/ns/net`` of a process of pod ``uid`` on any of the nodes, or None."""
    for root in cgroup_roots:
        for pid in pod_pids(root, uid):
            path = f"/proc/{pid}/ns/net"
            if os.path.exists(path):
                return path
    return None


def find_pod(spec: LabSpec, key: str) -> tuple[str, str] | None:
    """(node, netns path) of the running pod ``NS/NAME`` of a real lab, or None."""
    from antrea.testbed.lab.kube import Kubeconfig

    ns, _, name = key.partition("/")
    kc = Kubeconfig.load(spec.kubeconfig)
    req = urllib.request.Request(f"{kc.server}/api/v1/namespaces/{ns}/pods/{name}",
                                 headers={"Authorization": f"Bearer {kc.token}"})  # fmt: skip
    ctx = ssl.create_default_context(cafile=str(spec.path / "pki" / "ca.crt"))
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            pod = json.loads(resp.read())
    except OSError:
        return None
    node = (pod.get("spec") or {}).get("nodeName")
    uid = (pod.get("metadata") or {}).get("uid")
    if not node or not uid or node not in spec.node_names():
        return None
    path = pod_netns_path([cgroup_root(spec.name, node)], uid)
    return None if path is None else (node, path)
