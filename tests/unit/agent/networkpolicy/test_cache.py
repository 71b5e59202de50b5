"""The rule cache: rule IDs are content hashes, and batch flattening equals rule-by-rule.

`rule_id` hashes a canonical form, the rule in wire version 2 (`codec.rule_array`, not the
dataclass repr): these tests keep it complete (every field of a rule changes the ID), stable (a
fixed rule has a fixed ID in every process), exact (equal IDs iff equal content, for random
rules and single-field changes) and the same whether a policy arrives decoded from version 2
(its rule arrays hashed as they came off the wire), from version 1 or as objects.
`completed_many` shares one member union per distinct group tuple across the batch; it must
give what flattening each rule on its own gives.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from antrea.agent.networkpolicy.cache import CacheRule, RuleCache, rule_id
from antrea.apis.controlplane.codec import EventType, WatchEvent, decode_event, encode_event
from antrea.apis.controlplane.types import (
    Direction,
    GroupMember,
    IPBlock,
    NetworkPolicy,
    NetworkPolicyPeer,
    NetworkPolicyReference,
    NetworkPolicyRule,
    PodReference,
    Protocol,
    RuleAction,
    Service,
)

names = st.text("ab-1", max_size=3)
cidrs = st.sampled_from(["0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "192.168.1.7/32"])
small = st.one_of(st.none(), st.integers(0, 3))
blocks = st.builds(IPBlock, cidrs, st.lists(cidrs, max_size=2).map(tuple))
peers = st.builds(
    NetworkPolicyPeer,
    st.lists(names, max_size=2).map(tuple),
    st.lists(blocks, max_size=2).map(tuple),
)
services = st.builds(
    Service,
    st.sampled_from(Protocol),
    st.one_of(st.none(), st.integers(79, 81), st.sampled_from(["80", "http"])),
    small,
    small,
    small,
)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "direction": st.sampled_from(Direction),
    "from_": peers,
    "to": peers,
    "services": st.one_of(st.none(), st.lists(services, max_size=2).map(tuple)),
    "name": names,
    "priority": st.integers(-2, 2),
    "action": st.one_of(st.none(), st.sampled_from(RuleAction)),
    "applied_to_groups": st.lists(names, max_size=2).map(tuple),
    "enable_logging": st.booleans(),
    "log_label": names,
}
rules = st.builds(NetworkPolicyRule, **FIELD_VALUES)
group_tuples = st.lists(names, max_size=3).map(tuple)


def test_rule_id_covers_every_field() -> None:
    """A field added to a rule must be added to its wire form (codec.rule_array), rule_id's
    canonical form (and here)."""
    fields = {
        NetworkPolicyRule: list(FIELD_VALUES),
        NetworkPolicyPeer: ["address_groups", "ip_blocks"],
        IPBlock: ["cidr", "except_"],
        Service: ["protocol", "port", "end_port", "icmp_type", "icmp_code"],
    }
    for cls, expected in fields.items():
        assert [f.name for f in dataclasses.fields(cls)] == expected, cls


def test_rule_id_is_stable_across_processes() -> None:
    """The canonical form is fixed bytes, not anything process-dependent (hash seeds, reprs):
    this ID is the same in every run. Changing the form changes every rule ID once (a new
    agent version installs a new flow round anyway); update the value deliberately."""
    rule = NetworkPolicyRule(
        Direction.IN,
        from_=NetworkPolicyPeer(("ag-1",), (IPBlock("10.0.0.0/8", ("10.1.0.0/16",)),)),
        services=(Service(Protocol.TCP, 80, 90), Service(Protocol.UDP, "dns")),
    )
    assert rule_id("uid-1", rule, ("atg-b", "atg-a")) == "7a32d7a54aaa4e94"
    assert rule_id("uid-1", rule, ("atg-a", "atg-b")) == "7a32d7a54aaa4e94"


@given(rules, st.sampled_from([*FIELD_VALUES, "uid", "groups"]), st.data(), names, group_tuples)
def test_rule_id_is_equal_iff_the_content_is(
    a: NetworkPolicyRule, change: str, data: st.DataObject, uid: str, atg: tuple[str, ...]
) -> None:
    """One thing redrawn (often to the same value, often to a close one): a field of the
    rule, the policy UID or the applied-to groups."""
    b, uid_b, atg_b = a, uid, atg
    if change == "uid":
        uid_b = data.draw(names)
    elif change == "groups":
        atg_b = data.draw(group_tuples)
    else:
        b = dataclasses.replace(a, **{change: data.draw(FIELD_VALUES[change])})
    same = a == b and uid == uid_b and sorted(atg) == sorted(atg_b)
    assert (rule_id(uid, a, atg) == rule_id(uid_b, b, atg_b)) == same
    assert rule_id(uid, a, atg) == rule_id(uid, a, tuple(reversed(atg)))


@given(
    st.lists(st.tuples(rules, group_tuples), min_size=1, max_size=6),
    group_tuples,
    st.one_of(st.none(), st.tuples(st.integers(-2, 2), st.floats(0, 10))),
)
def test_a_decoded_policy_gets_the_ids_of_its_objects(
    policy_rules: list[tuple[NetworkPolicyRule, tuple[str, ...]]],
    atg: tuple[str, ...],
    order: tuple[int, float] | None,
) -> None:
    """A policy through the wire in either version (version 2: the cache hashes the decoded
    rule arrays) and the same policy set as objects give the very same rules and IDs, which
    are rule_id's of each rule."""
    ref = NetworkPolicyReference("K8sNetworkPolicy", "ns", "np", "uid-x")
    tier, prio = order if order is not None else (None, None)
    policy = NetworkPolicy(
        "uid-x",
        ref,
        tuple(dataclasses.replace(r, applied_to_groups=g) for r, g in policy_rules),
        atg,
        tier_priority=tier,
        priority=prio,
    )
    direct = RuleCache()
    direct.set_policy(policy)
    key = "uid-x" if tier is None else f"uid-x|{tier}|{prio!r}"
    assert {cr.id for cr in direct.rules.values()} == {
        rule_id(key, r, r.applied_to_groups or atg) for r in policy.rules
    }
    for version in (1, 2):
        ev = decode_event(encode_event(WatchEvent(EventType.ADDED, object=policy), version))
        assert ev.object == policy and (ev.rule_arrays is not None) == (version == 2)
        wired = RuleCache()
        wired.apply(ev)
        assert wired.rules == direct.rules and wired.dirty == direct.dirty


