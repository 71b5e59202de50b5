"""Issue acceptance: 3 nodes with the reference CNI, 9 pods in 3 namespaces on ports 80 and 81,
`antrea lab probe -o json` all connected, and `antrea lab down` leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from antrea.testbed.lab import lifecycle, netns, state
from antrea.testbed.lab.testing import Lab, need_lab_prerequisites

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
    need_lab_prerequisites()
    name = "e2eaccept"
    lifecycle.down(name)
    try:
        up = lab_cli("up", "--nodes", "3", "--cni", "reference", "--name", name)
        assert up.returncode == 0, up.stderr
        spec = state.load(name)
        assert f"export KUBECONFIG={spec.kubeconfig}" in up.stdout
        lab = Lab(spec)
        m = await lab.create_model()
        assert len(m.keys) == 9
        assert set(m.placement.values()) == {"node1", "node2", "node3"}
        pods = json.loads(lab.kubectl("get", "pods", "-A", "-o", "json"))["items"]
        assert {p["spec"]["nodeName"] for p in pods} == {"node1", "node2", "node3"}
        assert all(p["status"]["phase"] == "Running" and p["status"]["podIP"] for p in pods)
        for proto, port in (("TCP", 80), ("TCP", 81), ("UDP", 80), ("UDP", 81)):
            proc = lab_cli("probe", "--name", name, "--protocol", proto, "--port", str(port),
                           "-o", "json")  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            doc = json.loads(proc.stdout)
            assert doc["protocol"] == proto and doc["port"] == port
            assert doc["pods"] == m.keys
            assert doc["matrix"] == m.all_connected(), f"{proto}/{port}: {doc['matrix']}"
        # A port nobody serves is blocked everywhere (the probe can fail).
        closed = await lab.probe(protocol="TCP", port=82)
        assert not any(any(row.values()) for row in closed["matrix"].values())

        down = lab_cli("down", "--name", name)
        assert down.returncode == 0, down.stderr
        assert netns.list_netns(state.netns_prefix(name)) == []
        assert not spec.path.exists()
        assert processes_mentioning(spec.dir) == []
    finally:
        lifecycle.down(name)
