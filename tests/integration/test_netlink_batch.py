"""Batched veth deletion (one kernel unregister batch) in a private network namespace."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest

from antrea.agent import netlink

pytestmark = [pytest.mark.root]


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"antrea-nlb-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _links(netns: str) -> set[str]:
    out = subprocess.run(
        ["ip", "-n", netns, "-o", "link", "show"], check=True, capture_output=True, text=True
    ).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


def test_delete_links_removes_exactly_the_named_veths(netns: str) -> None:
    for i in range(4):
        subprocess.run(
            ["ip", "-n", netns, "link", "add", f"h{i}", "type", "veth", "peer", "name", f"p{i}"],
            check=True,
        )
    with netlink.in_netns(f"/var/run/netns/{netns}"):
        assert netlink.delete_links(["h0", "h1", "h2", "missing"]) == 3
        assert netlink.delete_links(["h0"]) == 0  # idempotent
    assert _links(netns) == {"lo", "h3", "p3"}
    with netlink.in_netns(f"/var/run/netns/{netns}"):
        assert netlink.delete_links(["h3"]) == 1
    assert _links(netns) == {"lo"}
