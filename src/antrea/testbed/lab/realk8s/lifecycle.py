"""`antrea lab up --kubernetes real` and the real parts of `antrea lab down`.

`up` wires the underlay and the node namespaces (the lab's usual layout, with the node address
on eth0 and no OVS of the lab's: the CNI's DaemonSet brings its own), writes the credentials,
starts the forwarder and the control plane in the underlay namespace, builds the pause and
workload images, starts every node's containerd + kubelet, imports the images into each node's
containerd and returns once every node has registered. The nodes stay NotReady until a CNI is
installed (`kubectl apply -f deploy/antrea.yml`), as on any new cluster.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import structlog

from antrea.testbed.apiserver.kubeconfig import write_kubeconfig
from antrea.testbed.lab import topology
from antrea.testbed.lab.apihost import pick_port
from antrea.testbed.lab.realk8s import binaries, control, images, install, pki
from antrea.testbed.lab.realk8s.node import RealNode, all_hierarchies, remove_cgroup_root, stop_node
from antrea.testbed.lab.state import UNDERLAY_API_PORT, LabError, LabSpec

log = structlog.get_logger(__name__)

NODES_REGISTERED_TIMEOUT = 120.0
IMAGE_ARCHIVE_ENV = "ANTREA_IMAGE_ARCHIVE"


def forward_pidfile(lab_dir: Path) -> Path:
    return lab_dir / "forward.pid"


def checkout_root() -> Path | None:
    """The source checkout this package runs from (it has bin/build-image), if any."""
    root = Path(__file__).resolve().parents[5]
    return root if (root / "bin" / "build-image").is_file() else None


def checkout_archive(root: Path) -> Path:
    """Where `bin/build-image` writes the image by default: dist/antrea-<version>.oci.tar."""
    with (root / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    return root / "dist" / f"antrea-{version}.oci.tar"


def antrea_image_archives() -> list[Path]:
    """The antrea image archive(s) to import into every node.

    ``$ANTREA_IMAGE_ARCHIVE`` (``os.pathsep``-separated) if set; else, from a source checkout,
    the archive `bin/build-image` writes, built first if it is missing; else none (with a
    warning: the manifest's pods then cannot start).
    """
    value = os.environ.get(IMAGE_ARCHIVE_ENV, "")
    if value:
        out = [Path(v) for v in value.split(os.pathsep) if v]
        for p in out:
            if not p.is_file():
                raise LabError(f"${IMAGE_ARCHIVE_ENV}: {p}: no such file")
        return out
    root = checkout_root()
    if root is None:
        log.warning("lab_real_no_antrea_image", hint=f"set ${IMAGE_ARCHIVE_ENV}")
        return []
    archive = checkout_archive(root)
    if not archive.is_file():
        log.info("lab_real_building_image", archive=str(archive))
        proc = subprocess.run(["bash", str(root / "bin" / "build-image"), "-o", str(archive)],
                              cwd=root, capture_output=True, text=True, check=False)  # fmt: skip
        if proc.returncode != 0 or not archive.is_file():
            raise LabError(f"bin/build-image failed:\n{proc.stderr.strip()[-3000:]}")
    return [archive]


def start_forwarder(spec: LabSpec, port: int) -> None:
    logf = (spec.path / "forward.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "antrea.cmd.antrea", "--log-format", "json", "lab", "forward",
         "--name", spec.name, "--port", str(port)],
        stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
        start_new_session=True, cwd="/",
    )  # fmt: skip
    logf.close()
    forward_pidfile(spec.path).write_text(f"{proc.pid}\n")


def _api_get(server: str, ca: Path, token: str, path: str) -> dict[str, object]:
    ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(f"{server}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
        doc: dict[str, object] = json.loads(resp.read())
        return doc


def _api_create(server: str, ca: Path, token: str, path: str, body: dict[str, object]) -> None:
    ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(
        f"{server}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        resp.read()


def wait_nodes_registered(spec: LabSpec, server: str, p: pki.Pki, token: str) -> None:
    deadline = time.monotonic() + NODES_REGISTERED_TIMEOUT
    want = set(spec.node_names())
    while True:
        try:
            items = _api_get(server, p.ca_crt, token, "/api/v1/nodes").get("items") or []
            assert isinstance(items, list)
            have = {i["metadata"]["name"] for i in items}
        except OSError:
            have = set()
        if want <= have:
            return
        for n in spec.nodes:
            rn = RealNode(spec, n)
            pid = topology.read_pid(rn.pidfile)
            if pid is None or not topology.pid_alive(pid):
                raise LabError(f"the runtime of {n.name} exited:\n{_tail(n.path / 'kubelet.log')}")
        if time.monotonic() > deadline:
            missing = sorted(want - have)
            raise LabError(f"nodes {', '.join(missing)} not registered after "
                           f"{NODES_REGISTERED_TIMEOUT:.0f}s:\n"
                           f"{_tail(spec.node(missing[0]).path / 'kubelet.log')}")  # fmt: skip
        time.sleep(0.5)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def build(spec: LabSpec, bins: binaries.Binaries) -> LabSpec:
    """Everything after the lab directory is claimed; the caller runs `down` on failure."""
    started = time.monotonic()
    archives = antrea_image_archives()
    topology.build_underlay(spec)
    for node in spec.nodes:
        topology.build_plain_node(spec, node)
    underlay = f"https://{spec.underlay_api_ip}:{UNDERLAY_API_PORT}"
    p, tokens = pki.create(spec.path / "pki", api_ips=[spec.underlay_api_ip],
                           nodes=spec.node_names(), underlay_server=underlay)  # fmt: skip
    spec.api_port = pick_port()
    spec.save()
    start_forwarder(spec, spec.api_port)
    host_server = f"https://127.0.0.1:{spec.api_port}"
    admin = p.kubeconfig(pki.ADMIN).read_text()
    write_kubeconfig(spec.kubeconfig, admin.replace(underlay, host_server))
    write_kubeconfig(spec.path / "admin-underlay.kubeconfig", admin)
    for node in spec.nodes:
        write_kubeconfig(node.kubeconfig, p.kubeconfig(f"system:node:{node.name}").read_text())
    control.start(spec, bins, p, host_server=host_server, admin_token=tokens[pki.ADMIN])
    workdir = spec.path / "images"
    workdir.mkdir(exist_ok=True)
    local = [images.build_pause(workdir), images.build_workload(workdir)]
    nodes = [RealNode(spec, n) for n in spec.nodes]
    for rn in nodes:
        rn.prepare(bins, p)
        rn.start()
    for rn in nodes:
        rn.wait_containerd()
        for archive in [*local, *archives]:
            rn.import_image(archive)
    wait_nodes_registered(spec, host_server, p, tokens[pki.ADMIN])
    # The cluster's own settings for deploy/antrea.yml, where its comments say they go: the
    # manifest is then applied unchanged (`kubectl apply -f deploy/antrea.yml`).
    _api_create(host_server, p.ca_crt, tokens[pki.ADMIN],
                f"/api/v1/namespaces/{install.NAMESPACE}/configmaps",
                install.overrides(spec))  # fmt: skip
    log.info("lab_real_up", lab=spec.name, nodes=len(nodes),
             s=round(time.monotonic() - started, 1))  # fmt: skip
    return spec


def leftover_cgroup_roots(lab_name: str) -> list[str]:
    """``/antrea-lab-<lab>-<node>`` cgroup roots that exist in any hierarchy."""
    found: set[str] = set()
    for h in all_hierarchies():
        found.update(f"/{p.name}" for p in h.glob(f"antrea-lab-{lab_name}-*") if p.is_dir())
    return sorted(found)


def teardown(lab_dir: Path, lab_name: str) -> list[str]:
    """Stop the real parts of a lab (idempotent; a no-op for an embedded lab)."""
    removed: list[str] = []
    nodes_dir = lab_dir / "nodes"
    for d in sorted(nodes_dir.iterdir()) if nodes_dir.is_dir() else []:
        if (d / "runtime.pid").exists() or (d / "run.sh").exists():
            survivors = stop_node(lab_name, d, d.name)
            if survivors:
                log.warning("lab_real_node_survivors", node=d.name, pids=survivors)
            removed.append(f"{d.name} runtime")
    # Cgroups are named after the lab, not its directory: also those of a lab whose directory
    # is already gone (a run killed half-way, or a removed $ANTREA_LAB_ROOT).
    for root in leftover_cgroup_roots(lab_name):
        survivors = remove_cgroup_root(root)
        if survivors:
            log.warning("lab_real_cgroup_survivors", cgroup=root, pids=survivors)
        removed.append(f"cgroup {root}")
    if (lab_dir / "control").is_dir():
        control.stop(lab_dir)
        removed.append("control plane")
    topology.stop_pidfile(forward_pidfile(lab_dir), expect="forward", timeout=5.0)
    return removed
