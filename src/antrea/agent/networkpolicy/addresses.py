"""Address and port arithmetic for policy flows: pure functions over plain values.

OpenFlow matches prefixes, not arbitrary sets, so two things in a NetworkPolicy need rewriting
before they become match flows:

* an ``ipBlock`` with ``except`` is the CIDR *difference* ``cidr - except...``: a handful of
  disjoint prefixes, each of which becomes one ``nw_src``/``nw_dst`` match (Antrea does the
  same since v0.7; the older "exception flow" scheme needed a second priority level);
* an ``endPort`` range is covered by the minimal set of (value, mask) prefixes, each one a
  masked ``tp_dst`` match (``tp_dst=0x50/0xfff0`` covers 80..95).

Matches are canonicalised here as well, because the flow cache keys flows by their `Match`
value while OVS keys them by what the match means: ``nw_src=0.0.0.0/0`` *is* ``ip`` to OVS,
so a /0 prefix must never become a field, or two "different" cached flows would be one OVS
flow and overwrite each other. (A /32 prefix and its address are one value: `Match` stores
the address.)
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

IPv4Net = ipaddress.IPv4Network
Prefix = tuple[int, int]  # an IPv4 prefix: (network address as an int, length)

ANY_V4 = ipaddress.IPv4Network("0.0.0.0/0")


def parse_v4(cidr: str) -> IPv4Net | None:
    """An IPv4 prefix from a CIDR or bare address (host bits cleared); None for IPv6 or junk."""
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None
    return net if isinstance(net, ipaddress.IPv4Network) else None


_PLEN = {str(n): n for n in range(33)}  # the canonical prefix length texts
# (module globals: one lookup each instead of a module's and an attribute's, per prefix)
_inet_pton, _AF_INET = socket.inet_pton, int(socket.AF_INET)
_from_bytes = int.from_bytes
_NETMASK = [(0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF for n in range(33)]


def prefix_key(cidr: str) -> Prefix | None:
    """``(network address, length)`` of an IPv4 CIDR or bare address (host bits cleared),
    None for IPv6 or junk, without `ipaddress` (~50 us per prefix, most of the planning time
    of 15,000 CIDR peers). What the policy planner's address atoms carry, so a prefix is
    parsed once and its match built from the integers
    (`antrea.ovs.openflow.flow.ipv4_prefix_match`). A canonical dotted quad (what
    ``inet_pton`` accepts: no leading zeros, no short forms) with a canonical length is read
    in C; anything else takes `_slow_key`."""
    addr, slash, plen_text = cidr.partition("/")
    plen = _PLEN.get(plen_text) if slash else 32
    if plen is not None:
        try:
            packed = _inet_pton(_AF_INET, addr)
        except OSError:
            return _slow_key(cidr)
        return (_from_bytes(packed, "big") & _NETMASK[plen], plen)
    return _slow_key(cidr)


def _slow_key(cidr: str) -> Prefix | None:
    """`prefix_key` of any other spelling: decimal octets (leading zeros allowed), else
    whatever `ipaddress` makes of it."""
    addr, _, plen_text = cidr.partition("/")
    parts = addr.split(".")
    try:
        if len(parts) != 4:
            raise ValueError
        octets = [int(p) for p in parts]
        plen = int(plen_text) if plen_text else 32
        if not (0 <= plen <= 32 and all(0 <= o <= 255 for o in octets)):
            raise ValueError
    except ValueError:
        net = parse_v4(cidr)
        return None if net is None else net_key(net)
    value = (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]
    return (value & _NETMASK[plen], plen)


def net_key(net: IPv4Net) -> Prefix:
    """The `prefix_key` of an `ipaddress` network."""
    return (int(net.network_address), net.prefixlen)


def collapse(nets: Iterable[IPv4Net]) -> list[IPv4Net]:
    """Smallest equivalent list of prefixes (merges adjacent, drops covered ones)."""
    return list(ipaddress.collapse_addresses(nets))


def block_prefixes(cidr: str, excepts: Iterable[str] = ()) -> list[IPv4Net]:
    """The prefixes of ``cidr`` minus every ``except`` prefix (excepts outside cidr ignored)."""
    base = parse_v4(cidr)
    if base is None:
        return []
    remaining = [base]
    for text in excepts:
        ex = parse_v4(text)
        if ex is None:
            continue
        nxt: list[IPv4Net] = []
        for net in remaining:
            if ex.supernet_of(net):
                continue  # wholly excepted
            if net.supernet_of(ex):
                nxt.extend(net.address_exclude(ex))
            else:
                nxt.append(net)
        remaining = nxt
    return collapse(remaining)


def port_range_masks(start: int, end: int) -> list[tuple[int, int]]:
    """Minimal (value, mask) prefix cover of the 16-bit port range ``[start, end]``.

    Greedy from the low end: at each step take the largest aligned block that starts at the
    current port and does not pass ``end``. This is optimal for prefix covers of a range.
    """
    if not 0 <= start <= end <= 0xFFFF:
        raise ValueError(f"bad port range {start}-{end}")
    out: list[tuple[int, int]] = []
    port = start
    while port <= end:
        size = port & -port if port else 1 << 16
        while port + size - 1 > end:
            size >>= 1
        out.append((port, 0xFFFF & ~(size - 1)))
        port += size
    return out
