"""From a completed rule to conjunction clauses: the policy math, without a switch.

One K8s NetworkPolicy rule becomes (antrea.md §3.4):

* one conjunction per *named-port resolution*: targets (ingress) or peers (egress) that resolve
  the rule's ports to the same numbers share one conjunction; a pod that resolves none of a
  rule's named ports gets no conjunction but is still isolated;
* each conjunction has clause 1 "from" (ingress: peer prefixes as ``nw_src``; egress: the
  local applied-to pods' IPs), clause 2 "to" (ingress: the local applied-to pods' OVS ports
  as ``reg1``; egress: peer prefixes as ``nw_dst``) and, when the rule names ports, clause 3
  "services" (``tcp,tp_dst=80``, masked ranges for ``endPort``). A match-all peer is the bare
  ``ip`` match, so a conjunction always has at least two clauses;
* isolation: every local applied-to pod of any rule of a direction gets a drop flow in that
  direction's default table, whatever the rule allows (a deny-all rule is isolation only).

The outcome is a flow count of |from| + |to| + |services| + 1 per conjunction instead of the
product. Clause members are *atoms*: small tuples of strings and ints (``("nw_src",
0x0A000000, 8)`` for 10.0.0.0/8, ``("reg1", 3)``, ``("tcp", 80, None)``, ``("ip",)``) that
hash in nanoseconds, unlike `Match` (a 20-field dataclass hashed field by field); the
reconciler shares equal atoms across rules and turns an atom into a `Match` (`atom_match`,
cached) only when it builds a flow. An address atom carries its prefix as integers (network
address, length: `addresses.prefix_key`), parsed once from the CIDR text, and its match is
built from them (`ipv4_prefix_match`); a /0 is never an address atom (it is ``("ip",)``).
Atoms are ordered only by `atom_key` (plain tuple order raises on None against an int).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from antrea.agent.networkpolicy import addresses
from antrea.agent.networkpolicy.cache import CompletedRule
from antrea.agent.openflow.pipeline import TARGET_OFPORT
from antrea.apis.controlplane.types import (
    Direction,
    GroupMember,
    IPBlock,
    NamedPort,
    PodReference,
    Service,
)
from antrea.ovs.openflow.flow import Match, Proto, ipv4_prefix_match

_prefix_key = addresses.prefix_key
Atom = tuple[Any, ...]
ANY: Atom = ("ip",)
ANY_PREFIX: addresses.Prefix = (0, 0)  # 0.0.0.0/0 (its atom is ANY)
# (an enum member looked up on its class costs more than a module global: per rule and flow)
_IP = Proto.IP
_IN = Direction.IN


@lru_cache(maxsize=1 << 17)
def atom_match(atom: Atom) -> Match:
    """The `Match` of a clause atom (cached: atoms repeat across rules and batches)."""
    kind = atom[0]
    if kind in {"nw_src", "nw_dst"}:  # (peer and source prefixes: the bulk of them)
        return ipv4_prefix_match(kind, atom[1], atom[2])
    if kind == "ip":
        return Match(proto=Proto.IP)
    if kind == "reg1":
        return Match(proto=Proto.IP, regs=(TARGET_OFPORT.match(atom[1]),))
    if kind == "icmp_tc":  # ICMP type (and code) of an Antrea-native rule
        return Match(proto=Proto.ICMP, icmp_type=atom[1], icmp_code=atom[2])
    proto, port, mask = atom
    if port is None:
        return Match(proto=Proto(proto))
    return Match(proto=Proto(proto), tp_dst=port, tp_dst_mask=mask)


def _part_key(x: Any) -> tuple[int, Any]:
    return (0, 0) if x is None else (1, x) if type(x) is int else (2, str(x))


def atom_key(atom: Atom) -> tuple[Any, ...]:
    """The sort key of an atom: a total order over every kind, the one used wherever atoms
    are ordered (``sorted(atoms, key=atom_key)``).

    Plain tuple order is not total over atoms: ``("tcp", 80, None)`` (port 80) against
    ``("tcp", 80, 0xFFF0)`` (a range from 80), ``("tcp", None, None)`` (every TCP port)
    against ``("tcp", 80, None)`` or ``("icmp_tc", 8, None)`` against ``("icmp_tc", 8, 0)``
    compare None with an int and raise. Here None sorts before every int and each part is
    tagged with its type (None, int, anything else by its text), so any two atoms compare, and
    distinct atoms of the planner's kinds get distinct keys.
    """
    return (atom[0], *[_part_key(x) for x in atom[1:]])


@dataclass(frozen=True, slots=True)
class ResolvedService:
    """A port match after named-port resolution; ``port is None`` = every port of ``proto``.

    Not orderable: its fields mix None and ints, so a field-wise order raises only for some
    rules (the bug class of `atom_key`); sets and dicts of them need none."""

    proto: str  # tcp | udp | sctp | icmp
    port: int | None = None
    end_port: int | None = None
    icmp_type: int | None = None  # icmp only (port is None then)
    icmp_code: int | None = None

    def atoms(self) -> list[Atom]:
        if self.icmp_type is not None:
            return [("icmp_tc", self.icmp_type, self.icmp_code)]
        if self.port is None:
            return [(self.proto, None, None)]
        if self.end_port is None or self.end_port <= self.port:
            return [(self.proto, self.port, None)]
        return [
            (self.proto, value, None if mask == 0xFFFF else mask)
            for value, mask in addresses.port_range_masks(self.port, self.end_port)
        ]


# None: the rule has no ports (every port and protocol); a frozenset: exactly these.
ServicesKey = frozenset[ResolvedService] | None


class Clauses(NamedTuple):
    """The atom sets of one conjunction (``services`` empty = no services clause).

    A named tuple, not a dataclass: one is built per rule and compared per rule change."""

    from_: frozenset[Atom]
    to: frozenset[Atom]
    services: frozenset[Atom]

    @property
    def n_clauses(self) -> int:
        return 3 if self.services else 2

    def numbered(self) -> Iterable[tuple[int, frozenset[Atom]]]:
        yield 1, self.from_
        yield 2, self.to
        if self.services:
            yield 3, self.services


class RulePlan(NamedTuple):
    conjunctions: dict[ServicesKey, Clauses]
    isolated: frozenset[Atom]  # drop atoms for the direction's default table


def resolve_services(
    services: tuple[Service, ...] | None, ports: Iterable[NamedPort] = ()
) -> ServicesKey:
    """The rule's services for one pod: named ports looked up in that pod's container ports."""
    if services is None:
        return None
    by_name = {(p.name, p.protocol): p.port for p in ports}
    out: set[ResolvedService] = set()
    for s in services:
        proto = str(s.protocol).lower()
        if isinstance(s.port, str):
            number = by_name.get((s.port, s.protocol))
            if number is not None:
                out.add(ResolvedService(proto, number))
        elif s.port is None:
            out.add(ResolvedService(proto, icmp_type=s.icmp_type, icmp_code=s.icmp_code))
        else:
            end = s.end_port if s.end_port is not None and s.end_port > s.port else None
            out.add(ResolvedService(proto, s.port, end))
    return frozenset(out)


def service_atoms(key: ServicesKey) -> frozenset[Atom]:
    if key is None:
        return frozenset()
    # A set, not a sorted list: services mixing `port=None` and numbers do not order.
    return frozenset(a for s in key for a in s.atoms())


def _member_prefixes(m: GroupMember) -> list[addresses.Prefix]:
    return [p for p in (_prefix_key(ip) for ip in m.ips) if p is not None]


def _block_prefix_list(cidr: str, excepts: tuple[str, ...]) -> tuple[addresses.Prefix, ...]:
    if not excepts:
        p = _prefix_key(cidr)
        return () if p is None else (p,)
    return tuple(addresses.net_key(n) for n in addresses.block_prefixes(cidr, excepts))


_block_prefixes = lru_cache(maxsize=1 << 16)(_block_prefix_list)


def _blocks(blocks: Iterable[IPBlock]) -> list[addresses.Prefix]:
    out: list[addresses.Prefix] = []
    for b in blocks:
        out += _block_prefixes(b.cidr, b.except_ if type(b.except_) is tuple else tuple(b.except_))
    return out


def address_atoms(prefixes: Iterable[addresses.Prefix], *, field: str) -> frozenset[Atom]:
    """``nw_src``/``nw_dst`` atoms; a /0 anywhere makes the clause match-all (``ip``)."""
    uniq = set(prefixes)
    if ANY_PREFIX in uniq:
        return _ANY_ATOMS
    return frozenset([(field, value, plen) for value, plen in uniq])


_ANY_ATOMS: frozenset[Atom] = frozenset({ANY})
_NO_ATOMS: frozenset[Atom] = frozenset()


def ofport_atom(ofport: int) -> Atom:
    return ("reg1", ofport)


def isolation_atoms(
    rule: CompletedRule, ofport_of: Callable[[PodReference], int | None]
) -> frozenset[Atom]:
    """The drop atoms of a rule alone: what a rule that cannot be planned still installs.

    Deliberately independent of the conjunction planning (no services, no peers), so a rule
    whose planning fails keeps its applied-to pods isolated.
    """
    if rule.direction is Direction.IN:
        ports = (ofport_of(t.pod) for t in rule.targets)
        return frozenset(ofport_atom(p) for p in ports if p is not None)
    return frozenset(
        ("nw_src", *p) for t in rule.targets for p in _member_prefixes(t) if p != ANY_PREFIX
    )


class PlanMemo:
    """What the rules of one batch share on the target side, worked out once per distinct
    applied-to member set (`CompletedRule.targets`: one object for every rule naming the same
    groups, `RuleCache.completed_many`): ingress, the targets' port atoms grouped by named-port
    resolution, with the services atoms of each group; egress, the targets' source atoms.

    Keyed by the member set's identity (each entry holds the set, so the key stays valid).
    Only valid while the ports it looked up cannot change: the reconciler keeps one per
    stretch of planning between two yields to the event loop and clears it at each yield."""

    __slots__ = ("egress", "ingress")

    def __init__(self) -> None:
        self.ingress: dict[int, tuple[object, object, frozenset[Atom], _TargetGroups]] = {}
        self.egress: dict[int, tuple[object, frozenset[Atom]]] = {}

    def clear(self) -> None:
        self.ingress.clear()
        self.egress.clear()


# ingress targets by named-port resolution: the services, their atoms and the port atoms
_TargetGroups = list[tuple[ServicesKey, frozenset[Atom], frozenset[Atom]]]


def plan_rule(
    rule: CompletedRule,
    ofport_of: Callable[[PodReference], int | None],
    memo: PlanMemo | None = None,
) -> RulePlan:
    """Conjunction clauses and isolation atoms of one rule on this node (`memo`: what the
    rules of the batch planned so far found about the same targets)."""
    r = rule.rule.rule
    if r.direction is _IN:
        return _plan_ingress(rule, r.services, ofport_of, memo)
    return _plan_egress(rule, r.services, memo)


# Plans are built per rule by the ten thousand: the named tuples are made without their
# Python-level __new__ (argument parsing costs more than the tuple).
_new = tuple.__new__


def _ingress_targets(
    targets: frozenset[GroupMember],
    services: tuple[Service, ...] | None,
    ofport_of: Callable[[PodReference], int | None],
) -> tuple[frozenset[Atom], _TargetGroups]:
    """The targets' isolation atoms and their port atoms by named-port resolution (a group
    that resolves none of the rule's named ports is left out: isolated, nothing allowed)."""
    if services is None:
        ports = [ofport_of(t.pod) for t in targets]
        # (a pod not attached to the bridge yet has nothing to match on)
        iso = frozenset([("reg1", p) for p in ports if p is not None])
        return iso, [(None, _NO_ATOMS, iso)]
    isolated: set[Atom] = set()
    groups: dict[ServicesKey, set[Atom]] = {}
    for t in targets:
        ofport = ofport_of(t.pod)
        if ofport is None:
            continue
        a = ("reg1", ofport)
        isolated.add(a)
        groups.setdefault(resolve_services(services, t.ports), set()).add(a)
    return frozenset(isolated), [
        (key, service_atoms(key), frozenset(atoms))
        for key, atoms in groups.items()
        if key is None or key
    ]


