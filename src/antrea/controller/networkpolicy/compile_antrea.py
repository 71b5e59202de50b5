"""Antrea-native policies (``crd.antrea.io/v1beta1`` ClusterNetworkPolicy and NetworkPolicy) ->
internal NetworkPolicy.

Like `compile`, the result names groups, never members. Unlike a Kubernetes NetworkPolicy, the
compiled form also depends on a few other objects, passed in an `AntreaContext`: the Tiers (a
policy carries its tier's priority), the ClusterGroups/Groups its peers and appliedTo reference,
and, for ``namespaces: {match: Self}``, the namespace names (the controller recompiles the
affected policies when those change).

Semantics (upstream docs/antrea-network-policy.md):
- Every rule keeps its ``action`` (Allow, Drop, Reject, Pass) and its position in its direction
  (``NetworkPolicyRule.priority``); the policy carries ``tier_priority`` and ``priority``.
- appliedTo at the policy level (``NetworkPolicy.applied_to_groups``) or per rule
  (``NetworkPolicyRule.applied_to_groups``); both at once is invalid.
- In a ClusterNetworkPolicy a ``podSelector``-only peer or appliedTo selects in every namespace;
  in a namespaced policy, in the policy's namespace. ``namespaceSelector`` selects cluster-wide
  in both; with a ``podSelector`` they are ANDed.
- ``namespaces: {match: Self}``: for every namespace N, a copy of the rule applied to the
  appliedTo pods of N whose peer is every pod of N (the appliedTo selector gets the requirement
  ``kubernetes.io/metadata.name In [N]``). In a namespaced policy it is the policy's namespace.
- ``group`` references (ClusterGroup for a ClusterNetworkPolicy, Group in the policy's namespace
  for a namespaced one) expand to their selectors, ipBlocks and child groups.
- An empty ``from``/``to`` matches every peer; no ``ports``/``protocols`` matches everything.
  ``ports`` entries: protocol (TCP default, UDP, SCTP), numeric or named port, endPort;
  ``protocols: [{icmp: {icmpType, icmpCode}}]``.

Anything that cannot be compiled faithfully raises `InvalidAntreaPolicy` with the field path;
the controller then realizes the policy *fail closed* (`fail_closed_policy`).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from antrea.apis.controlplane.types import (
    Direction,
    IPBlock,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyReference,
    NetworkPolicyRule,
    Protocol,
    RuleAction,
    Service,
)
from antrea.controller.networkpolicy.compile import (
    MATCH_ALL_BLOCKS,
    MATCH_ALL_PEER,
    NO_PEER,
    CompiledPolicy,
    GroupResolver,
)
from antrea.controller.networkpolicy.grouping import SelectorGroup
from antrea.errors import AntreaError

ACNP = "AntreaClusterNetworkPolicy"
ANNP = "AntreaNetworkPolicy"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DEFAULT_TIER = "application"
BASELINE_TIER_PRIORITY = 253
STATIC_TIERS: dict[str, int] = {
    "emergency": 50,
    "securityops": 100,
    "networkops": 150,
    "platform": 200,
    "application": 250,
    "baseline": 253,
}
MIN_PRIORITY, MAX_PRIORITY = 1.0, 10000.0
_ACTIONS = {a.value: a for a in RuleAction}
_PORT_PROTOCOLS = {"TCP": Protocol.TCP, "UDP": Protocol.UDP, "SCTP": Protocol.SCTP}


class InvalidAntreaPolicy(AntreaError, ValueError):
    """The policy cannot be compiled as written; ``field`` is its path."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field = field_path


@dataclass
class AntreaContext:
    """What an Antrea-native policy's compilation depends on besides itself."""

    tiers: dict[str, int] = field(default_factory=lambda: dict(STATIC_TIERS))
    cluster_groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> spec
    groups: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (ns, name)
    namespaces: Mapping[str, object] = field(default_factory=dict)  # names (values unused)


