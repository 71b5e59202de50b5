"""The admission checks of Antrea-native policy objects: one test per rule (field path and
reason), and properties over generated policies."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antrea.controller.admission import mutate, validate
from antrea.controller.admission.validate import STATIC_TIERS, Refusal

JSON = dict[str, Any]
TIERS = {**STATIC_TIERS, "custom": 10}


def acnp(**spec: Any) -> JSON:
    body: JSON = {
        "priority": 5,
        "appliedTo": [{"podSelector": {"matchLabels": {"app": "web"}}}],
        "ingress": [{"name": "r1", "action": "Allow", "from": [{"podSelector": {}}]}],
    }
    body.update(spec)
    return {"metadata": {"name": "p"}, "spec": body}


def refusals(obj: JSON, *, cluster: bool = True) -> dict[str, str]:
    return {r.field: r.message for r in validate.validate_policy(obj, TIERS, cluster=cluster)}


def test_valid_policy_admitted() -> None:
    assert refusals(acnp()) == {}
    assert refusals(acnp(tier="custom")) == {}


@pytest.mark.parametrize("prio", [0, 0.5, 10000.5, -1, "5", True])
def test_priority_out_of_range(prio: Any) -> None:
    assert "out of range" in refusals(acnp(priority=prio))["spec.priority"]


def test_applied_to_both_levels() -> None:
    rule = {"name": "r1", "action": "Allow", "appliedTo": [{"podSelector": {}}]}
    got = refusals(acnp(ingress=[rule]))
    assert got == {
        "spec.ingress[0].appliedTo": "appliedTo should not be set in both spec and rules"
    }


def test_applied_to_nowhere_and_partially() -> None:
    assert "needs to be set" in refusals(acnp(appliedTo=[]))["spec.appliedTo"]
    rules = [
        {"name": "a", "action": "Allow", "appliedTo": [{"podSelector": {}}]},
        {"name": "b", "action": "Drop"},
    ]
    got = refusals(acnp(appliedTo=None, ingress=rules))
    assert "in all rules or in none" in got["spec.ingress[1].appliedTo"]


def test_unknown_tier() -> None:
    assert refusals(acnp(tier="nope")) == {"spec.tier": "tier nope does not exist"}


def test_pass_in_baseline() -> None:
    rule = {"name": "r1", "action": "Pass", "from": [{"podSelector": {}}]}
    got = refusals(acnp(tier="baseline", ingress=[rule]))
    assert "`Pass` action should not be set" in got["spec.ingress[0].action"]
    assert refusals(acnp(tier="application", ingress=[rule])) == {}


def test_duplicate_rule_names_across_directions() -> None:
    got = refusals(
        acnp(
            ingress=[{"name": "x", "action": "Allow"}],
            egress=[{"name": "x", "action": "Drop"}],
        )
    )
    assert got == {"spec.egress[0].name": "rules names must be unique within the policy"}


@pytest.mark.parametrize(
    ("cidr", "exc"),
    [("10.0.0.0/16", "10.1.0.0/24"), ("10.0.0.0/16", "10.0.0.0/16"), ("10.0.0.0/16", "fd00::/64")],
)
def test_except_outside_cidr(cidr: str, exc: str) -> None:
    rule = {"name": "r", "action": "Allow", "from": [{"ipBlock": {"cidr": cidr, "except": [exc]}}]}
    got = refusals(acnp(ingress=[rule]))
    assert "is not a strict subset" in got["spec.ingress[0].from[0].ipBlock.except[0]"]


def test_except_inside_cidr_admitted() -> None:
    block = {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}
    assert (
        refusals(acnp(ingress=[{"name": "r", "action": "Allow", "from": [{"ipBlock": block}]}]))
        == {}
    )


def test_peer_group_with_other_fields() -> None:
    rule = {"name": "r", "action": "Allow", "from": [{"group": "g", "podSelector": {}}]}
    assert refusals(acnp(ingress=[rule]))["spec.ingress[0].from[0]"] == (
        "group cannot be set with other peers in rules"
    )


def test_namespaces_field() -> None:
    peer = {"namespaces": {"match": "Self"}, "namespaceSelector": {}}
    rule = {"name": "r", "action": "Allow", "from": [peer]}
    assert (
        "cannot be set at the same time"
        in refusals(acnp(ingress=[rule]))["spec.ingress[0].from[0]"]
    )
    # In an Antrea NetworkPolicy `namespaces: {match: Self}` means the policy's namespace.
    rule = {"name": "r", "action": "Allow", "from": [{"namespaces": {"match": "Self"}}]}
    assert refusals(acnp(ingress=[rule]), cluster=False) == {}
    rule = {"name": "r", "action": "Allow", "from": [{"namespaces": {"match": "Other"}}]}
    assert (
        "match must be"
        in refusals(acnp(ingress=[rule]))["spec.ingress[0].from[0].namespaces.match"]
    )


def test_end_port_rules() -> None:
    def one(port: JSON) -> dict[str, str]:
        return refusals(acnp(ingress=[{"name": "r", "action": "Allow", "ports": [port]}]))

    assert (
        "greater than or equal"
        in one({"port": 90, "endPort": 80})["spec.ingress[0].ports[0].endPort"]
    )
    assert "must be specified" in one({"endPort": 80})["spec.ingress[0].ports[0].endPort"]
    assert "is a string" in one({"port": "http", "endPort": 80})["spec.ingress[0].ports[0].endPort"]
    assert one({"port": 80, "endPort": 90}) == {}


def test_bad_label_key() -> None:
    applied = [{"podSelector": {"matchLabels": {"bad key!": "x"}}}]
    got = refusals(acnp(appliedTo=applied))
    assert got["spec.appliedTo[0].podSelector.matchLabels"].startswith(
        "Invalid label key: bad key!"
    )


def test_applied_to_service_with_egress() -> None:
    applied = [{"service": {"name": "s", "namespace": "n"}}]
    got = refusals(acnp(appliedTo=applied, ingress=[], egress=[{"name": "e", "action": "Drop"}]))
    assert got["spec.appliedTo[0].service"] == "egress rule cannot be applied to Services"


def test_to_services_with_ports() -> None:
    rule = {"name": "e", "action": "Drop", "toServices": [{"name": "s"}], "ports": [{"port": 1}]}
    got = refusals(acnp(ingress=[], egress=[rule]))
    assert "`toServices` cannot be used" in got["spec.egress[0].toServices"]


def test_unknown_action() -> None:
    got = refusals(acnp(ingress=[{"name": "r", "action": "Accept"}]))
    assert "action must be one of" in got["spec.ingress[0].action"]


# --- tiers ---------------------------------------------------------------------------------


def tier(name: str, prio: Any) -> JSON:
    return {"metadata": {"name": name}, "spec": {"priority": prio}}


def test_tier_duplicate_priority() -> None:
    (r,) = validate.validate_tier_create(tier("t", 10), TIERS)
    assert r == Refusal("spec.priority", "tier t priority 10 overlaps with existing Tier custom")


def test_tier_reserved_and_out_of_range_priority() -> None:
    assert "is reserved" in validate.validate_tier_create(tier("t", 251), TIERS)[0].message
    assert "out of range" in validate.validate_tier_create(tier("t", 256), TIERS)[0].message
    assert validate.validate_tier_create(tier("t", 11), TIERS) == []


def test_tier_limit() -> None:
    many = {f"t{i}": i for i in range(1, 21)}
    assert (
        "maximum number of Tiers" in validate.validate_tier_create(tier("x", 30), many)[0].message
    )


def test_tier_priority_immutable_except_for_controller() -> None:
    (r,) = validate.validate_tier_update(tier("t", 11), tier("t", 10), "admin")
    assert r == Refusal("spec.priority", "update to Tier priority is not allowed")
    assert (
        validate.validate_tier_update(tier("t", 11), tier("t", 10), validate.CONTROLLER_USER) == []
    )


def test_tier_delete_referenced_or_static() -> None:
    refs = {"Antrea ClusterNetworkPolicies": 2, "Antrea NetworkPolicies": 0}
    (r,) = validate.validate_tier_delete(tier("t", 10), refs)
    assert r.message == "tier t is referenced by 2 Antrea ClusterNetworkPolicies"
    assert "reserved tier" in validate.validate_tier_delete(tier("baseline", 253), {})[0].message
    assert validate.validate_tier_delete(tier("t", 10), {"Antrea NetworkPolicies": 0}) == []


# --- groups --------------------------------------------------------------------------------


def group(**spec: Any) -> JSON:
    return {"metadata": {"name": "g"}, "spec": spec}


@pytest.mark.parametrize(
    "spec",
    [
        {"podSelector": {}, "ipBlocks": [{"cidr": "10.0.0.0/8"}]},
        {"ipBlocks": [{"cidr": "10.0.0.0/8"}], "childGroups": ["a"]},
        {"podSelector": {}, "serviceReference": {"name": "s", "namespace": "n"}},
        {"namespaceSelector": {}, "podSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}},
    ],
)
def test_group_mixing_fields(spec: JSON) -> None:
    (r,) = validate.validate_group(group(**spec), cluster=True, children_of={})
    assert r.field == "spec" and r.message.startswith("At most one of podSelector")


def test_group_selector_pair_admitted_and_except_checked() -> None:
    assert (
        validate.validate_group(
            group(namespaceSelector={}, podSelector={}), cluster=True, children_of={}
        )
        == []
    )
    got = validate.validate_group(
        group(ipBlocks=[{"cidr": "10.0.0.0/24", "except": ["10.0.1.0/28"]}]),
        cluster=True,
        children_of={},
    )
    assert got[0].field == "spec.ipBlocks[0].except[0]"


def test_group_nesting_depth() -> None:
    got = validate.validate_group(group(childGroups=["a"]), cluster=True, children_of={"a": ["b"]})
    assert got[0].field == "spec.childGroups[0]" and "has 1 childGroups itself" in got[0].message
    got = validate.validate_group(group(childGroups=["a"]), cluster=True, children_of={"p": ["g"]})
    assert "who has 1 parents" in got[0].message
    got = validate.validate_group(
        group(ipBlock={"cidr": "10.0.0.0/8"}), cluster=False, children_of={}
    )
    assert got[0].field == "spec.ipBlock"


# --- properties ----------------------------------------------------------------------------

labels = st.dictionaries(
    st.sampled_from(["app", "tier", "env"]), st.sampled_from(["a", "b"]), max_size=2
)
selector = st.builds(lambda m: {"matchLabels": m}, labels)
cidr = st.sampled_from(["10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12"])
peer = st.one_of(
    st.builds(lambda s: {"podSelector": s}, selector),
    st.builds(lambda s: {"namespaceSelector": s}, selector),
    st.builds(lambda a, b: {"podSelector": a, "namespaceSelector": b}, selector, selector),
    st.builds(lambda c: {"ipBlock": {"cidr": c}}, cidr),
    st.just({"group": "g"}),
)
port = st.one_of(
    st.builds(lambda p: {"protocol": "TCP", "port": p}, st.integers(1, 65535)),
    st.builds(
        lambda p, n: {"port": p, "endPort": p + n}, st.integers(1, 60000), st.integers(0, 5000)
    ),
)
rule = st.fixed_dictionaries(
    {"action": st.sampled_from(["Allow", "Drop", "Reject", "Pass"])},
    optional={"from": st.lists(peer, max_size=3), "ports": st.lists(port, max_size=2)},
)
policy = st.builds(
    lambda prio, tier_name, ingress, egress: {
        "metadata": {"name": "p"},
        "spec": {
            "priority": prio,
            "tier": tier_name,
            "appliedTo": [{"podSelector": {}}],
            "ingress": ingress,
            "egress": [{**r, "to": r.pop("from", [])} for r in copy.deepcopy(egress)],
        },
    },
    st.floats(1.0, 10000.0),
    st.sampled_from(["emergency", "application", "custom", ""]),
    st.lists(rule, max_size=4),
    st.lists(rule, max_size=4),
)


@settings(max_examples=150, deadline=None)
@given(policy)
def test_generated_valid_policies_admitted_after_defaults(obj: JSON) -> None:
    """Every well-formed generated policy, with the mutating webhook's defaults, is admitted;
    the defaults are idempotent (a second pass changes nothing)."""
    from antrea.testbed.apiserver.patch import json_patch

    obj = json_patch(obj, mutate.policy_patch(obj))
    assert mutate.policy_patch(obj) == []
    assert validate.validate_policy(obj, TIERS, cluster=True) == []


@settings(max_examples=150, deadline=None)
@given(policy, st.sampled_from(["priority", "tier", "dup", "both", "except"]))
def test_generated_broken_policies_refused(obj: JSON, breakage: str) -> None:
    """Breaking a valid policy in one known way is refused, naming the broken field."""
    from antrea.testbed.apiserver.patch import json_patch

    obj = json_patch(obj, mutate.policy_patch(obj))
    spec = obj["spec"]
    spec["ingress"].append({"name": "extra", "action": "Allow"})
    if breakage == "priority":
        spec["priority"] = 10001
        field = "spec.priority"
    elif breakage == "tier":
        spec["tier"] = "missing"
        field = "spec.tier"
    elif breakage == "dup":
        spec["ingress"].append({"name": "extra", "action": "Drop"})
        field = f"spec.ingress[{len(spec['ingress']) - 1}].name"
    elif breakage == "both":
        spec["ingress"][-1]["appliedTo"] = [{"podSelector": {}}]
        field = f"spec.ingress[{len(spec['ingress']) - 1}].appliedTo"
    else:
        spec["ingress"][-1]["from"] = [
            {"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.0/16"]}}
        ]
        field = f"spec.ingress[{len(spec['ingress']) - 1}].from[0].ipBlock.except[0]"
    got = validate.validate_policy(obj, TIERS, cluster=True)
    assert field in {r.field for r in got}, got
