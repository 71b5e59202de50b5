"""The agent's rule cache: what the controller sent, split into rules, with dirty marking.

Like Antrea's ``ruleCache`` (pkg/agent/controller/networkpolicy/cache.go), policies are split
into rules and each rule gets an ID that is a hash of its content, the applied-to groups and
the policy UID. A content change therefore *is* a new rule (old ID deleted, new ID added), and
an unchanged rule keeps its ID, its conjunction and its flows across policy updates and
reconnections. A rule is realizable ("complete") only once every group it references has
arrived; until then the reconciler leaves whatever it realized before.

Everything that can change a rule's flows marks it dirty: the policy itself, any address or
applied-to group it references, a local pod of one of its applied-to groups getting (or
losing) its OVS port. The controller drains the dirty set in batches.

Reconnection: `begin_resync` starts recording which objects the new stream re-sends;
`end_resync` (at its BOOKMARK) deletes the others. Objects that come back unchanged do not
mark anything dirty, so flows that are still right are never touched.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from antrea.apis.controlplane.codec import EventType, WatchEvent
from antrea.apis.controlplane.types import (
    AddressGroup,
    AddressGroupPatch,
    AppliedToGroup,
    Direction,
    GroupMember,
    IPBlock,
    Kind,
    NetworkPolicy,
    NetworkPolicyRule,
    PodReference,
)

log = structlog.get_logger(__name__)

K = TypeVar("K")


def rule_id(policy_uid: str, rule: NetworkPolicyRule, applied_to: tuple[str, ...]) -> str:
    """First 16 hex digits of SHA-1 over the rule content, its applied-to groups and policy UID.

    The dataclass reprs are deterministic (tuples, frozen values), so equal content gives equal
    IDs across processes; the rule's index in the policy is deliberately not part of it.
    """
    text = f"{policy_uid}|{rule!r}|{sorted(applied_to)!r}"
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class CacheRule:
    id: str
    policy: str  # internal NetworkPolicy name (the source policy's UID)
    rule: NetworkPolicyRule
    applied_to_groups: tuple[str, ...]
    index: int  # position in the policy, for display only
    # Antrea-native rules: the policy's tier and priority (order of evaluation).
    tier_priority: int | None = None
    policy_priority: float | None = None

    @property
    def direction(self) -> Direction:
        return self.rule.direction


@dataclass(frozen=True, slots=True)
class CompletedRule:
    """A rule with its groups flattened: what the reconciler turns into flows."""

    rule: CacheRule
    peer_members: frozenset[GroupMember]
    peer_blocks: tuple[IPBlock, ...]
    targets: frozenset[GroupMember]

    @property
    def id(self) -> str:
        return self.rule.id

    @property
    def direction(self) -> Direction:
        return self.rule.direction


@dataclass
class RuleCache:
    policies: dict[str, NetworkPolicy] = field(default_factory=dict)
    rules: dict[str, CacheRule] = field(default_factory=dict)
    address_groups: dict[str, set[GroupMember]] = field(default_factory=dict)
    applied_to_groups: dict[str, set[GroupMember]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    _policy_rules: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _ag_rules: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _atg_rules: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _pod_atgs: dict[PodReference, set[str]] = field(default_factory=lambda: defaultdict(set))
    _resync: dict[Kind, set[str]] | None = None

    # -- events ---------------------------------------------------------------------------
    def apply(self, ev: WatchEvent) -> None:
        """Apply one ADDED/MODIFIED/DELETED event (BOOKMARK/ERROR are the controller's)."""
        if ev.type not in (EventType.ADDED, EventType.MODIFIED, EventType.DELETED):
            return
        obj = ev.object
        if ev.type is EventType.MODIFIED and obj is None and ev.patch is not None:
            self.patch_address_group(ev.patch)
            return
        if obj is None:
            log.warning("event_without_object_ignored", type=str(ev.type), kind=str(ev.kind))
            return
        if self._resync is not None and ev.type is not EventType.DELETED:
            kind = ev.kind or _kind_of(obj)
            self._resync[kind].add(obj.name)
        if isinstance(obj, NetworkPolicy):
            if ev.type is EventType.DELETED:
                self.delete_policy(obj.name)
            else:
                self.set_policy(obj)
        elif isinstance(obj, AddressGroup):
            if ev.type is EventType.DELETED:
                self.delete_address_group(obj.name)
            else:
                self.set_address_group(obj.name, set(obj.members))
        elif ev.type is EventType.DELETED:
            self.delete_applied_to_group(obj.name)
        else:
            self.set_applied_to_group(obj.name, set(obj.members))

    def begin_resync(self) -> None:
        self._resync = {
            Kind.NETWORK_POLICY: set(),
            Kind.ADDRESS_GROUP: set(),
            Kind.APPLIED_TO_GROUP: set(),
        }

    def end_resync(self) -> int:
        """Forget every object the new stream did not re-send; returns how many."""
        if self._resync is None:
            return 0
        seen, self._resync = self._resync, None
        gone = 0
        for name in [n for n in self.policies if n not in seen[Kind.NETWORK_POLICY]]:
            self.delete_policy(name)
            gone += 1
        for name in [n for n in self.address_groups if n not in seen[Kind.ADDRESS_GROUP]]:
            self.delete_address_group(name)
            gone += 1
        for name in [n for n in self.applied_to_groups if n not in seen[Kind.APPLIED_TO_GROUP]]:
            self.delete_applied_to_group(name)
            gone += 1
        return gone

    # -- policies -------------------------------------------------------------------------
    def set_policy(self, policy: NetworkPolicy) -> None:
        new: dict[str, CacheRule] = {}
        for i, r in enumerate(policy.rules):
            atgs = r.applied_to_groups or policy.applied_to_groups
            if policy.tier_priority is None:
                rid = rule_id(policy.name, r, atgs)
                new.setdefault(rid, CacheRule(rid, policy.name, r, atgs, i))
                continue
            # An Antrea-native rule's place in the order is part of its identity.
            rid = rule_id(f"{policy.name}|{policy.tier_priority}|{policy.priority!r}", r, atgs)
            new.setdefault(
                rid,
                CacheRule(rid, policy.name, r, atgs, i, policy.tier_priority, policy.priority),
            )
        old_ids = self._policy_rules.get(policy.name, set())
        for rid in old_ids - new.keys():
            self._drop_rule(rid)
        for rid, cr in new.items():
            if rid not in old_ids:
                self._add_rule(cr)
            elif self.rules[rid].index != cr.index:
                self.rules[rid] = cr  # position only: no flow change
        self.policies[policy.name] = policy

    def delete_policy(self, name: str) -> None:
        for rid in list(self._policy_rules.get(name, ())):
            self._drop_rule(rid)
        self._policy_rules.pop(name, None)
        self.policies.pop(name, None)

    def _add_rule(self, cr: CacheRule) -> None:
        self.rules[cr.id] = cr
        self._policy_rules[cr.policy].add(cr.id)
        for g in cr.rule.peer().address_groups:
            self._ag_rules[g].add(cr.id)
        for g in cr.applied_to_groups:
            self._atg_rules[g].add(cr.id)
        self.dirty.add(cr.id)

    def _drop_rule(self, rid: str) -> None:
        cr = self.rules.pop(rid, None)
        if cr is None:
            return
        self._policy_rules[cr.policy].discard(rid)
        for g in cr.rule.peer().address_groups:
            _discard(self._ag_rules, g, rid)
        for g in cr.applied_to_groups:
            _discard(self._atg_rules, g, rid)
        self.dirty.add(rid)

    # -- groups ---------------------------------------------------------------------------
    def set_address_group(self, name: str, members: set[GroupMember]) -> None:
        if self.address_groups.get(name) == members:
            return
        self.address_groups[name] = members
        self.dirty |= self._ag_rules.get(name, set())

    def patch_address_group(self, patch: AddressGroupPatch) -> None:
        members = self.address_groups.get(patch.name)
        if members is None:
            log.warning("patch_for_unknown_address_group", group=patch.name)
            members = self.address_groups[patch.name] = set()
        before = len(members)
        members -= patch.removed
        members |= patch.added
        if patch.added or patch.removed or len(members) != before:
            self.dirty |= self._ag_rules.get(patch.name, set())
        if self._resync is not None:
            self._resync[Kind.ADDRESS_GROUP].add(patch.name)

    def delete_address_group(self, name: str) -> None:
        if self.address_groups.pop(name, None) is not None:
            self.dirty |= self._ag_rules.get(name, set())

    def set_applied_to_group(self, name: str, members: set[GroupMember]) -> None:
        old = self.applied_to_groups.get(name)
        if old == members:
            return
        for m in old or ():
            _discard(self._pod_atgs, m.pod, name)
        for m in members:
            self._pod_atgs[m.pod].add(name)
        self.applied_to_groups[name] = members
        self.dirty |= self._atg_rules.get(name, set())

    def delete_applied_to_group(self, name: str) -> None:
        old = self.applied_to_groups.pop(name, None)
        if old is None:
            return
        for m in old:
            _discard(self._pod_atgs, m.pod, name)
        self.dirty |= self._atg_rules.get(name, set())

    def pod_changed(self, pod: PodReference) -> None:
        """A local pod's interface appeared, changed or went away."""
        for g in self._pod_atgs.get(pod, ()):
            self.dirty |= self._atg_rules.get(g, set())

    # -- queries --------------------------------------------------------------------------
    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def completed(self, rid: str) -> CompletedRule | None:
        """The rule flattened, or None when it is gone or a group has not arrived yet."""
        cr = self.rules.get(rid)
        if cr is None:
            return None
        peer = cr.rule.peer()
        members: set[GroupMember] = set()
        for g in peer.address_groups:
            ms = self.address_groups.get(g)
            if ms is None:
                return None
            members |= ms
        targets: set[GroupMember] = set()
        for g in cr.applied_to_groups:
            ms = self.applied_to_groups.get(g)
            if ms is None:
                return None
            targets |= ms
        return CompletedRule(cr, frozenset(members), peer.ip_blocks, frozenset(targets))

    def is_complete(self, rid: str) -> bool:
        cr = self.rules.get(rid)
        if cr is None:
            return False
        return all(g in self.address_groups for g in cr.rule.peer().address_groups) and all(
            g in self.applied_to_groups for g in cr.applied_to_groups
        )

    def rules_of(self, policy: str) -> list[CacheRule]:
        return sorted(
            (self.rules[r] for r in self._policy_rules.get(policy, ()) if r in self.rules),
            key=lambda c: c.index,
        )

    def policies_of_pod(self, pod: PodReference) -> set[str]:
        out: set[str] = set()
        for g in self._pod_atgs.get(pod, ()):
            out |= {self.rules[r].policy for r in self._atg_rules.get(g, ()) if r in self.rules}
        return out


def _discard(index: dict[K, set[str]], key: K, v: str) -> None:
    s = index.get(key)
    if s is not None:
        s.discard(v)
        if not s:
            del index[key]


def _kind_of(obj: object) -> Kind:
    if isinstance(obj, NetworkPolicy):
        return Kind.NETWORK_POLICY
    if isinstance(obj, AddressGroup):
        return Kind.ADDRESS_GROUP
    if isinstance(obj, AppliedToGroup):
        return Kind.APPLIED_TO_GROUP
    raise TypeError(f"not a control-plane object: {obj!r}")