def _plan_ingress(
    rule: CompletedRule,
    services: tuple[Service, ...] | None,
    ofport_of: Callable[[PodReference], int | None],
    memo: PlanMemo | None,
) -> RulePlan:
    targets = rule.targets
    if memo is None:
        iso, groups = _ingress_targets(targets, services, ofport_of)
    else:
        hit = memo.ingress.get(id(targets))
        if hit is not None and hit[0] is targets and (hit[1] is services or hit[1] == services):
            iso, groups = hit[2], hit[3]
        else:
            iso, groups = _ingress_targets(targets, services, ofport_of)
            memo.ingress[id(targets)] = (targets, services, iso, groups)
    if not iso:
        return _new(RulePlan, ({}, iso))
    peers = _peer_atoms(rule.peer_members, rule.peer_blocks, "nw_src")
    if not peers:
        return _new(RulePlan, ({}, iso))
    if len(groups) == 1:  # (no ports, or every target resolves them alike)
        key, svc, to = groups[0]
        return _new(RulePlan, ({key: _new(Clauses, (peers, to, svc))}, iso))
    return _new(
        RulePlan,
        ({key: _new(Clauses, (peers, to, svc)) for key, svc, to in groups}, iso),
    )


def _peer_atoms(
    members: frozenset[GroupMember], blocks: tuple[IPBlock, ...], field: str
) -> frozenset[Atom]:
    """The address atoms of a rule's peers (the whole peer clause)."""
    if not members and len(blocks) == 1:  # a single ipBlock: its atoms are cached
        b = blocks[0]
        return _block_atoms(
            b.cidr, b.except_ if type(b.except_) is tuple else tuple(b.except_), field
        )
    prefixes = [p for m in members for p in _member_prefixes(m)] if members else []
    if blocks:
        prefixes += _blocks(blocks)
    return address_atoms(prefixes, field=field)


