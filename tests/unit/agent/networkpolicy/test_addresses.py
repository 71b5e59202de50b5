"""CIDR differences and port-range prefix covers."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from antrea.agent.networkpolicy import addresses
from antrea.agent.networkpolicy.addresses import block_prefixes, port_range_masks
from antrea.ovs.openflow.flow import FAST_IPV4, ipv4_prefix


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


# mostly canonical quads and lengths (the inet_pton path), some of every other spelling
_octet = st.integers(0, 255).map(str) | st.integers(0, 300).map(lambda n: f"0{n}")
_odd_octet = st.sampled_from(["", "x", "-1", "0x1f", " 1", "256"])
_quad = st.lists(_octet, min_size=4, max_size=4) | st.lists(
    _octet | _odd_octet, min_size=3, max_size=5
)
_length = st.integers(0, 32).map(str) | st.none() | st.sampled_from(["08", "33", "-1", "", "+8"])


@given(_quad, _length)
def test_prefix_key_agrees_with_the_plain_parser(octets: list[str], length: str | None) -> None:
    """The inet_pton path and the decimal parser (with `ipaddress` as the last resort) read
    every spelling the same, canonical or not."""
    text = ".".join(octets) + ("" if length is None else f"/{length}")
    assert addresses.prefix_key(text) == addresses._slow_key(text)


@given(_quad, _length)
def test_prefix_key_is_the_ipaddress_prefix(octets: list[str], length: str | None) -> None:
    """What the planner's address atoms carry: the prefix's (network address, length), host
    bits cleared, for every spelling; what `ipaddress` reads, it reads the same."""
    text = ".".join(octets) + ("" if length is None else f"/{length}")
    key = addresses.prefix_key(text)
    net = addresses.parse_v4(text)
    if net is not None:
        assert key == (int(net.network_address), net.prefixlen) == addresses.net_key(net)
    if key is not None:
        value, plen = key
        assert 0 <= plen <= 32 and value & ~addresses._NETMASK[plen] & 0xFFFFFFFF == 0


@given(st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_ipv4_prefix_is_the_ipaddress_value(addr: int, plen: int) -> None:
    """`ipv4_prefix` of a `prefix_key` (networks and addresses built without the
    constructors) is exactly what `ipaddress` makes of the canonical prefix: equal, same hash
    and text, same attributes."""
    text = str(ipaddress.ip_network(f"{ipaddress.IPv4Address(addr)}/{plen}", strict=False))
    key = addresses.prefix_key(text)
    assert key is not None
    value = ipv4_prefix(*key)
    if plen == 32:  # an address built without its constructor: the same value
        real_addr = ipaddress.IPv4Address(addr)
        assert type(value) is ipaddress.IPv4Address and value == real_addr
        assert hash(value) == hash(real_addr) and str(value) == str(real_addr)
        assert value.packed == real_addr.packed and value.is_private == real_addr.is_private
        return
    real = ipaddress.IPv4Network(text)
    assert value == real and hash(value) == hash(real) and str(value) == str(real)
    assert isinstance(value, ipaddress.IPv4Network)
    assert value.prefixlen == real.prefixlen and value.netmask == real.netmask
    assert value.broadcast_address == real.broadcast_address
    assert list(value.subnets()) == list(real.subnets())
    assert FAST_IPV4  # the import-time check holds on this Python
