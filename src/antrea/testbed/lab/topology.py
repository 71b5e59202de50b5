"""Build and remove a lab's wiring: the underlay segment, node namespaces and their OVS.

Layout (lab ``L``, N nodes)::

    netns antrea-L-underlay:  Linux bridge br0 (172.30.0.1/24: where nodes reach the API server)
                              ports node1..nodeN  (veth peers of each node's eth0)
    netns antrea-L-node<i>:   ovsdb-server + ovs-vswitchd (userspace datapath, run dir
                              <lab>/nodes/node<i>/ovs), bridge br-phy holding eth0 and the node
                              address 172.30.0.(10+i)/24; ip_forward on; the kernel never
                              answers ARP on eth0 (an OVS port): one MAC per node address

The node address sits on br-phy rather than on eth0 because userspace tunnels must leave through
an OVS bridge that owns the underlay address (see docs/design/lab.md); the reference CNI mode
uses the same wiring so both modes differ only in the node network.

Every veth is created directly inside lab namespaces, so deleting the namespaces removes them.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import structlog

from antrea.testbed.lab import netns
from antrea.testbed.lab.state import LabSpec, NodeSpec
from antrea.util.ethtool import disable_tx_checksum

log = structlog.get_logger(__name__)

OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


def _ip(ns: str, *args: str) -> None:
    netns.run(["ip", "-n", ns, *args])


def build_underlay(spec: LabSpec) -> None:
    ns = spec.underlay_netns
    netns.add(ns)
    _ip(ns, "link", "set", "lo", "up")
    _ip(ns, "link", "add", "br0", "type", "bridge")
    prefix = spec.underlay_cidr.split("/")[1]
    _ip(ns, "addr", "add", f"{spec.underlay_api_ip}/{prefix}", "dev", "br0")
    _ip(ns, "link", "set", "br0", "up")


def ovs_env(node: NodeSpec) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OVS_RUNDIR": str(node.ovs_dir), "OVS_LOGDIR": str(node.ovs_dir)})
    env["OVS_DBDIR"] = str(node.ovs_dir)
    return env


def vsctl(node: NodeSpec, *args: str) -> str:
    """Run ovs-vsctl against the node's own ovsdb-server."""
    argv = ["ovs-vsctl", f"--db=unix:{node.ovs_dir}/db.sock", "--timeout=10", *args]
    return netns.run(argv, env=ovs_env(node)).stdout


def start_ovs(node: NodeSpec) -> None:
    """ovsdb-server and ovs-vswitchd for one node, inside its namespace, private run dir."""
    d = node.ovs_dir
    d.mkdir(parents=True, exist_ok=True)
    netns.run(["ovsdb-tool", "create", str(d / "conf.db"), str(OVS_SCHEMA)], env=ovs_env(node))
    start_ovsdb(node)
    vsctl(node, "--no-wait", "init")
    # Several vswitchds share two cores: keep each one's thread count small.
    vsctl(
        node,
        "--no-wait",
        "set",
        "Open_vSwitch",
        ".",
        "other_config:n-handler-threads=1",
        "other_config:n-revalidator-threads=1",
        f"external_ids:hostname={node.name}",
    )
    start_vswitchd(node)


def start_ovsdb(node: NodeSpec) -> None:
    """ovsdb-server on the node's existing database (also how the supervisor restarts it)."""
    d = node.ovs_dir
    netns.run(
        netns.exec_argv(
            node.netns,
            [
                "ovsdb-server",
                f"--remote=punix:{d}/db.sock",
                f"--pidfile={d}/ovsdb-server.pid",
                f"--log-file={d}/ovsdb-server.log",
                "--detach",
                "--no-chdir",
                str(d / "conf.db"),
            ],
        ),
        env=ovs_env(node),
    )


def start_vswitchd(node: NodeSpec) -> None:
    """ovs-vswitchd (returns once it runs: --detach); also how the supervisor restarts it."""
    d = node.ovs_dir
    netns.run(
        netns.exec_argv(
            node.netns,
            [
                "ovs-vswitchd",
                f"unix:{d}/db.sock",
                f"--pidfile={d}/ovs-vswitchd.pid",
                f"--log-file={d}/ovs-vswitchd.log",
                "--detach",
                "--no-chdir",
            ],
        ),
        env=ovs_env(node),
    )