@lru_cache(maxsize=1 << 16)
def _block_atoms(cidr: str, excepts: tuple[str, ...], field: str) -> frozenset[Atom]:
    if not excepts:  # one prefix (or none: not IPv4)
        p = _prefix_key(cidr)
        if p is None:
            return _NO_ATOMS
        value, plen = p
        return frozenset(((field, value, plen),)) if plen else _ANY_ATOMS
    return address_atoms(_block_prefix_list(cidr, excepts), field=field)


def _plan_egress(
    rule: CompletedRule, services: tuple[Service, ...] | None, memo: PlanMemo | None
) -> RulePlan:
    targets = rule.targets
    hit = memo.egress.get(id(targets)) if memo is not None else None
    if hit is not None and hit[0] is targets:
        sources = hit[1]
    else:
        sources = frozenset(
            ("nw_src", *p) for t in targets for p in _member_prefixes(t) if p != ANY_PREFIX
        )
        if memo is not None:
            memo.egress[id(targets)] = (targets, sources)
    peers: dict[ServicesKey, list[addresses.Prefix]] = defaultdict(list)
    for m in rule.peer_members:
        key = resolve_services(services, m.ports) if services is not None else None
        peers[key].extend(_member_prefixes(m))
    if rule.peer_blocks:
        peers[resolve_services(services)].extend(_blocks(rule.peer_blocks))
    conjs: dict[ServicesKey, Clauses] = {}
    if sources:
        for key, prefixes in peers.items():
            if (key is not None and not key) or not prefixes:
                continue
            conjs[key] = Clauses(
                sources, address_atoms(prefixes, field="nw_dst"), service_atoms(key)
            )
    return RulePlan(conjs, sources)
