"""CIDR differences and port-range prefix covers."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from antrea.agent.networkpolicy.addresses import block_prefixes, port_range_masks


def _covered(masks: list[tuple[int, int]]) -> set[int]:
    return {p for p in range(65536) if any(p & m == v for v, m in masks)}


def test_except_is_a_cidr_difference() -> None:
    nets = block_prefixes("10.0.0.0/8", ["10.244.1.20/32"])
    covered = ipaddress.ip_network("10.0.0.0/8")
    assert not any(ipaddress.ip_address("10.244.1.20") in n for n in nets)
    assert any(ipaddress.ip_address("10.244.1.21") in n for n in nets)
    assert sum(n.num_addresses for n in nets) == covered.num_addresses - 1
    assert len(nets) == 24  # one prefix per bit below /8


def test_except_outside_or_covering_the_block() -> None:
    assert block_prefixes("10.0.0.0/24", ["192.168.0.0/16"]) == [
        ipaddress.ip_network("10.0.0.0/24")
    ]
    assert block_prefixes("10.0.0.0/24", ["10.0.0.0/16"]) == []
    assert block_prefixes("::/0") == []  # IPv6 blocks are not realized on an IPv4 node


def test_overlapping_excepts() -> None:
    nets = block_prefixes("10.0.0.0/24", ["10.0.0.0/25", "10.0.0.0/26", "10.0.0.128/26"])
    assert nets == [ipaddress.ip_network("10.0.0.192/26")]


def test_port_range_examples() -> None:
    assert port_range_masks(80, 80) == [(80, 0xFFFF)]
    assert port_range_masks(80, 95) == [(80, 0xFFF0)]
    assert port_range_masks(0, 65535) == [(0, 0)]
    assert len(port_range_masks(1, 65534)) == 30


@given(st.integers(0, 65535), st.integers(0, 65535))
def test_port_range_cover_is_exact(a: int, b: int) -> None:
    lo, hi = min(a, b), max(a, b)
    if hi - lo > 3000:
        hi = lo + 3000  # keep the brute-force check fast
    masks = port_range_masks(lo, hi)
    assert _covered(masks) == set(range(lo, hi + 1))
    assert len(masks) <= 30