@dataclass
class _Acc:
    applied_to: dict[SelectorGroup, None] = field(default_factory=dict)
    address: dict[SelectorGroup, None] = field(default_factory=dict)


def is_cluster_scoped(obj: dict[str, Any]) -> bool:
    return obj.get("kind") == "ClusterNetworkPolicy" or not obj["metadata"].get("namespace")


def source_ref(obj: dict[str, Any]) -> NetworkPolicyReference:
    meta = obj["metadata"]
    cluster = is_cluster_scoped(obj)
    return NetworkPolicyReference(
        ACNP if cluster else ANNP,
        "" if cluster else meta.get("namespace", ""),
        meta.get("name", ""),
        meta["uid"],
    )


def tier_priority(spec: dict[str, Any], ctx: AntreaContext) -> int:
    tier = spec.get("tier") or DEFAULT_TIER
    if not isinstance(tier, str):
        raise InvalidAntreaPolicy("spec.tier", "must be a string")
    prio = ctx.tiers.get(tier)
    if prio is None:
        prio = ctx.tiers.get(tier.lower())
    if prio is None:
        raise InvalidAntreaPolicy("spec.tier", f"tier {tier!r} does not exist")
    return prio


def policy_priority(spec: dict[str, Any]) -> float:
    raw = spec.get("priority")
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InvalidAntreaPolicy("spec.priority", "required, a number")
    value = float(raw)
    if math.isnan(value) or not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise InvalidAntreaPolicy("spec.priority", "must be between 1.0 and 10000.0")
    return value


def compile_antrea_policy(
    obj: dict[str, Any], resolver: GroupResolver, ctx: AntreaContext
) -> CompiledPolicy:
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    cluster = is_cluster_scoped(obj)
    namespace = "" if cluster else meta.get("namespace", "")
    tp = tier_priority(spec, ctx)
    prio = policy_priority(spec)
    policy_at = spec.get("appliedTo") or []
    c = _Compiler(resolver, ctx, cluster, namespace, policy_at=policy_at)
    rules: list[NetworkPolicyRule] = []
    any_rule_at = False
    for key, direction in (("ingress", Direction.IN), ("egress", Direction.OUT)):
        raw_rules = spec.get(key) or []
        if not isinstance(raw_rules, list):
            raise InvalidAntreaPolicy(f"spec.{key}", "must be a list")
        names: set[str] = set()
        for i, raw in enumerate(raw_rules):
            path = f"spec.{key}[{i}]"
            name = raw.get("name") or ""
            if name:
                if name in names:
                    raise InvalidAntreaPolicy(f"{path}.name", f"duplicate rule name {name!r}")
                names.add(name)
            rule_at = raw.get("appliedTo") or []
            if rule_at:
                any_rule_at = True
                if policy_at:
                    raise InvalidAntreaPolicy(
                        f"{path}.appliedTo", "appliedTo at both the policy and the rule level"
                    )
            elif not policy_at:
                raise InvalidAntreaPolicy(f"{path}.appliedTo", "required without spec.appliedTo")
            compiled = c.rule(raw, direction=direction, index=i, path=path, rule_at=rule_at, tp=tp)
            if raw.get("enableLogging"):  # audit log (agent/auditlog.py), with its label
                label = str(raw.get("logLabel") or "")
                compiled = [replace(r, enable_logging=True, log_label=label) for r in compiled]
            rules.extend(compiled)
    if not policy_at and not any_rule_at:
        raise InvalidAntreaPolicy("spec.appliedTo", "required")
    policy_atgs = c.applied_to(policy_at, "spec.appliedTo") if policy_at else ()
    policy = NetworkPolicy(
        name=meta["uid"],
        source_ref=source_ref(obj),
        rules=tuple(rules),
        applied_to_groups=tuple(g.name for g in policy_atgs),
        generation=int(meta.get("generation") or 0),
        tier_priority=tp,
        priority=prio,
    )
    return CompiledPolicy(policy, tuple(c.acc.applied_to), tuple(c.acc.address))


