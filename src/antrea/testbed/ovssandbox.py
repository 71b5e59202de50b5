"""A private Open vSwitch instance: one ovsdb-server + ovs-vswitchd with its own run dir.

Used by the lab (one per node namespace), by integration tests and by benchmarks. Only one
userspace datapath may run per network namespace, so each instance normally lives in its own
netns. Daemons are stopped by pid, never by name: other instances may run on the same machine.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from antrea.testbed.lab.topology import stop_pid

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


@dataclass
class OvsSandbox:
    rundir: Path
    netns: str | None = None

    @property
    def db_sock(self) -> str:
        return f"unix:{self.rundir}/db.sock"

    def env(self) -> dict[str, str]:
        return {**os.environ, "OVS_RUNDIR": str(self.rundir), "OVS_DBDIR": str(self.rundir)}

    def _ns(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)

    def run(self, argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._ns(argv), env=self.env(), check=check, capture_output=True, text=True
        )

    def vsctl(self, *args: str) -> str:
        out = self.run(["ovs-vsctl", f"--db={self.db_sock}", "--timeout=10", *args])
        return out.stdout

    def ofctl_target(self, bridge: str) -> str:
        return f"unix:{self.rundir}/{bridge}.mgmt"

    def start(self) -> None:
        self.rundir.mkdir(parents=True, exist_ok=True)
        db = self.rundir / "conf.db"
        if not db.exists():
            subprocess.run(["ovsdb-tool", "create", str(db), SCHEMA], check=True)
        self.run(
            [
                "ovsdb-server",
                f"--remote=punix:{self.rundir}/db.sock",
                f"--pidfile={self.rundir}/ovsdb-server.pid",
                "--detach",
                f"--log-file={self.rundir}/ovsdb-server.log",
                f"--unixctl={self.rundir}/ovsdb-server.ctl",
                str(db),
            ]
        )
        self.vsctl("--no-wait", "init")
        self.run(
            [
                "ovs-vswitchd",
                self.db_sock,
                f"--pidfile={self.rundir}/ovs-vswitchd.pid",
                "--detach",
                f"--log-file={self.rundir}/ovs-vswitchd.log",
                f"--unixctl={self.rundir}/ovs-vswitchd.ctl",
            ]
        )

    def pids(self) -> list[int]:
        out = []
        for name in ("ovs-vswitchd.pid", "ovsdb-server.pid"):
            try:
                out.append(int((self.rundir / name).read_text().strip()))
            except (OSError, ValueError):
                pass
        return out

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop both daemons by pid (vswitchd first) and wait for them to exit."""
        for pid in self.pids():
            stop_pid(pid, timeout=timeout)
