"""`antrea lab up --kubeconfig`: the lab on an API server it did not start.

The server here is `antrea apiserver` run as a separate process, standing in for a real
kube-apiserver: the lab must only use the API (and nodes reach it through the underlay
forwarder with the original credentials and TLS name).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from antrea.testbed.lab import lifecycle, state
from antrea.testbed.lab.kube import KubeClient
from antrea.testbed.lab.testing import KUBECTL, Lab, need_lab_prerequisites

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.lab]


@pytest.fixture
def external(tmp_path: Path) -> Iterator[Path]:
    need_lab_prerequisites()
    kc = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "antrea.cmd.antrea", "apiserver", "--port", "0",
         "--data-dir", str(tmp_path / "data"), "--kubeconfig-out", str(kc)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not kc.exists():
            assert proc.poll() is None, "apiserver exited"
            assert time.monotonic() < deadline, "apiserver wrote no kubeconfig"
            time.sleep(0.05)
        yield kc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_lab_on_an_existing_api_server(external: Path) -> None:
    name = "e2eext"
    lifecycle.down(name)
    try:
        spec = lifecycle.up(name=name, nodes=2, cni="reference", kubeconfig=str(external))
        lab = Lab(spec)
        assert spec.kubeconfig == external
        m = await lab.create_model()
        doc = await lab.probe(port=81, namespaces=["x", "y", "z"])
        assert doc["matrix"] == m.all_connected()
        out = lab.exec_node("node2", str(KUBECTL), "get", "pods", "-A", "-o", "json").stdout
        assert len(json.loads(out)["items"]) == 9
    finally:
        removed = lifecycle.down(name)
    assert not (state.lab_root() / name).exists()
    # Nothing the lab wrote stays in the server: Nodes, Leases, the pods that ran on the lab's
    # kubelets, the namespaces it created.
    assert {"node node1", "node node2", "namespace x"} <= set(removed)
    async with KubeClient.from_kubeconfig(external) as c:
        assert (await c.list("/api/v1/nodes"))["items"] == []
        assert (await c.list("/api/v1/pods"))["items"] == []
        leases = await c.list("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")
        assert (leases.get("items") or []) == []
        for ns in ("x", "y", "z"):
            obj = await c.get_or_none(f"/api/v1/namespaces/{ns}")
            assert obj is None or obj["metadata"].get("deletionTimestamp"), ns