def fail_closed_policy(
    obj: dict[str, Any], resolver: GroupResolver, ctx: AntreaContext
) -> CompiledPolicy | None:
    """What an invalid policy is realized as: its appliedTo pods drop everything.

    The policy keeps its place (its tier and priority when readable, else the first position of
    the emergency tier) and every direction it has rules for becomes one Drop-all rule, so a
    policy that cannot be realized as written never opens what it was meant to close. None when
    not even the appliedTo can be read (nothing is selected then).
    """
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    cluster = is_cluster_scoped(obj)
    namespace = "" if cluster else meta.get("namespace", "")
    try:
        tp = tier_priority(spec, ctx)
    except InvalidAntreaPolicy:
        tp = STATIC_TIERS["emergency"]
    try:
        prio = policy_priority(spec)
    except InvalidAntreaPolicy:
        prio = MIN_PRIORITY
    c = _Compiler(resolver, ctx, cluster, namespace, lenient=True)
    at: list[dict[str, Any]] = list(spec.get("appliedTo") or [])
    for key in ("ingress", "egress"):
        for raw in spec.get(key) or []:
            if isinstance(raw, dict):
                at.extend(raw.get("appliedTo") or [])
    try:
        atgs = c.applied_to(at, "spec.appliedTo")
    except Exception:
        return None
    if not atgs:
        return None
    directions = [
        d for k, d in (("ingress", Direction.IN), ("egress", Direction.OUT)) if spec.get(k)
    ]
    rules = tuple(
        NetworkPolicyRule(
            d,
            MATCH_ALL_PEER if d is Direction.IN else NO_PEER,
            MATCH_ALL_PEER if d is Direction.OUT else NO_PEER,
            None,
            name="invalid-policy-drop-all",
            priority=0,
            action=RuleAction.DROP,
        )
        for d in directions or (Direction.IN, Direction.OUT)
    )
    policy = NetworkPolicy(
        name=meta["uid"],
        source_ref=source_ref(obj),
        rules=rules,
        applied_to_groups=tuple(g.name for g in atgs),
        generation=int(meta.get("generation") or 0),
        tier_priority=tp if tp != BASELINE_TIER_PRIORITY else STATIC_TIERS["emergency"],
        priority=prio,
    )
    return CompiledPolicy(policy, tuple(c.acc.applied_to), tuple(c.acc.address))


