"""Flow values: what the agent wants in a table, independent of how it is sent.

A `Flow` is (table, priority, match, actions, cookie). Its identity for diffs and strict
deletes is `Flow.key` = (table, priority, match): a value, the `Match` itself (hashed once,
then cached on it), not its text. Two flows with the same key cannot coexist in OVS, so the key
is what caches index by. Text is produced in `antrea.ovs.openflow.render` only, bytes in
`antrea.ovs.openflow.wire` only; this module imports neither.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


class Proto(StrEnum):
    """The protocol shorthands of ovs-ofctl (each also sets dl_type and, for L4, nw_proto).

    A `StrEnum`: equal to (and hashed as) its text, so ``Proto.TCP == "tcp"``."""

    IP = "ip"
    IPV6 = "ipv6"
    ARP = "arp"
    TCP = "tcp"
    UDP = "udp"
    SCTP = "sctp"
    ICMP = "icmp"


@dataclass(frozen=True, slots=True)
class RegMatch:
    """Match bits ``[start, end]`` (inclusive) of register ``reg`` against ``value``."""

    reg: int
    value: int
    start: int = 0
    end: int = 31


@dataclass(frozen=True, slots=True)
class CtState:
    """Conntrack state flags: ``+``/``-`` per flag, e.g. CtState(new=False, est=True)."""

    new: bool | None = None
    est: bool | None = None
    rel: bool | None = None
    rpl: bool | None = None
    inv: bool | None = None
    trk: bool | None = None
    # what a `Match` hashes for this state (the hash of the flags, made with the value): the
    # dataclass's own __hash__ is Python code, and one conjunction counter flow per rule
    # matches a state
    hash_key: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        flags = (self.new, self.est, self.rel, self.rpl, self.inv, self.trk)
        object.__setattr__(self, "hash_key", hash(flags))


@dataclass(frozen=True, init=False)
class Match:
    """Match fields in canonical order. ``None`` means "not matched".

    ``proto`` is a `Proto` (the ovs-ofctl shorthand that also sets dl_type/nw_proto).
    Transport ports may be masked (``tp_dst_mask``) to express ranges as a few prefix matches.

    Canonical by construction, so that equal matches are equal values (the flow key): addresses
    are `ipaddress` values, a full-length prefix is stored as its address (``10.0.0.1/32`` is
    ``10.0.0.1``), anything else (e.g. a string) is a `TypeError`.
    """

    proto: Proto | None = None
    in_port: int | None = None
    dl_src: str | None = None
    dl_dst: str | None = None
    regs: tuple[RegMatch, ...] = ()
    ct_state: CtState | None = None
    ct_mark: tuple[int, int] | None = None  # (value, mask)
    ct_label: tuple[int, int] | None = None  # (value, mask), 128 bits
    conj_id: int | None = None
    tun_id: int | None = None
    tun_dst: IPAddr | None = None
    nw_src: IPNet | IPAddr | None = None
    nw_dst: IPNet | IPAddr | None = None
    arp_op: int | None = None
    arp_spa: IPAddr | None = None
    arp_tpa: IPAddr | None = None
    arp_sha: str | None = None
    tp_src: int | None = None
    tp_dst: int | None = None
    tp_dst_mask: int | None = None
    tcp_flags: str | None = None  # e.g. "+syn-ack" (needs proto tcp)
    icmp_type: int | None = None  # needs proto icmp
    icmp_code: int | None = None
    # the hash of the fields that are set (computed by __init__)
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __init__(
        self,
        proto: Proto | None = None,
        *,
        in_port: int | None = None,
        dl_src: str | None = None,
        dl_dst: str | None = None,
        regs: tuple[RegMatch, ...] = (),
        ct_state: CtState | None = None,
        ct_mark: tuple[int, int] | None = None,
        ct_label: tuple[int, int] | None = None,
        conj_id: int | None = None,
        tun_id: int | None = None,
        tun_dst: IPAddr | None = None,
        nw_src: IPNet | IPAddr | None = None,
        nw_dst: IPNet | IPAddr | None = None,
        arp_op: int | None = None,
        arp_spa: IPAddr | None = None,
        arp_tpa: IPAddr | None = None,
        arp_sha: str | None = None,
        tp_src: int | None = None,
        tp_dst: int | None = None,
        tp_dst_mask: int | None = None,
        tcp_flags: str | None = None,
        icmp_type: int | None = None,
        icmp_code: int | None = None,
    ) -> None:
        # Only the fields that are set are stored (the rest read the class defaults): a
        # Match is built per flow by the ten thousand, and the generated frozen __init__
        # (one object.__setattr__ per field, 23 of them) was the costliest part of a flow.
        v = self.__dict__
        if proto is not None:
            v["proto"] = proto
        if in_port is not None:
            v["in_port"] = in_port
        if dl_src is not None:
            v["dl_src"] = dl_src
        if dl_dst is not None:
            v["dl_dst"] = dl_dst
        if regs:
            v["regs"] = regs
        if ct_state is not None:
            v["ct_state"] = ct_state
        if ct_mark is not None:
            v["ct_mark"] = ct_mark
        if ct_label is not None:
            v["ct_label"] = ct_label
        if conj_id is not None:
            v["conj_id"] = conj_id
        if tun_id is not None:
            v["tun_id"] = tun_id
        if tun_dst is not None:
            v["tun_dst"] = (
                tun_dst
                if type(tun_dst) in _ADDRESS_TYPES
                else _canonical_address("tun_dst", tun_dst)
            )
        if nw_src is not None:
            v["nw_src"] = (
                nw_src
                if type(nw_src) in _ADDRESS_TYPES
                or (isinstance(nw_src, _NETWORK_TYPES) and nw_src.prefixlen < nw_src.max_prefixlen)
                else _canonical_address("nw_src", nw_src)
            )
        if nw_dst is not None:
            v["nw_dst"] = (
                nw_dst
                if type(nw_dst) in _ADDRESS_TYPES
                or (isinstance(nw_dst, _NETWORK_TYPES) and nw_dst.prefixlen < nw_dst.max_prefixlen)
                else _canonical_address("nw_dst", nw_dst)
            )
        if arp_op is not None:
            v["arp_op"] = arp_op
        if arp_spa is not None:
            v["arp_spa"] = (
                arp_spa
                if type(arp_spa) in _ADDRESS_TYPES
                else _canonical_address("arp_spa", arp_spa)
            )
        if arp_tpa is not None:
            v["arp_tpa"] = (
                arp_tpa
                if type(arp_tpa) in _ADDRESS_TYPES
                else _canonical_address("arp_tpa", arp_tpa)
            )
        if arp_sha is not None:
            v["arp_sha"] = arp_sha
        if tp_src is not None:
            v["tp_src"] = tp_src
        if tp_dst is not None:
            v["tp_dst"] = tp_dst
        if tp_dst_mask is not None:
            v["tp_dst_mask"] = tp_dst_mask
        if tcp_flags is not None:
            v["tcp_flags"] = tcp_flags
        if icmp_type is not None:
            v["icmp_type"] = icmp_type
        if icmp_code is not None:
            v["icmp_code"] = icmp_code
        # Hashed once, here: from the fields that are set, in canonical order (matches are
        # dict keys of the flow client, the encoder and the planners, hashed many times); an
        # IPv4 prefix by its (address, length), see `_v4net_key`.
        # A conntrack state by its `CtState.hash_key`.
        items = tuple(v.items())
        if type(v.get("nw_src")) is _V4NET or type(v.get("nw_dst")) is _V4NET:
            items = tuple((k, _net_hash_key(x) if type(x) is _V4NET else x) for k, x in items)
        if ct_state is not None:
            items = tuple((k, x.hash_key if k == "ct_state" else x) for k, x in items)
        v["_hash"] = hash(items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        # the set fields (and the hash that follows from them), not all 23 attributes
        if other.__class__ is not Match:
            return NotImplemented
        return self.__dict__ == other.__dict__


_ADDRESS_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address)
_NETWORK_TYPES = (ipaddress.IPv4Network, ipaddress.IPv6Network)
_HOST_ONLY = ("tun_dst", "arp_spa", "arp_tpa")


# Constructors of the three match shapes the policy planner builds by the ten thousand (per
# conjunction two, per clause atom one). Each gives the very value ``Match(...)`` gives (same
# set fields in the same canonical order, hence equal, same hash, same text and bytes: a
# property test holds them to it) without the generic constructor's 23 keyword tests.
_new_match = object.__new__
_IP = Proto.IP
_V4ADDR = ipaddress.IPv4Address
_V4NET = ipaddress.IPv4Network


def _v4net_key(net: ipaddress.IPv4Network) -> object:
    """What a match hashes for an IPv4 prefix: its (address, length) as a tuple of ints,
    hashed in C. Not the prefix's own hash: `IPv4Network.__hash__` is Python code (a third of
    a prefix match's cost) and hashes ``address ^ netmask``, which is the same for a prefix
    and the one of another length whose extra bits are all ones (10.0.0.0/8 and
    10.255.0.0/16): about 900 of the 14,000 random prefixes of realize.py's policy set
    collided, each costing a Python-level match comparison in every dict of keys."""
    return (net.network_address._ip, net._prefixlen)  # type: ignore[attr-defined]


def _v4net_key_public(net: ipaddress.IPv4Network) -> object:
    return (int(net.network_address), net.prefixlen)


def _v4addr_key(addr: ipaddress.IPv4Address) -> object:
    """An object hashed as `addr` is, in C (`IPv4Address.__hash__`, Python code, hashes the
    hex text of its integer): a match built from the address has the generic one's hash."""
    return hex(addr._ip)  # type: ignore[attr-defined]


