"""Where a lab lives on disk, and the one JSON file that describes it.

Everything a lab creates is either under its directory (``/var/run/antrea-lab/<name>/`` by
default, a tmpfs, so a reboot cleans it too) or a network namespace whose name starts with
``antrea-<name>-``. ``antrea lab down`` relies on exactly that: it needs nothing else to remove
a lab, even one whose supervisor crashed half-way through ``up``. Lab names are restricted to
lowercase letters and digits so that one lab's prefix can never be a prefix of another's.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from antrea.errors import AntreaError
from antrea.util.atomicfile import write_atomic

LAB_ROOT_ENV = "ANTREA_LAB_ROOT"
DEFAULT_ROOT = Path("/var/run/antrea-lab")
NETNS_DIR = Path("/var/run/netns")
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")

DEFAULT_POD_CIDR = "10.244.0.0/16"
DEFAULT_UNDERLAY_CIDR = "172.30.0.0/24"
UNDERLAY_API_PORT = 6443
AGENT_API_PORT = 10350
CONTROLLER_API_PORT = 10349

CniMode = Literal["antrea", "reference"]
# embedded: our API server and small kubelets (the supervisor); real: kube-apiserver, etcd,
# kube-controller-manager, kube-scheduler and per node containerd + kubelet (lab/realk8s/).
KubeMode = Literal["embedded", "real"]
EncapMode = Literal["vxlan", "geneve", "none"]


class LabError(AntreaError):
    """A lab operation failed in a way the user can act on (message says how)."""


def lab_root() -> Path:
    """The directory holding all labs; overridable for tests via $ANTREA_LAB_ROOT."""
    return Path(os.environ.get(LAB_ROOT_ENV, str(DEFAULT_ROOT)))


def validate_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise LabError(
            f"invalid lab name {name!r}: 1-12 lowercase letters or digits, starting with a letter"
        )
    return name


def netns_prefix(lab: str) -> str:
    """Every network namespace of lab ``lab`` starts with this (and nothing else does)."""
    return f"antrea-{lab}-"


@dataclass(slots=True)
class NodeSpec:
    """One lab node: a network namespace with its own OVS, kubelet and (optionally) agent."""

    name: str
    index: int
    netns: str
    underlay_ip: str
    pod_cidr: str
    dir: str

    @property
    def path(self) -> Path:
        return Path(self.dir)

    @property
    def ovs_dir(self) -> Path:
        return self.path / "ovs"

    @property
    def cni_conf_dir(self) -> Path:
        return self.path / "cni" / "net.d"

    @property
    def cni_bin_dir(self) -> Path:
        return self.path / "cni" / "bin"

    @property
    def cni_cache_dir(self) -> Path:
        return self.path / "cni-cache"

    @property
    def sandbox_dir(self) -> Path:
        return self.path / "sandboxes"

    @property
    def kubeconfig(self) -> Path:
        return self.path / "kubeconfig"

    @property
    def kubelet_kubeconfig(self) -> Path:
        """The node's own identity (system:node:<n>) for the lab kubelet, from the host."""
        return self.path / "kubelet.kubeconfig"

    @property
    def controller_kubeconfig(self) -> Path:
        """The controller candidate's identity (antrea-controller), next to the agent's."""
        return self.path / "controller.kubeconfig"

    @property
    def agent_config(self) -> Path:
        return self.path / "antrea-agent.yaml"

    @property
    def agent_pidfile(self) -> Path:
        return self.path / "agent.pid"

    @property
    def agent_log(self) -> Path:
        return self.path / "agent.log"

    @property
    def agent_state_dir(self) -> Path:
        return self.path / "antrea"

    @property
    def cni_socket(self) -> Path:
        return self.agent_state_dir / "cni.sock"

    @property
    def admin_kubeconfig(self) -> Path:
        """Admin identity, reachable from inside node namespaces (shared by all nodes)."""
        return self.path.parent.parent / "admin-underlay.kubeconfig"

    def env(self) -> dict[str, str]:
        """Environment that points OVS tools, antctl and kubectl at this node.

        ``KUBECONFIG`` is an admin kubeconfig that works from inside the node (like an operator
        logged into a node); the node's own identity is in ``ANTREA_NODE_KUBECONFIG``.
        """
        return {
            "OVS_RUNDIR": str(self.ovs_dir),
            "OVS_LOGDIR": str(self.ovs_dir),
            "OVS_DBDIR": str(self.ovs_dir),
            "NODE_NAME": self.name,
            "KUBECONFIG": str(self.admin_kubeconfig),
            "ANTREA_NODE_KUBECONFIG": str(self.kubeconfig),
            "ANTREA_CONFIG": str(self.agent_config),
            "ANTREA_AGENT_API": f"http://127.0.0.1:{AGENT_API_PORT}",
            "ANTCTL_AGENT_ADDR": f"127.0.0.1:{AGENT_API_PORT}",
            "ANTREA_LOG_DIR": str(self.path),  # agent.log (antctl supportbundle)
        }