class _Compiler:
    def __init__(
        self,
        resolver: GroupResolver,
        ctx: AntreaContext,
        cluster: bool,
        namespace: str,
        *,
        policy_at: list[Any] | None = None,
        lenient: bool = False,
    ) -> None:
        self.policy_at: list[Any] = policy_at or []
        self.r = resolver
        self.ctx = ctx
        self.cluster = cluster
        self.namespace = namespace
        self.lenient = lenient
        self.acc = _Acc()

    # -- selectors ------------------------------------------------------------------------

    def _group(
        self, pod: dict[str, Any] | None, ns: dict[str, Any] | None, scope: str | None
    ) -> SelectorGroup:
        """``scope`` = the namespace a podSelector-only selection is confined to (None: all)."""
        if ns is None and scope is not None:
            return self.r.group(scope, self.r.selector(pod), None)
        return self.r.group("", self.r.selector(pod), self.r.selector(ns or {}))

    def _pod_scope(self, group_ns: str | None = None) -> str | None:
        if group_ns is not None:
            return group_ns
        return None if self.cluster else self.namespace

    # -- appliedTo ------------------------------------------------------------------------

    def applied_to(self, entries: list[Any], path: str) -> tuple[SelectorGroup, ...]:
        out: dict[SelectorGroup, None] = {}
        for i, e in enumerate(entries):
            p = f"{path}[{i}]"
            if not isinstance(e, dict):
                raise InvalidAntreaPolicy(p, "must be an object")
            for g in self._selection(e, p, applied_to=True, scope_ns=None):
                out[g] = None
        self.acc.applied_to.update(out)
        return tuple(out)

    def _selection(
        self, e: dict[str, Any], path: str, *, applied_to: bool, scope_ns: str | None
    ) -> list[SelectorGroup]:
        """Groups of one peer/appliedTo entry made of selectors or a group reference."""
        unsupported = [
            k
            for k in ("serviceAccount", "nodeSelector", "externalEntitySelector", "service", "fqdn")
            if e.get(k) is not None
        ]
        if unsupported and not self.lenient:
            raise InvalidAntreaPolicy(f"{path}.{unsupported[0]}", "not supported")
        ref = e.get("group")
        if ref is not None:
            if len([k for k in e if e.get(k) is not None]) > 1 and not self.lenient:
                raise InvalidAntreaPolicy(f"{path}.group", "cannot be combined with other fields")
            return self._group_ref(ref, f"{path}.group", applied_to=applied_to, depth=0)[0]
        pod = e.get("podSelector")
        ns = e.get("namespaceSelector")
        if ns is not None and not self.cluster and applied_to:
            raise InvalidAntreaPolicy(
                f"{path}.namespaceSelector", "not allowed in a namespaced policy's appliedTo"
            )
        if pod is None and ns is None:
            if applied_to and not self.lenient:
                raise InvalidAntreaPolicy(path, "must select pods")
            return []
        return [self._group(pod, ns, self._pod_scope(scope_ns))]

    def _group_ref(
        self, name: Any, path: str, *, applied_to: bool, depth: int
    ) -> tuple[list[SelectorGroup], list[IPBlock]]:
        if not isinstance(name, str):
            raise InvalidAntreaPolicy(path, "must be a group name")
        if self.cluster:
            spec = self.ctx.cluster_groups.get(name)
            kind, group_ns = "ClusterGroup", None
        else:
            spec = self.ctx.groups.get((self.namespace, name))
            kind, group_ns = "Group", self.namespace
        if spec is None:
            raise InvalidAntreaPolicy(path, f"{kind} {name!r} does not exist")
        if depth > 1:
            raise InvalidAntreaPolicy(path, "childGroups may only be one level deep")
        groups: list[SelectorGroup] = []
        blocks: list[IPBlock] = []
        children = spec.get("childGroups") or []
        for child in children:
            g, b = self._group_ref(
                child, f"{path}.childGroups", applied_to=applied_to, depth=depth + 1
            )
            groups += g
            blocks += b
        ip_blocks = spec.get("ipBlocks") or ([spec["ipBlock"]] if spec.get("ipBlock") else [])
        if ip_blocks:
            if applied_to:
                raise InvalidAntreaPolicy(path, f"{kind} {name!r} with ipBlocks in appliedTo")
            for b in ip_blocks:
                blocks.append(_ip_block(b, path))
        pod = spec.get("podSelector")
        ns = spec.get("namespaceSelector")
        if pod is not None or ns is not None:
            if ns is None and group_ns is None:
                groups.append(self._group(pod, {}, None))
            else:
                groups.append(self._group(pod, ns, group_ns))
        for k in ("serviceReference", "externalEntitySelector"):
            if spec.get(k) is not None:
                raise InvalidAntreaPolicy(path, f"{kind} {name!r}: {k} not supported")
        return groups, blocks

    # -- rules ----------------------------------------------------------------------------

    def rule(
        self,
        raw: dict[str, Any],
        *,
        direction: Direction,
        index: int,
        path: str,
        rule_at: list[Any],
        tp: int,
    ) -> list[NetworkPolicyRule]:
        action = _ACTIONS.get(raw.get("action") or "")
        if action is None:
            raise InvalidAntreaPolicy(f"{path}.action", "must be Allow, Drop, Reject or Pass")
        if action is RuleAction.PASS and tp == BASELINE_TIER_PRIORITY:
            raise InvalidAntreaPolicy(f"{path}.action", "Pass is not allowed in the baseline tier")
        for k in ("l7Protocols", "toServices"):
            if raw.get(k):
                raise InvalidAntreaPolicy(f"{path}.{k}", "not supported")
        services = _services(raw.get("ports"), raw.get("protocols"), path)
        peer_key = "from" if direction is Direction.IN else "to"
        peers = raw.get(peer_key) or []
        name = raw.get("name") or ""
        rule_atgs = self.applied_to(rule_at, f"{path}.appliedTo") if rule_at else ()
        groups: dict[SelectorGroup, None] = {}
        blocks: dict[IPBlock, None] = {}
        self_peer = False
        for j, p in enumerate(peers):
            pp = f"{path}.{peer_key}[{j}]"
            if not isinstance(p, dict):
                raise InvalidAntreaPolicy(pp, "must be an object")
            nss = p.get("namespaces")
            if nss is not None:
                match = nss.get("match") if isinstance(nss, dict) else None
                if match != "Self" or nss.get("sameLabels"):
                    raise InvalidAntreaPolicy(f"{pp}.namespaces", "only match: Self is supported")
                if p.get("namespaceSelector") is not None:
                    raise InvalidAntreaPolicy(pp, "namespaces and namespaceSelector together")
                if self.cluster:
                    self_peer = True
                    if p.get("podSelector") is not None:
                        raise InvalidAntreaPolicy(
                            f"{pp}.podSelector", "not supported with namespaces: {match: Self}"
                        )
                    continue
                groups[self._group(p.get("podSelector"), None, self.namespace)] = None
                continue
            block = p.get("ipBlock")
            if block is not None:
                blocks[_ip_block(block, f"{pp}.ipBlock")] = None
                continue
            if p.get("group") is not None:
                gs, bs = self._group_ref(p["group"], f"{pp}.group", applied_to=False, depth=0)
                groups.update(dict.fromkeys(gs))
                blocks.update(dict.fromkeys(bs))
                continue
            sel = self._selection(p, pp, applied_to=False, scope_ns=None)
            if not sel:
                raise InvalidAntreaPolicy(pp, "selects nothing (no known field)")
            groups.update(dict.fromkeys(sel))
        out: list[NetworkPolicyRule] = []
        if not self_peer:
            peer = (
                MATCH_ALL_PEER
                if not peers
                else NetworkPolicyPeer(tuple(g.name for g in groups), tuple(blocks))
            )
            self.acc.address.update(groups)
            out.append(
                self._make(
                    direction,
                    peer=peer,
                    services=services,
                    name=name,
                    index=index,
                    action=action,
                    atgs=rule_atgs,
                )
            )
            return out
        # namespaces: {match: Self} in a cluster policy: one rule per namespace.
        base_at = rule_at or self.policy_at
        for ns_name in sorted(self.ctx.namespaces):
            ns_groups = dict(groups)
            ns_groups[self.r.group(ns_name, self.r.selector({}), None)] = None
            at = self._restrict(base_at, ns_name, path)
            if not at:
                continue
            self.acc.applied_to.update(dict.fromkeys(at))
            self.acc.address.update(ns_groups)
            peer = NetworkPolicyPeer(tuple(g.name for g in ns_groups), tuple(blocks))
            out.append(
                self._make(
                    direction,
                    peer=peer,
                    services=services,
                    name=name,
                    index=index,
                    action=action,
                    atgs=tuple(at),
                )
            )
        return out

    def _restrict(self, entries: list[Any], ns_name: str, path: str) -> list[SelectorGroup]:
        """The appliedTo entries confined to namespace ``ns_name`` (by its name label)."""
        out: list[SelectorGroup] = []
        req = {"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": [ns_name]}
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or e.get("group") is not None:
                raise InvalidAntreaPolicy(
                    f"{path}.appliedTo[{i}]", "group appliedTo with namespaces: {match: Self}"
                )
            ns = dict(e.get("namespaceSelector") or {})
            ns["matchExpressions"] = [*(ns.get("matchExpressions") or []), req]
            out.append(self._group(e.get("podSelector"), ns, None))
        return out

    def _make(
        self,
        direction: Direction,
        *,
        peer: NetworkPolicyPeer,
        services: tuple[Service, ...] | None,
        name: str,
        index: int,
        action: RuleAction,
        atgs: tuple[SelectorGroup, ...],
    ) -> NetworkPolicyRule:
        return NetworkPolicyRule(
            direction,
            peer if direction is Direction.IN else NO_PEER,
            peer if direction is Direction.OUT else NO_PEER,
            services,
            name=name,
            priority=index,
            action=action,
            applied_to_groups=tuple(g.name for g in atgs),
        )


