"""Keep each node's daemons running, as a DaemonSet's kubelet would: restart with backoff.

The supervisor checks every ``POLL_SECONDS``, node by node and in dependency order,
ovsdb-server, ovs-vswitchd and (antrea CNI) the agent. One that is gone (pid dead or a zombie,
or the pid now belongs to another program) is started again with the same command as `up` used,
after a delay that doubles with every restart (``BACKOFF_INITIAL`` .. ``BACKOFF_MAX``) and falls
back to the initial delay once the daemon has run ``STABLE_SECONDS``; a kubelet's crash-loop
backoff, scaled down for a lab.

Agents are only supervised once `up` has started them (their pidfile exists; `restart-agent`
and `stop_agent` remove it while they work), and never while someone holds the node's agent
lock (`lifecycle.holding_agent`: `restart-agent`, and tests that keep an agent down on purpose).
The OVS daemons are always supervised: `up` starts them before the supervisor.

Every restart is logged (``lab_daemon_restarted``) and counted in ``<node>/restarts.json``
(what `antrea lab status` shows).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from antrea.testbed.lab import topology
from antrea.testbed.lab.state import LabSpec, NodeSpec

log = structlog.get_logger(__name__)

POLL_SECONDS = 0.2
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 16.0
STABLE_SECONDS = 30.0


@dataclass
class Daemon:
    """One supervised process: how to find it, and how to start it again."""

    node: NodeSpec
    role: str  # "ovsdb-server" | "ovs-vswitchd" | "agent"
    pidfile: Path
    expect: str  # a word of its command line (a recycled pid is not ours)
    start: Callable[[], int | None]
    lock: Path | None = None  # held by someone else: leave the daemon alone
    needs_pidfile: bool = False  # only supervise once started (agents)
    backoff: float = BACKOFF_INITIAL
    not_before: float = 0.0
    started_at: float = field(default_factory=time.monotonic)
    restarts: int = 0
    children: list[int] = field(default_factory=list)

    def alive(self) -> bool:
        pid = topology.read_pid(self.pidfile)
        if pid is None:
            return self.needs_pidfile  # not deployed (yet), or being restarted by hand
        return topology.pid_alive(pid) and self.expect in topology.pid_cmdline(pid)

    def reap(self) -> None:
        for pid in list(self.children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.children.remove(pid)


def node_daemons(spec: LabSpec, node: NodeSpec) -> list[Daemon]:
    from antrea.testbed.lab import lifecycle

    ovs = node.ovs_dir
    daemons = [
        Daemon(node, "ovsdb-server", ovs / "ovsdb-server.pid", "ovsdb-server",
               lambda: _detached(topology.start_ovsdb, node)),
        Daemon(node, "ovs-vswitchd", ovs / "ovs-vswitchd.pid", "ovs-vswitchd",
               lambda: _detached(topology.start_vswitchd, node)),
    ]  # fmt: skip
    if spec.cni == "antrea":
        daemons.append(
            Daemon(node, "agent", node.agent_pidfile, "daemon",
                   lambda: lifecycle.start_agent(spec, node),
                   lock=lifecycle.agent_lock_path(node), needs_pidfile=True)
        )  # fmt: skip
    return daemons


def _detached(start: Callable[[NodeSpec], None], node: NodeSpec) -> None:
    start(node)  # --detach: the daemon is not our child


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def check(d: Daemon, now: float) -> bool:
    """Restart ``d`` if it is gone and its backoff allows; True if it was restarted."""
    d.reap()
    if d.alive():
        if now - d.started_at >= STABLE_SECONDS:
            d.backoff = BACKOFF_INITIAL
        return False
    if now < d.not_before:
        return False
    fd = _try_lock(d.lock) if d.lock is not None else None
    if d.lock is not None and fd is None:
        return False  # someone is restarting it, or keeps it down on purpose
    try:
        if d.alive():  # re-read under the lock: restarted meanwhile
            return False
        pid = d.start()
    finally:
        if fd is not None:
            os.close(fd)
    if pid is not None:
        d.children.append(pid)
    d.restarts += 1
    d.started_at = time.monotonic()
    d.not_before = d.started_at + d.backoff
    log.warning(
        "lab_daemon_restarted",
        node=d.node.name,
        daemon=d.role,
        pid=pid if pid is not None else topology.read_pid(d.pidfile),
        restarts=d.restarts,
        next_backoff=d.backoff,
    )
    d.backoff = min(d.backoff * 2, BACKOFF_MAX)
    return True


def restarts_file(node: NodeSpec) -> Path:
    return node.path / "restarts.json"


def read_restarts(node: NodeSpec) -> dict[str, int]:
    try:
        data = json.loads(restarts_file(node).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _record(d: Daemon) -> None:
    counts = read_restarts(d.node)
    counts[d.role] = counts.get(d.role, 0) + 1
    tmp = restarts_file(d.node).with_suffix(".tmp")
    tmp.write_text(json.dumps(counts, sort_keys=True))
    tmp.replace(restarts_file(d.node))


async def supervise(spec: LabSpec, poll: float = POLL_SECONDS) -> None:
    """Run until cancelled: restart the nodes' daemons that are gone."""
    daemons = [d for node in spec.nodes for d in node_daemons(spec, node)]
    while True:
        for d in daemons:
            try:
                if await asyncio.to_thread(check, d, time.monotonic()):
                    _record(d)
            except Exception as exc:  # e.g. the namespace is being deleted: try again later
                d.not_before = time.monotonic() + d.backoff
                log.warning(
                    "lab_daemon_restart_failed", node=d.node.name, daemon=d.role, error=str(exc)
                )
        await asyncio.sleep(poll)
