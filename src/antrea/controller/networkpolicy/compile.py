"""Kubernetes NetworkPolicy (decoded ``networking.k8s.io/v1`` JSON) -> internal NetworkPolicy.

The result depends only on the policy itself: peers and applied-to selectors become group
*names* (deterministic, from the normalized selector), never members, so a pod event never
recompiles a policy. Group lookup/creation is delegated to a `GroupResolver`, which is how the
controller learns which groups a policy uses.

Semantics (Kubernetes NetworkPolicy, as upstream Antrea compiles it):
- ``policyTypes`` missing or empty defaults like the API server: Ingress always, Egress when the
  policy has egress rules. Rules of a direction not listed in ``policyTypes`` are ignored.
- A listed direction without rules becomes a deny-all rule (empty peer, all services).
- ``from``/``to`` missing or empty: the match-all peer ``ipBlock 0.0.0.0/0``; for an egress rule
  with a named port it also carries the all-pods AddressGroup, whose members' named ports let the
  agent resolve the name.
- Peers: ``podSelector`` alone selects in the policy's namespace; ``namespaceSelector`` alone all
  pods of matching namespaces; both together are ANDed; ``ipBlock`` stays inline in the rule.
  A peer with none of these (rejected by the API server) selects nothing.
- Group names and ipBlocks keep the order of the peers, without duplicates.
- ``ports`` missing or empty: ``services=None`` (all). Protocol defaults to TCP; a string port is a
  named port (resolved by the agent); ``endPort`` is kept only with a numeric port. An entry with an
  unknown protocol is dropped (it matches nothing).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple
from typing import Protocol as TypingProtocol

from antrea.apis.controlplane.types import (
    Direction,
    IPBlock,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyReference,
    NetworkPolicyRule,
    Protocol,
    Service,
    new_block,
    new_peer,
    new_rule,
)
from antrea.controller.networkpolicy.grouping import SelectorGroup
from antrea.controller.networkpolicy.selectors import Selector

SOURCE_TYPE = "K8sNetworkPolicy"
MATCH_ALL_BLOCKS = (IPBlock("0.0.0.0/0"),)
MATCH_ALL_PEER = NetworkPolicyPeer(ip_blocks=MATCH_ALL_BLOCKS)
# Passed explicitly for the unused side of a rule: the field's default_factory would build a new
# empty peer per rule, which makes constructing a rule four times slower.
NO_PEER = NetworkPolicyPeer()
DENY_ALL_IN = NetworkPolicyRule(direction=Direction.IN)
DENY_ALL_OUT = NetworkPolicyRule(direction=Direction.OUT)
# The rules of an isolate-only policy (a default deny), shared by all of them.
_DENY_IN_OUT = (DENY_ALL_IN, DENY_ALL_OUT)
_PROTOCOLS = {"TCP": Protocol.TCP, "UDP": Protocol.UDP, "SCTP": Protocol.SCTP}
# A peer of one ipBlock (the bulk of large policies) and every rule are built with the
# positional constructors of `types` (new_peer, new_block, new_rule).
_IN, _OUT = Direction.IN, Direction.OUT


class GroupResolver(TypingProtocol):
    """What the compiler needs from the controller: interned selectors and groups by selector."""

    def selector(self, raw: dict[str, Any] | None) -> Selector: ...

    def group(self, namespace: str, pod: Selector, ns: Selector | None) -> SelectorGroup: ...


class CompiledPolicy(NamedTuple):
    policy: NetworkPolicy
    applied_to: tuple[SelectorGroup, ...]
    address: tuple[SelectorGroup, ...]  # distinct, in order of first use


LOGGING_ANNOTATION = "networkpolicy.antrea.io/enable-logging"


def compile_policy(
    np: dict[str, Any], resolver: GroupResolver, *, enable_logging: bool = False
) -> CompiledPolicy:
    """``enable_logging``: the policy's Namespace has `LOGGING_ANNOTATION` "true" (every rule
    and the isolation it creates are audit-logged)."""
    meta = np["metadata"]
    spec = np.get("spec") or {}
    namespace: str = meta.get("namespace", "")
    uid: str = meta["uid"]
    ingress = spec.get("ingress") or ()
    egress = spec.get("egress") or ()
    types = spec.get("policyTypes")
    if types:
        has_in = "Ingress" in types
        has_out = "Egress" in types
    else:
        has_in, has_out = True, bool(egress)

    applied_to = resolver.group(namespace, resolver.selector(spec.get("podSelector")), None)
    # Shared with a peer of just the same group (``from: [podSelector: <the same>]``).
    applied_to_names = (applied_to.name,)
    address: dict[SelectorGroup, None] = {}
    rules: list[NetworkPolicyRule] = []
    logged = enable_logging
    if has_in:
        if ingress:
            for rule in ingress:
                ports = rule.get("ports")
                peers = rule.get("from")
                if (
                    not ports
                    and peers
                    and len(peers) == 1
                    and len(peer0 := peers[0]) == 1
                    and (block := peer0.get("ipBlock")) is not None
                ):
                    # The bulk of large policies: one ipBlock, all ports.
                    cidr, exc = block["cidr"], block.get("except")
                    peer = new_peer((), (new_block(cidr, tuple(exc) if exc else ()),))
                    rules.append(new_rule(_IN, peer, NO_PEER, None, "", -1, None, (), logged, ""))
                    continue
                services = _services(ports)
                peer = _peer(
                    peers, namespace, resolver, address, applied_to_names, egress_named=False
                )
                rules.append(new_rule(_IN, peer, NO_PEER, services, "", -1, None, (), logged, ""))
        else:
            rules.append(DENY_ALL_IN)
    if has_out:
        if egress:
            for rule in egress:
                services = _services(rule.get("ports"))
                named = services is not None and any(isinstance(s.port, str) for s in services)
                peer = _peer(
                    rule.get("to"), namespace, resolver, address, applied_to_names,
                    egress_named=named,
                )  # fmt: skip
                rules.append(new_rule(_OUT, NO_PEER, peer, services, "", -1, None, (), logged, ""))
        else:
            rules.append(DENY_ALL_OUT)
    if logged:  # (the deny-all rules are shared values)
        rules = [
            r if r.enable_logging else dataclasses.replace(r, enable_logging=True) for r in rules
        ]
    rules_tuple = (
        _DENY_IN_OUT
        if len(rules) == 2 and rules[0] is DENY_ALL_IN and rules[1] is DENY_ALL_OUT
        else tuple(rules)
    )
    policy = NetworkPolicy(
        name=uid,
        source_ref=NetworkPolicyReference(SOURCE_TYPE, namespace, meta.get("name", ""), uid),
        rules=rules_tuple,
        applied_to_groups=applied_to_names,
        generation=int(meta.get("generation") or 0),
    )
    applied = (applied_to,)
    used = tuple(address)
    return CompiledPolicy(policy, applied, applied if used == applied else used)


def _peer(
    peers: list[dict[str, Any]] | None,
    namespace: str,
    resolver: GroupResolver,
    address: dict[SelectorGroup, None],
    applied_to_names: tuple[str],
    *,
    egress_named: bool,
) -> NetworkPolicyPeer:
    if not peers:
        if not egress_named:
            return MATCH_ALL_PEER
        everyone = resolver.selector(None)
        group = resolver.group("", everyone, everyone)
        address[group] = None
        return NetworkPolicyPeer(address_groups=(group.name,), ip_blocks=MATCH_ALL_BLOCKS)
    if len(peers) == 1 and len(peers[0]) == 1:
        block = peers[0].get("ipBlock")
        if block is not None:  # one ipBlock alone: nothing to deduplicate, no group
            return new_peer((), (new_block(block["cidr"], tuple(block.get("except") or ())),))
    groups: dict[SelectorGroup, None] = {}
    blocks: dict[IPBlock, None] = {}
    for peer in peers:
        block = peer.get("ipBlock")
        if block is not None:
            blocks[IPBlock(block["cidr"], tuple(block.get("except") or ()))] = None
            continue
        pod_sel = peer.get("podSelector")
        ns_sel = peer.get("namespaceSelector")
        if ns_sel is not None:
            group = resolver.group("", resolver.selector(pod_sel), resolver.selector(ns_sel))
        elif pod_sel is not None:
            group = resolver.group(namespace, resolver.selector(pod_sel), None)
        else:
            continue
        groups[group] = None
    address.update(groups)
    names = tuple(g.name for g in groups)
    if names == applied_to_names:
        names = applied_to_names
    return NetworkPolicyPeer(address_groups=names, ip_blocks=tuple(blocks))


def _services(ports: list[dict[str, Any]] | None) -> tuple[Service, ...] | None:
    if not ports:
        return None
    services: list[Service] = []
    for entry in ports:
        proto = _PROTOCOLS.get(entry.get("protocol") or "TCP")
        if proto is None:
            continue
        port = entry.get("port")
        end_port = entry.get("endPort") if isinstance(port, int) else None
        services.append(Service(proto, port, end_port))
    return tuple(services)