def uses_self(obj: dict[str, Any]) -> bool:
    spec = obj.get("spec") or {}
    for key, peer_key in (("ingress", "from"), ("egress", "to")):
        for raw in spec.get(key) or []:
            for p in (raw or {}).get(peer_key) or []:
                if isinstance(p, dict) and p.get("namespaces") is not None:
                    return True
    return False


def _ip_block(b: Any, path: str) -> IPBlock:
    if not isinstance(b, dict) or not isinstance(b.get("cidr"), str):
        raise InvalidAntreaPolicy(f"{path}.cidr", "required")
    try:
        net = ipaddress.ip_network(b["cidr"], strict=False)
    except ValueError as exc:
        raise InvalidAntreaPolicy(f"{path}.cidr", str(exc)) from None
    excepts: list[str] = []
    for i, e in enumerate(b.get("except") or []):
        try:
            en = ipaddress.ip_network(e, strict=False)
        except (ValueError, TypeError) as exc:
            raise InvalidAntreaPolicy(f"{path}.except[{i}]", str(exc)) from None
        if en.version != net.version or not en.subnet_of(net):  # type: ignore[arg-type]
            raise InvalidAntreaPolicy(f"{path}.except[{i}]", f"must be inside cidr {b['cidr']}")
        excepts.append(e)
    return IPBlock(b["cidr"], tuple(excepts))


