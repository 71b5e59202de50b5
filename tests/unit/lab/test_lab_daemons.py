"""`antrea.testbed.lab.daemons`: a gone daemon is restarted with doubling backoff, an agent
never while its lock is held or before it was first started; real child processes (`sleep`)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from antrea.testbed.lab import daemons, lifecycle
from antrea.testbed.lab.state import NodeSpec


def node(tmp_path: Path) -> NodeSpec:
    return NodeSpec(name="node1", index=1, netns="none", underlay_ip="172.30.0.11",
                    pod_cidr="10.244.1.0/24", dir=str(tmp_path))  # fmt: skip


class Sleeper:
    """Starts `sleep` and records its pid, as `start_agent` does."""

    def __init__(self, pidfile: Path) -> None:
        self.pidfile = pidfile
        self.procs: list[subprocess.Popen[bytes]] = []

    def __call__(self) -> int:
        proc = subprocess.Popen(["sleep", "60"])
        self.procs.append(proc)
        while b"sleep" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
            time.sleep(0.001)  # exec'd: the command line is the daemon's
        self.pidfile.write_text(f"{proc.pid}\n")
        return proc.pid

    def kill_last(self) -> None:
        proc = self.procs[-1]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[Sleeper]:
    s = Sleeper(tmp_path / "agent.pid")
    yield s
    s.close()


def test_restarts_with_doubling_backoff_and_resets_when_stable(
    tmp_path: Path, sleeper: Sleeper
) -> None:
    n = node(tmp_path)
    d = daemons.Daemon(n, "agent", sleeper.pidfile, "sleep", sleeper,
                       lock=lifecycle.agent_lock_path(n), needs_pidfile=True)  # fmt: skip
    assert not daemons.check(d, time.monotonic())  # never started: not ours to start
    sleeper()
    assert not daemons.check(d, time.monotonic())  # alive
    delays = []
    for _ in range(4):
        sleeper.kill_last()
        t = time.monotonic()
        while not daemons.check(d, t):
            t += 0.05
            assert t < time.monotonic() + 60
        delays.append(d.not_before - d.started_at)
        assert daemons.Daemon.alive(d)
    assert delays == [0.5, 1.0, 2.0, 4.0]
    assert d.restarts == 4 and len(sleeper.procs) == 5
    # a daemon that stays up STABLE_SECONDS gets the initial delay back
    daemons.check(d, time.monotonic() + daemons.STABLE_SECONDS + 1)
    assert d.backoff == daemons.BACKOFF_INITIAL


def test_a_held_agent_lock_keeps_the_agent_down(tmp_path: Path, sleeper: Sleeper) -> None:
    n = node(tmp_path)
    d = daemons.Daemon(n, "agent", sleeper.pidfile, "sleep", sleeper,
                       lock=lifecycle.agent_lock_path(n), needs_pidfile=True)  # fmt: skip
    sleeper()
    with lifecycle.holding_agent(n), lifecycle.holding_agent(n):  # re-entrant
        sleeper.kill_last()
        assert not daemons.check(d, time.monotonic() + 100)
        assert len(sleeper.procs) == 1
    assert daemons.check(d, time.monotonic() + 100)
    assert len(sleeper.procs) == 2


def test_a_recycled_pid_is_not_taken_for_the_daemon(tmp_path: Path, sleeper: Sleeper) -> None:
    n = node(tmp_path)
    d = daemons.Daemon(n, "ovsdb-server", sleeper.pidfile, "ovsdb-server", sleeper)
    sleeper.pidfile.write_text(f"{os.getpid()}\n")  # alive, but pytest is no ovsdb-server
    assert daemons.check(d, time.monotonic())
    assert len(sleeper.procs) == 1
