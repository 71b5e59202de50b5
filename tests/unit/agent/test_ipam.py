"""Node IPAM: gateway reserved, persistent, concurrent-safe, leak release."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest

from antrea.agent.ipam import IPAM, IPAMError

CIDR = ipaddress.IPv4Network("10.244.1.0/24")


async def test_first_address_is_the_gateway_and_never_allocated(tmp_path: Path) -> None:
    ipam = IPAM(CIDR, tmp_path)
    assert ipam.gateway == ipaddress.IPv4Address("10.244.1.1")
    a = await ipam.allocate("c1", "eth0")
    assert a.ip == ipaddress.IPv4Address("10.244.1.2")


async def test_same_container_gets_same_address(tmp_path: Path) -> None:
    ipam = IPAM(CIDR, tmp_path)
    a = await ipam.allocate("c1", "eth0")
    b = await ipam.allocate("c1", "eth0")
    assert a.ip == b.ip and len(ipam.allocations()) == 1


async def test_allocations_survive_a_restart(tmp_path: Path) -> None:
    a = await IPAM(CIDR, tmp_path).allocate("c1", "eth0")
    again = IPAM(CIDR, tmp_path)
    assert again.find("c1", "eth0") is not None
    b = await again.allocate("c2", "eth0")
    assert b.ip != a.ip


async def test_concurrent_allocations_are_distinct(tmp_path: Path) -> None:
    """50 concurrent ADDs: 50 different addresses, 50 files."""
    ipam = IPAM(CIDR, tmp_path)
    allocs = await asyncio.gather(*(ipam.allocate(f"c{i}", "eth0") for i in range(50)))
    assert len({a.ip for a in allocs}) == 50
    assert len(ipam.allocations()) == 50


async def test_release_is_idempotent_and_not_immediately_reused(tmp_path: Path) -> None:
    ipam = IPAM(CIDR, tmp_path)
    a = await ipam.allocate("c1", "eth0")
    assert len(await ipam.release("c1")) == 1
    assert await ipam.release("c1") == []
    b = await ipam.allocate("c2", "eth0")
    assert b.ip != a.ip  # round-robin after the last reserved address


async def test_exhaustion_raises(tmp_path: Path) -> None:
    ipam = IPAM(ipaddress.IPv4Network("10.0.0.0/29"), tmp_path)  # .1 gw, .2-.6 usable
    for i in range(5):
        await ipam.allocate(f"c{i}", "eth0")
    with pytest.raises(IPAMError):
        await ipam.allocate("c9", "eth0")


async def test_reconcile_releases_only_unknown_allocations(tmp_path: Path) -> None:
    """An address is kept if its container OR its IP is still known (err on keeping)."""
    ipam = IPAM(CIDR, tmp_path)
    a = await ipam.allocate("known", "eth0")
    b = await ipam.allocate("in-pod-status", "eth0")
    c = await ipam.allocate("leaked", "eth0")
    leaked = await ipam.reconcile(keep_containers=["known"], keep_ips=[b.ip])
    assert [x.ip for x in leaked] == [c.ip]
    assert {x.ip for x in ipam.allocations()} == {a.ip, b.ip}