def _services(ports: Any, protocols: Any, path: str) -> tuple[Service, ...] | None:
    if not ports and not protocols:
        return None
    out: list[Service] = []
    for i, e in enumerate(ports or []):
        p = f"{path}.ports[{i}]"
        if not isinstance(e, dict):
            raise InvalidAntreaPolicy(p, "must be an object")
        proto = _PORT_PROTOCOLS.get(e.get("protocol") or "TCP")
        if proto is None:
            raise InvalidAntreaPolicy(f"{p}.protocol", "must be TCP, UDP or SCTP")
        port = e.get("port")
        end = e.get("endPort")
        if port is not None and not isinstance(port, int | str):
            raise InvalidAntreaPolicy(f"{p}.port", "must be a number or a name")
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        if end is not None and (
            not isinstance(port, int) or not isinstance(end, int) or end < port
        ):
            raise InvalidAntreaPolicy(f"{p}.endPort", "needs a numeric port <= endPort")
        out.append(Service(proto, port, end))
    for i, e in enumerate(protocols or []):
        p = f"{path}.protocols[{i}]"
        icmp = e.get("icmp") if isinstance(e, dict) else None
        if icmp is None:
            raise InvalidAntreaPolicy(p, "only icmp is supported")
        t, c = icmp.get("icmpType"), icmp.get("icmpCode")
        if c is not None and t is None:
            raise InvalidAntreaPolicy(f"{p}.icmp.icmpCode", "needs icmpType")
        out.append(Service(Protocol.ICMP, None, None, t, c))
    return tuple(out)


__all__ = [
    "MATCH_ALL_BLOCKS",
    "AntreaContext",
    "InvalidAntreaPolicy",
    "compile_antrea_policy",
    "fail_closed_policy",
    "uses_self",
]
