"""The RBAC rule matcher and escalation coverage against an independent, set-based evaluator.

The reference expands every rule into the explicit set of (verb, group, resource, subresource,
name) or (verb, path) requests it grants over a small finite universe; the matcher must agree
with membership in that set on every request of the universe, and "covers" must never claim a
rule set is covered when its expansion is not contained in the owner's.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from antrea.testbed.apiserver.authz.rules import (
    PolicyRule,
    Request,
    rule_allows,
    rules_allow,
    uncovered,
)

VERBS = ("get", "list", "create", "delete", "escalate")
GROUPS = ("", "apps", "rbac.authorization.k8s.io")
RESOURCES = ("pods", "secrets", "nodes")
SUBRESOURCES = ("", "status", "log")
NAMES = ("", "a", "b")
PATHS = ("/api", "/api/v1", "/apis", "/apis/apps", "/version", "/healthz", "/x/y")

RESOURCE_REQUESTS = [
    Request(verb=v, group=g, resource=r, subresource=s, name=n)
    for v, g, r, s, n in itertools.product(VERBS, GROUPS, RESOURCES, SUBRESOURCES, NAMES)
]
PATH_REQUESTS = [Request(verb=v, resource_request=False, path=p) for v in VERBS for p in PATHS]
ALL_REQUESTS = RESOURCE_REQUESTS + PATH_REQUESTS

Key = tuple[str, ...]


def expand(rule: PolicyRule) -> set[Key]:
    """Every request ``rule`` grants, written out (the reference evaluator)."""
    verbs = set(VERBS) if "*" in rule.verbs else set(rule.verbs) & set(VERBS)
    groups = set(GROUPS) if "*" in rule.api_groups else set(rule.api_groups) & set(GROUPS)
    pairs: set[tuple[str, str]] = set()
    for res in rule.resources:
        if res == "*":
            pairs |= set(itertools.product(RESOURCES, SUBRESOURCES))
        elif res.startswith("*/"):
            pairs |= {(r, res[2:]) for r in RESOURCES}
        else:
            base, _, sub = res.partition("/")
            pairs.add((base, sub))
    names = set(NAMES) if not rule.resource_names else set(rule.resource_names)
    out: set[Key] = {
        ("R", v, g, r, s, n) for v in verbs for g in groups for (r, s) in pairs for n in names
    }
    for url in rule.non_resource_urls:
        if url == "*":
            paths = set(PATHS)
        elif url.endswith("*"):
            paths = {p for p in PATHS if p.startswith(url[:-1])}
        else:
            paths = {url}
        out |= {("N", v, p) for v in verbs for p in paths}
    return out


def key(req: Request) -> Key:
    if req.resource_request:
        return ("R", req.verb, req.group, req.resource, req.subresource, req.name)
    return ("N", req.verb, req.path)


def subset(
    values: tuple[str, ...], extra: tuple[str, ...] = ()
) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(values + extra), max_size=4, unique=True).map(tuple)


resource_rules = st.builds(
    PolicyRule,
    verbs=subset(VERBS, ("*",)),
    api_groups=subset(GROUPS, ("*",)),
    resources=subset(
        (*RESOURCES, "pods/status", "secrets/log", "nodes/status"), ("*", "*/status", "*/log")
    ),
    resource_names=st.one_of(st.just(()), subset(("a", "b"))),
)
url_rules = st.builds(
    PolicyRule,
    verbs=subset(VERBS, ("*",)),
    non_resource_urls=subset(PATHS, ("*", "/api/*", "/apis*", "/ver*")),
)
rules = st.one_of(resource_rules, url_rules)


@settings(max_examples=300, deadline=None)
@given(rule=rules)
def test_rule_allows_exactly_what_the_rule_grants(rule: PolicyRule) -> None:
    granted = expand(rule)
    for req in ALL_REQUESTS:
        assert rule_allows(rule, req) == (key(req) in granted), (rule, req)


@settings(max_examples=300, deadline=None)
@given(owner=st.lists(rules, max_size=4), wanted=st.lists(rules, max_size=3))
def test_covered_rules_grant_nothing_the_owner_lacks(
    owner: list[PolicyRule], wanted: list[PolicyRule]
) -> None:
    """Soundness: no escalation is reported only when nothing beyond the owner's is granted."""
    if uncovered(owner, wanted):
        return
    held = set().union(*(expand(r) for r in owner)) if owner else set()
    for rule in wanted:
        assert expand(rule) <= held, (owner, rule)
    for req in ALL_REQUESTS:
        if rules_allow(wanted, req):
            assert rules_allow(owner, req), (owner, wanted, req)


def _literal(rule: PolicyRule) -> bool:
    values = rule.verbs + rule.api_groups + rule.resources + rule.non_resource_urls
    return not any("*" in v for v in values)


@settings(max_examples=300, deadline=None)
@given(owner=st.lists(rules, max_size=4), wanted=st.lists(rules.filter(_literal), max_size=3))
def test_wildcard_free_rules_are_covered_when_the_owner_grants_them(
    owner: list[PolicyRule], wanted: list[PolicyRule]
) -> None:
    """Completeness for literal rules: covered exactly when the owner grants their expansion."""
    held = set().union(*(expand(r) for r in owner)) if owner else set()
    # The universe has every literal the strategies use, so expansions are exact.
    expected = all(expand(atom) <= held for rule in wanted for atom in _atoms_of(rule))
    assert (not uncovered(owner, wanted)) == expected, (owner, wanted)


def _atoms_of(rule: PolicyRule) -> list[PolicyRule]:
    atoms = [
        PolicyRule((v,), (g,), (r,), (n,) if n else ())
        for v in rule.verbs
        for g in rule.api_groups
        for r in rule.resources
        for n in (rule.resource_names or ("",))
    ]
    atoms += [
        PolicyRule((v,), non_resource_urls=(u,)) for v in rule.verbs for u in rule.non_resource_urls
    ]
    return atoms


def test_examples_from_kube_apiserver_semantics() -> None:
    pods = PolicyRule(("get",), ("",), ("pods",))
    assert rule_allows(pods, Request("get", resource="pods", name="x"))
    assert not rule_allows(pods, Request("get", resource="pods", subresource="status"))
    named = PolicyRule(("get", "list"), ("",), ("configmaps",), ("antrea-ca",))
    assert rule_allows(named, Request("get", resource="configmaps", name="antrea-ca"))
    assert not rule_allows(named, Request("list", resource="configmaps"))
    assert uncovered([PolicyRule(("*",), ("*",), ("*",))], [named]) == []
    # A "*" in the wanted rule is a literal: listing every verb does not cover it.
    every = PolicyRule(VERBS, ("",), ("pods",))
    assert uncovered([every], [PolicyRule(("*",), ("",), ("pods",))])