def _same_hash(value: object) -> object:
    return value


def _private_ipv4_hold() -> bool:
    """`ipaddress` keeps the integers the stand-ins above read (checked here, else the
    public, slower spellings are used)."""
    try:
        for value in (0, 1, 0x0A000000, 0xC0A80100, 0x7FFFFFFF, 0xFFFFFFFF):
            addr = ipaddress.IPv4Address(value)
            if hash(_v4addr_key(addr)) != hash(addr):
                return False
            for plen in (0, 1, 8, 16, 24, 31):
                net = ipaddress.IPv4Network((value >> (32 - plen) << (32 - plen), plen))
                if _v4net_key(net) != _v4net_key_public(net):
                    return False
    except Exception:
        return False
    return True


_net_hash_key, _addr_hash_key = (
    (_v4net_key, _v4addr_key) if _private_ipv4_hold() else (_v4net_key_public, _same_hash)
)


_PROTO_IP = ("proto", _IP)  # (the first item of every policy match's hashed items)


def conj_id_match(conj_id: int) -> Match:
    """``Match(proto=Proto.IP, conj_id=conj_id)``: a conjunction's action flow."""
    m = _new_match(Match)
    v = m.__dict__
    v["proto"] = _IP
    v["conj_id"] = conj_id
    v["_hash"] = hash((_PROTO_IP, ("conj_id", conj_id)))
    return m


