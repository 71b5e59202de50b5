"""Issue acceptance: 3 nodes with the reference CNI, 9 pods in 3 namespaces on ports 80 and 81,
`antrea lab probe -o json` all connected, and `antrea lab down` leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from antrea.lab import netns, state
from antrea.lab.testing import LabParams, lab_session

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.lab]


def lab_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "antrea.cmd.antrea", "lab", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def processes_mentioning(text: str) -> list[str]:
    """Live (non-zombie) processes whose command line mentions ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (proc / "stat").read_text().split(") ", 1)[1][:1]
        except (OSError, IndexError):
            continue
        if text in cmdline and status != "Z":
            found.append(f"{proc.name}: {cmdline}")
    return found


async def test_three_nodes_nine_pods_full_matrix_then_nothing_left() -> None:
    with lab_session(LabParams(nodes=3, cni="reference")) as lab:
        m = await lab.create_model()
        assert len(m.keys) == 9
        assert set(m.placement.values()) == {"node1", "node2", "node3"}
        wide = lab.kubectl("get", "pods", "-A", "-o", "json")
        pods = json.loads(wide)["items"]
        assert {p["spec"]["nodeName"] for p in pods} == {"node1", "node2", "node3"}
        assert all(p["status"]["phase"] == "Running" and p["status"]["podIP"] for p in pods)
        for proto, port in (("TCP", 80), ("TCP", 81), ("UDP", 80), ("UDP", 81)):
            proc = lab.antrea("probe", "--protocol", proto, "--port", str(port), "-o", "json")
            doc = json.loads(proc.stdout)
            assert doc["protocol"] == proto and doc["port"] == port
            assert doc["pods"] == m.keys
            assert doc["matrix"] == m.all_connected(), f"{proto}/{port}: {doc['matrix']}"
        # A port nobody serves is blocked everywhere (the probe can fail).
        closed = await lab.probe(protocol="TCP", port=82)
        assert not any(any(row.values()) for row in closed["matrix"].values())

        lab_dir = lab.spec.dir
        down = lab_cli("down", "--name", lab.name)
        assert down.returncode == 0, down.stderr
        assert netns.list_netns(state.netns_prefix(lab.name)) == []
        assert not Path(lab_dir).exists()
        assert processes_mentioning(lab_dir) == []
