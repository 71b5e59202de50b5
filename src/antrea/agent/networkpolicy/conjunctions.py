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
product. `Clauses` values are plain frozensets of `Match`; the reconciler shares equal matches
across rules.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from antrea.agent.networkpolicy import addresses
from antrea.agent.networkpolicy.cache import CompletedRule
from antrea.agent.networkpolicy.tables import TARGET_REG
from antrea.apis.controlplane.types import (
    Direction,
    GroupMember,
    IPBlock,
    NamedPort,
    PodReference,
    Service,
)
from antrea.ovs.openflow.flow import Match, RegMatch

IP_ANY = Match(proto="ip")


@dataclass(frozen=True, slots=True, order=True)
class ResolvedService:
    """A port match after named-port resolution; ``port is None`` = every port of ``proto``."""

    proto: str  # tcp | udp | sctp
    port: int | None = None
    end_port: int | None = None

    def matches(self) -> list[Match]:
        if self.port is None:
            return [Match(proto=self.proto)]
        if self.end_port is None or self.end_port <= self.port:
            return [Match(proto=self.proto, tp_dst=self.port)]
        out = []
        for value, mask in addresses.port_range_masks(self.port, self.end_port):
            if mask == 0xFFFF:
                out.append(Match(proto=self.proto, tp_dst=value))
            else:
                out.append(Match(proto=self.proto, tp_dst=value, tp_dst_mask=mask))
        return out


# None: the rule has no ports (every port and protocol); a frozenset: exactly these.
ServicesKey = frozenset[ResolvedService] | None


@dataclass(frozen=True, slots=True)
class Clauses:
    """The match sets of one conjunction (``services`` empty = no services clause)."""

    from_: frozenset[Match]
    to: frozenset[Match]
    services: frozenset[Match]

    @property
    def n_clauses(self) -> int:
        return 3 if self.services else 2

    def numbered(self) -> Iterable[tuple[int, frozenset[Match]]]:
        yield 1, self.from_
        yield 2, self.to
        if self.services:
            yield 3, self.services


@dataclass(frozen=True, slots=True)
class RulePlan:
    conjunctions: dict[ServicesKey, Clauses]
    isolated: frozenset[Match]  # drop matches for the direction's default table


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
            out.add(ResolvedService(proto))
        else:
            end = s.end_port if s.end_port is not None and s.end_port > s.port else None
            out.add(ResolvedService(proto, s.port, end))
    return frozenset(out)


def service_matches(key: ServicesKey) -> frozenset[Match]:
    if key is None:
        return frozenset()
    return frozenset(m for s in sorted(key) for m in s.matches())


def _member_nets(m: GroupMember) -> list[addresses.IPv4Net]:
    return [n for n in (addresses.parse_v4(ip) for ip in m.ips) if n is not None]


def _block_nets(blocks: Iterable[IPBlock]) -> list[addresses.IPv4Net]:
    out: list[addresses.IPv4Net] = []
    for b in blocks:
        out.extend(addresses.block_prefixes(b.cidr, b.except_))
    return out


def address_matches(nets: Iterable[addresses.IPv4Net], *, field: str) -> frozenset[Match]:
    """``ip,nw_src=...`` (or nw_dst) per prefix; a /0 anywhere makes the clause match-all."""
    uniq = set(nets)
    if addresses.ANY_V4 in uniq:
        return frozenset({IP_ANY})
    if field == "nw_src":
        return frozenset(Match(proto="ip", nw_src=n) for n in uniq)
    return frozenset(Match(proto="ip", nw_dst=n) for n in uniq)


def ofport_match(ofport: int) -> Match:
    return Match(proto="ip", regs=(RegMatch(TARGET_REG, ofport),))


def plan_rule(rule: CompletedRule, ofport_of: Callable[[PodReference], int | None]) -> RulePlan:
    """Conjunction clauses and isolation matches of one rule on this node."""
    services = rule.rule.rule.services
    if rule.direction is Direction.IN:
        return _plan_ingress(rule, services, ofport_of)
    return _plan_egress(rule, services)


def _plan_ingress(
    rule: CompletedRule,
    services: tuple[Service, ...] | None,
    ofport_of: Callable[[PodReference], int | None],
) -> RulePlan:
    groups: dict[ServicesKey, set[Match]] = defaultdict(set)
    isolated: set[Match] = set()
    for t in rule.targets:
        ofport = ofport_of(t.pod)
        if ofport is None:
            continue  # not attached to the bridge (yet): nothing to match on
        m = ofport_match(ofport)
        isolated.add(m)
        groups[resolve_services(services, t.ports)].add(m)
    nets = [n for m in rule.peer_members for n in _member_nets(m)] + _block_nets(rule.peer_blocks)
    peers = address_matches(nets, field="nw_src")
    conjs: dict[ServicesKey, Clauses] = {}
    if peers:
        for key, targets in groups.items():
            if key is not None and not key:
                continue  # no named port resolved on these pods: isolated, nothing allowed
            conjs[key] = Clauses(peers, frozenset(targets), service_matches(key))
    return RulePlan(conjs, frozenset(isolated))


def _plan_egress(rule: CompletedRule, services: tuple[Service, ...] | None) -> RulePlan:
    sources = address_matches((n for t in rule.targets for n in _member_nets(t)), field="nw_src")
    if IP_ANY in sources:  # a pod without a usable IP cannot be matched; never isolate "all"
        sources = frozenset(m for m in sources if m != IP_ANY)
    peers: dict[ServicesKey, list[addresses.IPv4Net]] = defaultdict(list)
    for m in rule.peer_members:
        peers[resolve_services(services, m.ports)].extend(_member_nets(m))
    if rule.peer_blocks:
        peers[resolve_services(services)].extend(_block_nets(rule.peer_blocks))
    conjs: dict[ServicesKey, Clauses] = {}
    if sources:
        for key, nets in peers.items():
            if (key is not None and not key) or not nets:
                continue
            conjs[key] = Clauses(
                sources, address_matches(nets, field="nw_dst"), service_matches(key)
            )
    return RulePlan(conjs, sources)