def wire_node(spec: LabSpec, node: NodeSpec) -> None:
    """The node's namespace and its wire to the underlay (eth0 <-> node<i> on br0); no address."""
    ns = node.netns
    for sub in ("cni/net.d", "cni/bin", "cni-cache", "sandboxes", "antrea", "ipam"):
        (node.path / sub).mkdir(parents=True, exist_ok=True)
    netns.add(ns)
    _ip(ns, "link", "set", "lo", "up")
    netns.run(netns.exec_argv(ns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]))
    # The wire: eth0 in the node, node<i> on the underlay bridge. Created in the node
    # namespace with the peer placed straight into the underlay one: never in the root netns.
    _ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", node.name, "netns",
        spec.underlay_netns)  # fmt: skip
    _ip(spec.underlay_netns, "link", "set", node.name, "master", "br0", "up")
    # Both ends feed or come from OVS's AF_PACKET sockets: full checksums (see ethtool.py).
    netns.call_in(netns.netns_path(spec.underlay_netns), lambda: disable_tx_checksum(node.name))
    netns.call_in(netns.netns_path(ns), lambda: disable_tx_checksum("eth0"))


def build_node(spec: LabSpec, node: NodeSpec) -> None:
    ns = node.netns
    wire_node(spec, node)
    # eth0 belongs to OVS (a br-phy port), yet the node's kernel still receives every frame on
    # it (OVS reads it with AF_PACKET) and would answer ARP for the node address with eth0's MAC
    # as well as br-phy's: two MACs for one address on the underlay ("ARP flux"), and a peer's
    # tunnel neighbour cache that learns eth0's MAC blackholes all tunnel traffic to this node.
    # arp_ignore=8: the kernel never answers ARP received on eth0.
    netns.run(netns.exec_argv(ns, ["sysctl", "-qw", "net.ipv4.conf.eth0.arp_ignore=8"]))
    start_ovs(node)
    vsctl(
        node,
        "add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
        "--", "add-port", "br-phy", "eth0",
    )  # fmt: skip
    prefix = spec.underlay_cidr.split("/")[1]
    _ip(ns, "link", "set", "eth0", "up")
    _ip(ns, "addr", "add", f"{node.underlay_ip}/{prefix}", "dev", "br-phy")
    _ip(ns, "link", "set", "br-phy", "up")


def add_reference_routes(spec: LabSpec) -> None:
    """Routes an underlay router would provide: each node reaches the others' pod subnets."""
    for node in spec.nodes:
        for other in spec.nodes:
            if other is node:
                continue
            _ip(node.netns, "route", "replace", other.pod_cidr, "via", other.underlay_ip,
                "dev", "br-phy")  # fmt: skip


def build_plain_node(spec: LabSpec, node: NodeSpec) -> None:
    """A node as a real cluster's machine: the underlay address on eth0, no OVS of the lab's.

    The real-Kubernetes mode uses it: there the CNI's own DaemonSet brings OVS to the node.
    """
    wire_node(spec, node)
    prefix = spec.underlay_cidr.split("/")[1]
    _ip(node.netns, "addr", "add", f"{node.underlay_ip}/{prefix}", "dev", "eth0")
    _ip(node.netns, "link", "set", "eth0", "up")


def build(spec: LabSpec) -> None:
    """Create the whole wiring; the caller removes a partial lab with `teardown` on error."""
    started = time.monotonic()
    build_underlay(spec)
    for node in spec.nodes:
        build_node(spec, node)
    if spec.cni == "reference":
        add_reference_routes(spec)
    log.info(
        "lab_wired", lab=spec.name, nodes=len(spec.nodes), s=round(time.monotonic() - started, 2)
    )


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


def pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def stop_pid(pid: int, *, timeout: float = 5.0) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            _reap(pid)
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_pidfile(pidfile: Path, *, expect: str, timeout: float = 5.0) -> None:
    """Stop the process named in ``pidfile`` if its command line contains ``expect``.

    The check guards against a recycled pid after a crash: we never signal a stranger.
    """
    pid = read_pid(pidfile)
    if pid is None or not pid_alive(pid):
        return
    if expect not in pid_cmdline(pid):
        log.warning("pidfile_stale", pidfile=str(pidfile), pid=pid)
        return
    stop_pid(pid, timeout=timeout)


def stop_ovs(node: NodeSpec) -> None:
    for prog in ("ovs-vswitchd", "ovsdb-server"):
        stop_pidfile(node.ovs_dir / f"{prog}.pid", expect=prog, timeout=3.0)
