"""`antrea lab down` removes a real lab's node cgroups even when its directory is gone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from antrea.testbed.lab import lifecycle
from antrea.testbed.lab.realk8s.node import (
    all_hierarchies,
    cgroup_pids,
    cgroup_root,
    create_cgroup_root,
)

pytestmark = [pytest.mark.root]


def test_down_removes_cgroups_and_their_processes_without_a_lab_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0 or not all_hierarchies():
        pytest.skip("needs root and cgroup v1 hierarchies")
    monkeypatch.setenv("ANTREA_LAB_ROOT", str(tmp_path))  # no lab directory at all
    name = f"cg{os.getpid() % 100000}"
    root = cgroup_root(name, "node1")
    create_cgroup_root(root)
    procs = all_hierarchies()[0] / root.lstrip("/") / "cgroup.procs"
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        procs.write_text(str(sleeper.pid))
        assert sleeper.pid in cgroup_pids(root)
        removed = lifecycle.down(name)
        assert f"cgroup {root}" in removed
        assert sleeper.wait(timeout=10) != 0  # killed
        for h in all_hierarchies():
            assert not (h / root.lstrip("/")).exists()
    finally:
        sleeper.kill()
        sleeper.wait()
