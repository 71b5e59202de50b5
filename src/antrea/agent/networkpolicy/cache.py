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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import msgpack
import structlog

from antrea.apis.controlplane.codec import EventType, WatchEvent, rule_array
from antrea.apis.controlplane.fastnew import positional_new
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


# The canonical form is packed by one shared Packer: `pack` runs in C under the GIL and calls
# no Python code for these types (StrEnum members pack as their string values).
_pack = msgpack.Packer(autoreset=True, use_bin_type=True).pack
_blake2b = hashlib.blake2b


def rule_id(policy_uid: str, rule: NetworkPolicyRule, applied_to: tuple[str, ...]) -> str:
    """16 hex digits (BLAKE2b, 8 bytes) over the rule content, its applied-to groups and the
    policy UID.

    The hashed bytes are the msgpack encoding of ``[policy_uid, rule_array, applied_to
    sorted]``, where ``rule_array`` is the rule in wire version 2 (`codec.rule_array`: every
    field of the rule, peers and services as nested arrays), so equal content gives equal IDs
    across processes and runs; the rule's index in the policy is deliberately not part of it.
    `RuleCache.set_policy` hashes the arrays a version-2 event carries as they came off the
    wire (the same bytes, without rebuilding them from the objects).
    """
    h = _id_hash(policy_uid)
    h.update(_pack(rule_array(rule)))
    h.update(_pack(applied_to if len(applied_to) < 2 else sorted(applied_to)))
    return h.hexdigest()


def _id_hash(policy_uid: str) -> hashlib.blake2b:
    """A BLAKE2b state holding the start of a rule ID's canonical form: a 3-array header and
    the UID (every rule of a policy continues a copy of it)."""
    return _blake2b(b"\x93" + _pack(policy_uid), digest_size=8)


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