@dataclass(slots=True)
class LabSpec:
    """Everything `up` decided; written once to ``lab.json`` and read by every other command."""

    name: str
    dir: str
    cni: CniMode
    encap: EncapMode
    pod_cidr: str
    underlay_cidr: str
    underlay_netns: str
    underlay_api_ip: str
    external_kubeconfig: str | None
    nodes: list[NodeSpec] = field(default_factory=list)
    api_port: int = 0
    kubernetes: KubeMode = "embedded"
    k8s_bin: str = ""  # real mode: the directory the Kubernetes binaries were taken from

    @property
    def path(self) -> Path:
        return Path(self.dir)

    @property
    def spec_file(self) -> Path:
        return self.path / "lab.json"

    @property
    def kubeconfig(self) -> Path:
        """The host's (admin) kubeconfig: what `kubectl` and `antrea lab probe` use."""
        if self.external_kubeconfig:
            return Path(self.external_kubeconfig)
        return self.path / "kubeconfig"

    @property
    def supervisor_pidfile(self) -> Path:
        return self.path / "supervisor.pid"

    @property
    def supervisor_log(self) -> Path:
        return self.path / "supervisor.log"

    @property
    def ready_file(self) -> Path:
        return self.path / "ready"

    @property
    def token_file(self) -> Path:
        return self.path / "tokens.csv"

    @property
    def apiserver_dir(self) -> Path:
        return self.path / "apiserver"

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise LabError(f"lab {self.name!r} has no node {name!r} (nodes: {self.node_names()})")

    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def save(self) -> None:
        write_atomic(self.spec_file, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> LabSpec:
        raw: dict[str, Any] = json.loads(path.read_text())
        nodes = [NodeSpec(**n) for n in raw.pop("nodes")]
        return cls(nodes=nodes, **raw)


def plan(
    *,
    name: str,
    nodes: int,
    cni: CniMode,
    encap: EncapMode,
    pod_cidr: str = DEFAULT_POD_CIDR,
    underlay_cidr: str = DEFAULT_UNDERLAY_CIDR,
    external_kubeconfig: str | None = None,
) -> LabSpec:
    """Decide names, addresses and subnets for a lab (pure: nothing is created here).

    Node i gets the i-th /24 of the cluster CIDR (10.244.0.0/16 -> node1 10.244.1.0/24, as in
    the contracts) and underlay address .(10+i); the underlay namespace holds .1, where the
    nodes reach the API server.
    """
    validate_name(name)
    if nodes < 1:
        raise LabError("a lab needs at least one node")
    cluster = ipaddress.ip_network(pod_cidr, strict=True)
    if cluster.version != 4 or cluster.prefixlen > 23:
        raise LabError(f"--pod-cidr {pod_cidr}: need an IPv4 network of /23 or larger")
    subnets = list(cluster.subnets(new_prefix=24)) if cluster.prefixlen < 24 else [cluster]
    if nodes >= len(subnets):
        raise LabError(f"--pod-cidr {pod_cidr} has room for {len(subnets) - 1} nodes only")
    underlay = ipaddress.ip_network(underlay_cidr, strict=True)
    hosts = list(underlay.hosts())
    if nodes + 10 > len(hosts):
        raise LabError(f"underlay {underlay_cidr} is too small for {nodes} nodes")
    root = lab_root() / name
    spec = LabSpec(
        name=name,
        dir=str(root),
        cni=cni,
        encap=encap,
        pod_cidr=pod_cidr,
        underlay_cidr=underlay_cidr,
        underlay_netns=f"{netns_prefix(name)}underlay",
        underlay_api_ip=str(hosts[0]),
        external_kubeconfig=external_kubeconfig,
    )
    for i in range(1, nodes + 1):
        node = f"node{i}"
        spec.nodes.append(
            NodeSpec(
                name=node,
                index=i,
                netns=f"{netns_prefix(name)}{node}",
                underlay_ip=str(hosts[9 + i]),
                pod_cidr=str(subnets[i]),
                dir=str(root / "nodes" / node),
            )
        )
    return spec


def running_labs() -> list[str]:
    """Names of labs that have a directory (running, or crashed and not yet downed)."""
    root = lab_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "lab.json").exists() or p.is_dir())


def resolve_name(name: str | None) -> str:
    """``--name`` if given, else the only lab there is."""
    if name:
        return validate_name(name)
    labs = running_labs()
    if not labs:
        raise LabError("no lab is running (start one with `antrea lab up --nodes 2`)")
    if len(labs) > 1:
        raise LabError(f"several labs are running ({', '.join(labs)}): pass --name")
    return labs[0]


def load(name: str | None) -> LabSpec:
    lab = resolve_name(name)
    path = lab_root() / lab / "lab.json"
    if not path.exists():
        raise LabError(f"lab {lab!r} is incomplete (no {path}); remove it with `antrea lab down`")
    return LabSpec.load(path)
