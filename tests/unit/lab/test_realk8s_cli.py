"""`antrea lab up --kubernetes real` without Kubernetes binaries: a clear error, nothing made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.skipif(os.geteuid() != 0, reason="the root check comes first")
def test_missing_binaries_are_named_and_nothing_is_created(tmp_path: Path) -> None:
    env = dict(os.environ, ANTREA_LAB_ROOT=str(tmp_path / "labs"))
    proc = subprocess.run(
        [sys.executable, "-m", "antrea.cmd.antrea", "lab", "up", "--kubernetes", "real",
         "--nodes", "2", "--name", "nobins", "--k8s-bin", str(tmp_path / "empty")],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "kube-apiserver" in proc.stderr and "--k8s-bin" in proc.stderr, proc.stderr
    assert not (tmp_path / "labs" / "nobins").exists()