def ct_label_match(ct_state: CtState, ct_label: tuple[int, int]) -> Match:
    """``Match(proto=Proto.IP, ct_state=ct_state, ct_label=ct_label)``: a conjunction's
    established-packets counter."""
    m = _new_match(Match)
    v = m.__dict__
    v["proto"] = _IP
    v["ct_state"] = ct_state
    v["ct_label"] = ct_label
    v["_hash"] = hash((_PROTO_IP, ("ct_state", ct_state.hash_key), ("ct_label", ct_label)))
    return m


_NETMASK = [(0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF for n in range(33)]


def ipv4_prefix(value: int, plen: int) -> ipaddress.IPv4Network | ipaddress.IPv4Address:
    """The `ipaddress` value a `Match` stores for the IPv4 prefix (value, plen) (value: the
    network address as an int, host bits clear; plen 0..32): an address for /32, else a
    network. Built from the integers without the constructors' parsing (`FAST_IPV4`)."""
    if FAST_IPV4:
        if plen < 31:
            return _network(value, plen)
        if plen == 32:
            return _address(value)
    if plen == 32:
        return _V4ADDR(value)
    return _V4NET((value, plen))


def ipv4_prefix_match(field: str, value: int, plen: int) -> Match:
    """``Match(proto=Proto.IP, <field>=ipv4_prefix(value, plen))`` (``nw_src``/``nw_dst``, 0 <
    plen <= 32, value with host bits clear): a clause atom's prefix, hashed from the integers
    it is given (the key `_net_hash_key` reads back from a network is this very pair)."""
    prefix = ipv4_prefix(value, plen)
    key = _addr_hash_key(prefix) if plen == 32 else (value, plen)  # type: ignore[arg-type]
    m = _new_match(Match)
    v = m.__dict__
    v["proto"] = _IP
    v[field] = prefix
    v["_hash"] = hash((_PROTO_IP, (field, key)))
    return m


_NETMASKS = [_V4ADDR(_NETMASK[n]) for n in range(31)]


def _address(value: int) -> ipaddress.IPv4Address:
    """``IPv4Address(value)`` of an int in range, without the constructor's type dispatch
    and range check (its one slot set directly; checked at import with `_network`)."""
    a = _new_match(_V4ADDR)
    a._ip = value  # type: ignore[attr-defined]
    return a


def _network(value: int, plen: int) -> ipaddress.IPv4Network:
    """``IPv4Network((value, plen))`` for a network address (host bits clear) and a length
    below 31, without the constructor's argument parsing and checks (3x cheaper; one per
    clause match). It sets exactly what the constructor sets (checked at import:
    `FAST_IPV4`, else the constructor is used)."""
    net = _new_match(_V4NET)
    net.network_address = _address(value)
    net.netmask = _NETMASKS[plen]
    net._prefixlen = plen  # type: ignore[attr-defined]
    return net


def _same_as_constructor() -> bool:
    try:
        for plen in range(31):
            for address in (0, 0x0A000000, 0xC0A80100, 0xFFFFFFFF):
                value = address & _NETMASK[plen]
                fast, real = _network(value, plen), _V4NET((value, plen))
                if (
                    fast != real
                    or hash(fast) != hash(real)
                    or str(fast) != str(real)
                    or vars(fast) != vars(real)
                    or fast.num_addresses != real.num_addresses
                ):
                    return False
                a, b = _address(address), _V4ADDR(address)
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


FAST_IPV4 = _same_as_constructor()


def _canonical_address(name: str, value: object) -> IPNet | IPAddr:
    if isinstance(value, _NETWORK_TYPES):
        if value.prefixlen == value.max_prefixlen:
            return value.network_address
        if name not in _HOST_ONLY:
            return value
    raise TypeError(f"match field {name}: an ipaddress address or network, not {value!r}")


class Action:
    """Base class of all actions (values; rendered by `render`)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Output(Action):
    """``output:<port>``; port may be a number or a keyword such as ``IN_PORT``."""

    port: int | str


@dataclass(frozen=True, slots=True)
class OutputReg(Action):
    """``output:NXM_NX_REG<reg>[]``: output to the port held in a register."""

    reg: int


@dataclass(frozen=True, slots=True)
class Normal(Action):
    pass


@dataclass(frozen=True, slots=True)
class Drop(Action):
    pass


@dataclass(frozen=True, slots=True)
class GotoTable(Action):
    table: int


@dataclass(frozen=True, slots=True)
class Resubmit(Action):
    table: int


@dataclass(frozen=True, slots=True)
class LoadReg(Action):
    """Load ``value`` into bits ``[start, end]`` of register ``reg``."""

    reg: int
    value: int
    start: int = 0
    end: int = 31


@dataclass(frozen=True, slots=True)
class SetField(Action):
    """``set_field:<value>-><field>`` (e.g. eth_src, eth_dst, tun_dst, arp_op, arp_sha)."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class Move(Action):
    """``move:<src>-><dst>`` with NXM field names, e.g. ``NXM_OF_ETH_SRC[]``."""

    src: str
    dst: str


@dataclass(frozen=True, slots=True)
class DecTTL(Action):
    pass


@dataclass(frozen=True, slots=True)
class CtClear(Action):
    """``ct_clear``: forget the packet's conntrack state (it becomes untracked)."""


@dataclass(frozen=True, slots=True)
class Conjunction(Action):
    """``conjunction(id, clause/n_clauses)``; clause is 1-based."""

    conj_id: int
    clause: int
    n_clauses: int


@dataclass(frozen=True, slots=True)
class Ct(Action):
    """``ct(commit?, table=?, zone=?, nat?, exec(...)?)``.

    ``nat_dst`` (IPv4 address and port, with ``commit``) is ``nat(dst=IP:PORT)``: DNAT of a new
    connection, ``nat_src`` (an IPv4 address) ``nat(src=IP)`` its SNAT; plain ``nat`` applies
    the NAT of the packet's existing connection (both ways).
    """

    commit: bool = False
    table: int | None = None
    zone: int | None = None
    nat: bool = False
    exec_: tuple[Action, ...] = ()
    nat_dst: tuple[str, int] | None = None
    nat_src: str | None = None  # nat(src=IP): SNAT of a new connection (with commit)


@dataclass(frozen=True, slots=True)
class OutputGroup(Action):
    """``group:<id>``: process the packet in an OpenFlow group (e.g. a select group)."""

    group_id: int


@dataclass(frozen=True, slots=True)
class LearnSpec:
    """One part of a learned flow: ``dst=src`` (match: copy/compare a field) or ``load``."""

    kind: str  # "match" (NXM_X[]=NXM_Y[] or NXM_X[]) or "load" (load:NXM_Y[]->NXM_X[])
    dst: str  # NXM subfield, e.g. NXM_OF_IP_SRC[]
    src: str | None = None  # NXM subfield; None: the same field as dst (match only)
    value: int | None = None  # load an immediate value instead of src


@dataclass(frozen=True, slots=True)
class Learn(Action):
    """``learn(table=,idle_timeout=,priority=,cookie=,delete_learned,eth_type,ip_proto,...)``."""

    table: int
    priority: int
    idle_timeout: int
    cookie: int
    eth_type: int
    ip_proto: int
    specs: tuple[LearnSpec, ...]
    hard_timeout: int = 0
    delete_learned: bool = True


class FlowKey(NamedTuple):
    """Identity of a flow in a switch: at most one flow per key."""

    table: int
    priority: int
    match: Match


# FlowKey(...) without the NamedTuple's Python-level __new__ (one per flow in a diff)
_new_key = tuple.__new__


@dataclass(frozen=True, slots=True, init=False)
class Flow:
    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...]
    cookie: int = 0
    # (table, priority, match), made with the flow: what the flow client and caches index by
    key: FlowKey = field(init=False, compare=False, hash=False, repr=False)

    def __init__(
        self, table: int, priority: int, match: Match, actions: tuple[Action, ...], cookie: int = 0
    ) -> None:
        # Straight into the slots (a frozen dataclass's generated __init__ goes through
        # object.__setattr__ per field): flows are built by the ten thousand per batch.
        _set_table(self, table)
        _set_priority(self, priority)
        _set_match(self, match)
        _set_actions(self, actions)
        _set_cookie(self, cookie)
        _set_key(self, _new_key(FlowKey, (table, priority, match)))

    def with_cookie(self, cookie: int) -> Flow:
        return Flow(self.table, self.priority, self.match, self.actions, cookie)

    def with_actions(self, actions: tuple[Action, ...]) -> Flow:
        return Flow(self.table, self.priority, self.match, actions, self.cookie)


