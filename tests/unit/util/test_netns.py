"""util/netns: a thread enters a named namespace and comes back (real `ip netns`)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

from antrea.util.netns import call_in, netns_path

pytestmark = pytest.mark.root


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"apis-netns-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def _ns() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_call_in_runs_inside_and_returns(netns: str) -> None:
    home = _ns()
    inside = call_in(netns_path(netns), _ns)
    assert inside == os.stat(netns_path(netns)).st_ino != home
    # Only the loopback device exists in a fresh namespace.
    names = call_in(netns_path(netns), lambda: [n for _, n in socket.if_nameindex()])
    assert names == ["lo"]
    assert _ns() == home


def test_a_missing_namespace_is_an_error_and_the_thread_stays_home() -> None:
    home = _ns()
    with pytest.raises(FileNotFoundError):
        call_in(netns_path(f"apis-missing-{os.getpid()}"), _ns)
    assert _ns() == home
