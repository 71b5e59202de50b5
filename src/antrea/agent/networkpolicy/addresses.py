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
_inet_pton, _inet_aton, _AF_INET = socket.inet_pton, socket.inet_aton, int(socket.AF_INET)
_from_bytes = int.from_bytes
_NETMASK = [(0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF for n in range(33)]


def fast_prefix(cidr: str) -> str | None:
    """Canonical ``a.b.c.d/len`` of an IPv4 CIDR (host bits cleared), without `ipaddress`.

    Parsing with `ipaddress` costs ~50 us per prefix; a policy set with 15,000 CIDR peers would
    spend most of its planning time there. A canonical dotted quad (what ``inet_pton``
    accepts: no leading zeros, no short forms) with a canonical length is handled in C and,
    host bits clear (the usual case), returned as given; anything else takes `_slow_prefix`.
    """
    addr, slash, plen_text = cidr.partition("/")
    plen = _PLEN.get(plen_text) if slash else 32
    if plen is not None:
        try:
            packed = _inet_pton(_AF_INET, addr)
        except OSError:
            return _slow_prefix(cidr)
        value = _from_bytes(packed, "big")
        net = value & _NETMASK[plen]
        if net == value:
            return cidr if slash else f"{cidr}/32"
        return f"{socket.inet_ntoa(net.to_bytes(4, 'big'))}/{plen}"
    return _slow_prefix(cidr)


def _slow_prefix(cidr: str) -> str | None:
    """`fast_prefix` of any other spelling: decimal octets (leading zeros allowed), else
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
        return None if net is None else str(net)
    value = (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]
    value &= _NETMASK[plen]
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}/{plen}"


def prefix_value(prefix: str) -> IPv4Net | ipaddress.IPv4Address:
    """The `ipaddress` value of a canonical ``a.b.c.d/len`` (`fast_prefix`'s output): an
    address for /32, else a network (what `Match` stores). Built from integers, which is
    several times cheaper than parsing the text again."""
    addr, _, plen_text = prefix.partition("/")
    value = _from_bytes(_inet_aton(addr), "big")
    plen = _PLEN.get(plen_text) if plen_text else 32
    if plen is None:  # (not the canonical length text)
        plen = int(plen_text)
    if _FAST_NETWORK:
        if plen < 31:
            return _network(value, plen)
        if plen == 32:
            return _address(value)
    if plen == 32:
        return ipaddress.IPv4Address(value)
    return ipaddress.IPv4Network((value, plen))


_NETMASKS = [ipaddress.IPv4Address(_NETMASK[n]) for n in range(31)]
_new_object = object.__new__
_V4Addr = ipaddress.IPv4Address


def _address(value: int) -> ipaddress.IPv4Address:
    """``IPv4Address(value)`` of an int in range, without the constructor's type dispatch
    and range check (its one slot set directly; checked at import with `_network`)."""
    a = _new_object(_V4Addr)
    a._ip = value  # type: ignore[attr-defined]
    return a


def _network(value: int, plen: int) -> IPv4Net:
    """``IPv4Network((value, plen))`` for a network address (host bits clear) and a length
    below 31, without the constructor's argument parsing and checks (3x cheaper; one per
    clause match). It sets exactly what the constructor sets (checked at import:
    `_FAST_NETWORK`, else the constructor is used)."""
    net = _new_object(IPv4Net)
    net.network_address = _address(value)
    net.netmask = _NETMASKS[plen]
    net._prefixlen = plen  # type: ignore[attr-defined]
    return net


def _same_as_constructor() -> bool:
    try:
        for plen in range(31):
            for address in (0, 0x0A000000, 0xC0A80100, 0xFFFFFFFF):
                value = address & _NETMASK[plen]
                fast, real = _network(value, plen), ipaddress.IPv4Network((value, plen))
                if (
                    fast != real
                    or hash(fast) != hash(real)
                    or str(fast) != str(real)
                    or vars(fast) != vars(real)
                    or fast.num_addresses != real.num_addresses
                ):
                    return False
                a, b = _address(address), ipaddress.IPv4Address(address)
                if (
                    type(a) is not type(b)
                    or a != b
                    or hash(a) != hash(b)
                    or str(a) != str(b)
                    or a.packed != b.packed
                    or fast.network_address.packed != real.network_address.packed
                ):
                    return False
    except Exception:
        return False
    return True


_FAST_NETWORK = _same_as_constructor()


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