# the slots' member descriptors (Flow.__init__ stores through them)
_set_table = Flow.__dict__["table"].__set__
_set_priority = Flow.__dict__["priority"].__set__
_set_match = Flow.__dict__["match"].__set__
_set_actions = Flow.__dict__["actions"].__set__
_set_cookie = Flow.__dict__["cookie"].__set__
_set_key = Flow.__dict__["key"].__set__


# `new_flow` builds a Flow as an instance of a plain class with the very same slots (fast slot
# stores, no frozen-class hooks) and then makes it a Flow (`__class__` assignment: same layout).
_FlowBuilder = type("_FlowBuilder", (object,), {"__slots__": Flow.__slots__})


def new_flow(
    table: int, priority: int, match: Match, actions: tuple[Action, ...], cookie: int
) -> Flow:
    """``Flow(table, priority, match, actions, cookie)``: the very same value, without the
    type call and the ``__init__`` frame (every argument positional). For the planners' bulk
    flows (several per policy rule)."""
    f: Any = _new_match(_FlowBuilder)
    f.table = table
    f.priority = priority
    f.match = match
    f.actions = actions
    f.cookie = cookie
    f.key = _new_key(FlowKey, (table, priority, match))
    f.__class__ = Flow
    flow: Flow = f
    return flow


if type(new_flow(0, 0, Match(), (), 0)) is not Flow:  # pragma: no cover (a layout change)
    raise TypeError("new_flow: Flow cannot be built through a slot builder")


@dataclass(frozen=True, slots=True)
class FlowFilter:
    """Which flows a dump or a non-strict delete selects: a table and/or cookie bits (``mask``
    says which bits of ``cookie`` must match). Empty: every flow. Rendered by `render`."""

    table: int | None = None
    cookie: int | None = None
    cookie_mask: int | None = None


@dataclass(frozen=True, slots=True)
class ConntrackTuple:
    """One direction of a conntrack entry: protocol, addresses and ports (rendered by `render`
    as the ``ct_nw_*``/``ct_tp_*`` fields of ``dpctl/flush-conntrack``)."""

    proto: Proto  # tcp, udp or sctp
    src: ipaddress.IPv4Address
    dst: ipaddress.IPv4Address
    sport: int
    dport: int


@dataclass(frozen=True, slots=True)
class ConntrackEntry:
    """One connection of ``dpctl/dump-conntrack`` (parsed by `antrea.ovs.ovsctl`)."""

    orig: ConntrackTuple
    reply: ConntrackTuple