@given(
    st.lists(st.tuples(rules, group_tuples), min_size=1, max_size=6),
    group_tuples,
    st.integers(0, 5),
)
def test_a_new_policy_is_indexed_like_one_grown_rule_by_rule(
    policy_rules: list[tuple[NetworkPolicyRule, tuple[str, ...]]], atg: tuple[str, ...], k: int
) -> None:
    """set_policy indexes a policy's first rules in one pass (the policy's applied-to groups
    once for all rules using them); a policy that already had rules adds each rule on its own.
    Both leave the same rules, indexes and dirty set, and the same rules dirty per group."""
    ref = NetworkPolicyReference("K8sNetworkPolicy", "ns", "np", "uid-x")
    full = tuple(dataclasses.replace(r, applied_to_groups=g) for r, g in policy_rules)
    at_once, grown = RuleCache(), RuleCache()
    at_once.set_policy(NetworkPolicy("uid-x", ref, full, atg))
    grown.set_policy(NetworkPolicy("uid-x", ref, full[: max(1, k % len(full))], atg))
    grown.set_policy(NetworkPolicy("uid-x", ref, full, atg))
    assert at_once.rules == grown.rules and at_once.dirty == grown.dirty
    for index in ("_ag_rules", "_atg_rules", "_policy_rules"):
        a, g = getattr(at_once, index), getattr(grown, index)
        assert {k: v for k, v in a.items() if v} == {k: v for k, v in g.items() if v}, index


def member(i: int) -> GroupMember:
    return GroupMember(PodReference("ns", f"p{i}"), (f"10.0.0.{i}",))


@given(
    st.dictionaries(names, st.frozensets(st.integers(0, 5), max_size=3), max_size=4),
    st.dictionaries(names, st.frozensets(st.integers(0, 5), max_size=3), max_size=4),
    st.lists(st.tuples(rules, group_tuples), max_size=8),
)
def test_completed_many_equals_each_rule_flattened_alone(
    ags: dict[str, frozenset[int]],
    atgs: dict[str, frozenset[int]],
    policy_rules: list[tuple[NetworkPolicyRule, tuple[str, ...]]],
) -> None:
    cache = RuleCache()
    for name, ms in ags.items():
        cache.set_address_group(name, {member(i) for i in ms})
    for name, ms in atgs.items():
        cache.set_applied_to_group(name, {member(i) for i in ms})
    for i, (rule, atg) in enumerate(policy_rules):
        ref = NetworkPolicyReference("K8sNetworkPolicy", "ns", f"np{i}", f"uid{i}")
        cache.set_policy(NetworkPolicy(f"uid{i}", ref, (rule,), atg))
    rids = [*cache.rules, "gone"]
    got = cache.completed_many(rids)
    assert set(got) == set(cache.rules)
    # the reconciler's form: gone rules as None, complete ones flattened, incomplete left out
    assert cache.batch_of(rids) == {
        "gone": None,
        **{rid: c for rid, c in got.items() if c is not None},
    }
    for rid, completed in got.items():
        cr = cache.rules[rid]
        expected = reference_completed(cr, ags, atgs)
        if expected is None:
            assert completed is None
            continue
        assert completed is not None and completed.rule is cr
        assert (completed.peer_members, completed.peer_blocks, completed.targets) == expected
        assert cache.completed(rid) == completed


def reference_completed(
    cr: CacheRule, ags: dict[str, frozenset[int]], atgs: dict[str, frozenset[int]]
) -> tuple[frozenset[GroupMember], tuple[IPBlock, ...], frozenset[GroupMember]] | None:
    """The flattened rule, written out: None while a group it names has not arrived."""
    peer = cr.rule.from_ if cr.rule.direction is Direction.IN else cr.rule.to
    if any(g not in ags for g in peer.address_groups) or any(
        g not in atgs for g in cr.applied_to_groups
    ):
        return None
    peer_ids = set().union(*(ags[g] for g in peer.address_groups))
    target_ids = set().union(*(atgs[g] for g in cr.applied_to_groups))
    return (
        frozenset(member(i) for i in peer_ids),
        peer.ip_blocks,
        frozenset(member(i) for i in target_ids),
    )
