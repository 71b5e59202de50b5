"""`up` cleans up after itself when it fails; `down` cleans up after a crashed lab."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from antrea.testbed.lab import lifecycle, netns, state, topology
from antrea.testbed.lab.testing import need_lab_prerequisites

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.lab]


def assert_gone(name: str) -> None:
    assert netns.list_netns(state.netns_prefix(name)) == []
    assert not (state.lab_root() / name).exists()


def test_failed_up_leaves_nothing(tmp_path: Path) -> None:
    """An API server that is not there: the supervisor fails, `up` reports it and cleans up."""
    need_lab_prerequisites()
    kc = tmp_path / "kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1',"
        " insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    name = "e2efail"
    lifecycle.down(name)
    with pytest.raises(state.LabError, match="supervisor"):
        lifecycle.up(name=name, nodes=1, cni="reference", kubeconfig=str(kc))
    assert_gone(name)


def test_down_after_a_crash(tmp_path: Path) -> None:
    """SIGKILL the supervisor and a vswitchd: `down` still removes every process and namespace."""
    need_lab_prerequisites()
    name = "e2ecrash"
    lifecycle.down(name)
    try:
        spec = lifecycle.up(name=name, nodes=2, cni="reference")
        sup = topology.read_pid(spec.supervisor_pidfile)
        vsd = topology.read_pid(spec.nodes[0].ovs_dir / "ovs-vswitchd.pid")
        others = [topology.read_pid(n.ovs_dir / "ovsdb-server.pid") for n in spec.nodes]
        assert sup and vsd and all(others)
        os.kill(sup, signal.SIGKILL)
        os.kill(vsd, signal.SIGKILL)
    finally:
        lifecycle.down(name)
    assert_gone(name)
    for pid in (sup, vsd, *others):
        assert pid is not None and not topology.pid_alive(pid)


def test_labs_of_dead_test_processes_are_swept() -> None:
    """A test process killed before its teardown leaves a lab; the next session removes it."""
    need_lab_prerequisites()
    from antrea.testbed.lab.testing import OWNER_FILE, sweep_stale_test_labs

    name = "e2eorphan"
    lifecycle.down(name)
    try:
        spec = lifecycle.up(name=name, nodes=1, cni="reference")
        (spec.path / OWNER_FILE).write_text("999999999 0\n")  # no such process
        assert name in sweep_stale_test_labs()
        assert_gone(name)
    finally:
        lifecycle.down(name)
