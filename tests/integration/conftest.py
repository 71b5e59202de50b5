"""Fixtures for tests that need root, network namespaces and real Open vSwitch."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from antrea.testbed.ovssandbox import OvsSandbox


def _need_root_and_ovs() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if shutil.which("ovs-vswitchd") is None:
        pytest.skip("needs Open vSwitch (bash bin/setup installs it)")


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace, deleted afterwards."""
    _need_root_and_ovs()
    name = f"antrea-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def ovs(netns: str, tmp_path: Path) -> Iterator[OvsSandbox]:
    """A private OVS (ovsdb-server + userspace ovs-vswitchd) inside `netns`."""
    sandbox = OvsSandbox(rundir=tmp_path / "ovs", netns=netns)
    try:
        sandbox.start()
        yield sandbox
    finally:
        sandbox.stop()