# Built once per rule per batch: positional constructors skipping the frozen __init__.
_new_cache_rule = cast(
    Callable[
        [str, str, NetworkPolicyRule, tuple[str, ...], int, int | None, float | None], CacheRule
    ],
    positional_new(CacheRule),
)
_new_completed = cast(
    Callable[
        [CacheRule, frozenset[GroupMember], tuple[IPBlock, ...], frozenset[GroupMember]],
        CompletedRule,
    ],
    positional_new(CompletedRule),
)


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
                self.set_policy(obj, ev.rule_arrays)
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
    def set_policy(self, policy: NetworkPolicy, rule_arrays: Sequence[Any] | None = None) -> None:
        """Add or replace a policy. `rule_arrays`: its rules in wire-version-2 form as decoded
        (`WatchEvent.rule_arrays`), hashed for the IDs as they are; otherwise they are built
        from the rules (`codec.rule_array`), which gives the same bytes."""
        name, tier, prio = policy.name, policy.tier_priority, policy.priority
        # An Antrea-native rule's place in the order is part of its identity.
        key = name if tier is None else f"{name}|{tier}|{prio!r}"
        if tier is None:
            prio = None
        rules = policy.rules
        if rule_arrays is None or len(rule_arrays) != len(rules):
            rule_arrays = [rule_array(r) for r in rules]
        # The canonical form is [key, rule array, applied-to]: the key's part is hashed once
        # per policy and copied per rule; the policy's applied-to part is packed once.
        base = _id_hash(key)
        patgs = policy.applied_to_groups
        psuffix = _pack(patgs if len(patgs) < 2 else sorted(patgs))
        pack = _pack
        old_ids = self._policy_rules.get(name)
        # A policy without rules yet (every first sync) has its rules indexed in this loop:
        # peer groups per rule, the policy's applied-to groups once for all rules using them.
        fresh = not old_ids
        ag_rules, atg_rules, inbound = self._ag_rules, self._atg_rules, Direction.IN
        shared: list[str] = []
        new: dict[str, CacheRule] = {}
        for i, (r, arr) in enumerate(zip(rules, rule_arrays, strict=True)):
            atgs = r.applied_to_groups
            if atgs:
                suffix = pack(atgs if len(atgs) < 2 else sorted(atgs))
            else:
                atgs, suffix = patgs, psuffix
            h = base.copy()
            h.update(pack(arr))
            h.update(suffix)
            rid = h.hexdigest()
            if rid in new:
                continue
            new[rid] = _new_cache_rule(rid, name, r, atgs, i, tier, prio)
            if fresh:
                for g in (r.from_ if r.direction is inbound else r.to).address_groups:
                    ag_rules[g].add(rid)
                if atgs is patgs:
                    shared.append(rid)
                else:
                    for g in atgs:
                        atg_rules[g].add(rid)
        if not old_ids:
            for g in patgs:
                atg_rules[g].update(shared)
            self.rules.update(new)
            self._policy_rules[name] = set(new)
            self.dirty.update(new)
        else:
            for rid in old_ids - new.keys():
                self._drop_rule(rid)
            by_id = self.rules
            for rid, cr in new.items():
                if rid not in old_ids:
                    self._add_rule(cr)
                elif by_id[rid].index != cr.index:
                    by_id[rid] = cr  # position only: no flow change
        self.policies[name] = policy

    def delete_policy(self, name: str) -> None:
        for rid in list(self._policy_rules.get(name, ())):
            self._drop_rule(rid)
        self._policy_rules.pop(name, None)
        self.policies.pop(name, None)

    def _add_rule(self, cr: CacheRule) -> None:
        rid = cr.id
        self.rules[rid] = cr
        self._policy_rules[cr.policy].add(rid)
        rule = cr.rule
        peer = rule.from_ if rule.direction is Direction.IN else rule.to
        if peer.address_groups:
            ag_rules = self._ag_rules
            for g in peer.address_groups:
                ag_rules[g].add(rid)
        atg_rules = self._atg_rules
        for g in cr.applied_to_groups:
            atg_rules[g].add(rid)
        self.dirty.add(rid)

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
        return self._complete(cr, {}, {})

    def completed_many(self, rids: Iterable[str]) -> dict[str, CompletedRule | None]:
        """`completed` of each of `rids` that is still a rule (None: incomplete). Rules naming
        the same groups share their flattened member sets (one union per distinct tuple of
        groups, not one per rule): `_complete` with the lookups hoisted out of the loop."""
        return self._flatten(rids, batch=False)

    def batch_of(self, rids: Iterable[str]) -> dict[str, CompletedRule | None]:
        """What the reconciler takes for `rids`: None for each that is no longer a rule, the
        flattened rule for each complete one; incomplete rules are left out (their groups
        mark them dirty when they arrive). One pass, as `completed_many`."""
        return self._flatten(rids, batch=True)

    def _flatten(self, rids: Iterable[str], *, batch: bool) -> dict[str, CompletedRule | None]:
        out: dict[str, CompletedRule | None] = {}
        rules, ag_groups, atg_groups = self.rules, self.address_groups, self.applied_to_groups
        peers: dict[tuple[str, ...], frozenset[GroupMember] | None] = {(): _NO_MEMBERS}
        targets: dict[tuple[str, ...], frozenset[GroupMember] | None] = {}
        get_peers, get_targets, get_rule = peers.get, targets.get, rules.get
        new, miss, inbound = _new_completed, _MISSING, Direction.IN
        for rid in rids:
            cr = get_rule(rid)
            if cr is None:
                if batch:
                    out[rid] = None
                continue
            rule = cr.rule
            peer = rule.from_ if rule.direction is inbound else rule.to
            ags = peer.address_groups
            members = get_peers(ags, miss)
            if members is miss:
                members = peers[ags] = _union(ag_groups, ags)
            if members is not None:
                atgs = cr.applied_to_groups
                local = get_targets(atgs, miss)
                if local is miss:
                    local = targets[atgs] = _union(atg_groups, atgs)
                if local is not None:
                    out[rid] = new(cr, members, peer.ip_blocks, local)
                    continue
            if not batch:
                out[rid] = None
        return out

    def _complete(
        self,
        cr: CacheRule,
        peers: dict[tuple[str, ...], frozenset[GroupMember] | None],
        targets: dict[tuple[str, ...], frozenset[GroupMember] | None],
    ) -> CompletedRule | None:
        rule = cr.rule
        peer = rule.from_ if rule.direction is Direction.IN else rule.to
        ags = peer.address_groups
        if not ags:
            members: frozenset[GroupMember] | None = _NO_MEMBERS
        elif ags in peers:
            members = peers[ags]
        else:
            members = peers[ags] = _union(self.address_groups, ags)
        if members is None:
            return None
        atgs = cr.applied_to_groups
        if atgs in targets:
            local = targets[atgs]
        else:
            local = targets[atgs] = _union(self.applied_to_groups, atgs)
        if local is None:
            return None
        return _new_completed(cr, members, peer.ip_blocks, local)

    def is_complete(self, rid: str) -> bool:
        cr = self.rules.get(rid)
        if cr is None:
            return False
        return all(g in self.address_groups for g in cr.rule.peer().address_groups) and all(
            g in self.applied_to_groups for g in cr.applied_to_groups
        )

    def rule_ids_of(self, policy: str) -> Iterable[str]:
        """The IDs of the policy's rules, in no particular order."""
        return self._policy_rules.get(policy, ())

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


_NO_MEMBERS: frozenset[GroupMember] = frozenset()
_MISSING: Any = object()  # a member-set lookup that found nothing (None means incomplete)


def _union(
    groups: dict[str, set[GroupMember]], names: tuple[str, ...]
) -> frozenset[GroupMember] | None:
    """The members of every group in `names`, or None when one has not arrived yet."""
    if len(names) == 1:
        ms = groups.get(names[0])
        return None if ms is None else frozenset(ms)
    out: set[GroupMember] = set()
    for g in names:
        ms = groups.get(g)
        if ms is None:
            return None
        out |= ms
    return frozenset(out)


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
