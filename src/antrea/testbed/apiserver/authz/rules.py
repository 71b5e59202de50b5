"""RBAC policy rules: does a rule allow a request, does one rule set cover another.

Semantics are kube-apiserver's (``rbac.authorization.k8s.io/v1``):

- a rule matches a resource request when its ``verbs``, ``apiGroups`` and ``resources`` each
  contain the request's value or ``*``; ``resources`` entries name ``resource/subresource`` for
  subresources (``pods`` does not match ``pods/status``; ``*/status`` matches every status), and
  a non-empty ``resourceNames`` must contain the request's name (so it never matches a list,
  watch or create without a name);
- a rule matches a non-resource request (``/version``, ``/healthz``) when ``verbs`` contains
  the lower-case HTTP verb or ``*`` and ``nonResourceURLs`` contains the path, ``*``, or a
  prefix ending in ``*``;
- escalation checks ("may this user grant these rules?") break the granted rules into single
  (group, resource, verb, name) or (url, verb) atoms; every atom must be covered by one rule
  the user holds. A ``*`` in the granted rules is a literal that only a ``*`` covers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

ALL = "*"


@dataclass(frozen=True, slots=True)
class PolicyRule:
    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, raw: Any) -> PolicyRule:
        """A rule from its API form; anything malformed yields a rule that matches nothing."""
        if not isinstance(raw, dict):
            return cls()

        def strings(key: str) -> tuple[str, ...]:
            value = raw.get(key)
            if not isinstance(value, list):
                return ()
            return tuple(v for v in value if isinstance(v, str))

        return cls(
            verbs=strings("verbs"),
            api_groups=strings("apiGroups"),
            resources=strings("resources"),
            resource_names=strings("resourceNames"),
            non_resource_urls=strings("nonResourceURLs"),
        )

    def to_json(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"verbs": list(self.verbs)}
        if self.api_groups or self.resources:
            out["apiGroups"] = list(self.api_groups)
            out["resources"] = list(self.resources)
        if self.resource_names:
            out["resourceNames"] = list(self.resource_names)
        if self.non_resource_urls:
            out["nonResourceURLs"] = list(self.non_resource_urls)
        return out

    def describe(self) -> str:
        """kube-apiserver's compact form, used in escalation error messages."""
        parts = []
        if self.api_groups:
            parts.append("APIGroups:[" + " ".join(f'"{g}"' for g in self.api_groups) + "]")
        if self.resources:
            parts.append("Resources:[" + " ".join(f'"{r}"' for r in self.resources) + "]")
        if self.resource_names:
            parts.append("ResourceNames:[" + " ".join(f'"{n}"' for n in self.resource_names) + "]")
        if self.non_resource_urls:
            parts.append(
                "NonResourceURLs:[" + " ".join(f'"{u}"' for u in self.non_resource_urls) + "]"
            )
        parts.append("Verbs:[" + " ".join(f'"{v}"' for v in self.verbs) + "]")
        return "{" + ", ".join(parts) + "}"


def rules_from_json(raw: Any) -> list[PolicyRule]:
    if not isinstance(raw, list):
        return []
    return [PolicyRule.from_json(r) for r in raw]


@dataclass(frozen=True, slots=True)
class Request:
    """The attributes a rule is matched against (kube's authorizer.Attributes)."""

    verb: str
    resource_request: bool = True
    group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""


def verb_matches(rule: PolicyRule, verb: str) -> bool:
    return ALL in rule.verbs or verb in rule.verbs


def group_matches(rule: PolicyRule, group: str) -> bool:
    return ALL in rule.api_groups or group in rule.api_groups


def resource_matches(rule: PolicyRule, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for r in rule.resources:
        if r in (ALL, combined):
            return True
        if subresource and r == f"*/{subresource}":
            return True
    return False


def name_matches(rule: PolicyRule, name: str) -> bool:
    return not rule.resource_names or name in rule.resource_names


def url_matches(rule: PolicyRule, path: str) -> bool:
    for u in rule.non_resource_urls:
        if u in (ALL, path):
            return True
        if u.endswith("*") and path.startswith(u[:-1]):
            return True
    return False


def rule_allows(rule: PolicyRule, req: Request) -> bool:
    if not verb_matches(rule, req.verb):
        return False
    if req.resource_request:
        return (
            group_matches(rule, req.group)
            and resource_matches(rule, req.resource, req.subresource)
            and name_matches(rule, req.name)
        )
    return url_matches(rule, req.path)


def rules_allow(rules: Iterable[PolicyRule], req: Request) -> bool:
    return any(rule_allows(r, req) for r in rules)


# -- escalation: does one set of rules cover another ----------------------------------------


def _atoms(rule: PolicyRule) -> Iterable[PolicyRule]:
    for verb in rule.verbs:
        for group in rule.api_groups:
            for resource in rule.resources:
                if rule.resource_names:
                    for name in rule.resource_names:
                        yield PolicyRule((verb,), (group,), (resource,), (name,))
                else:
                    yield PolicyRule((verb,), (group,), (resource,))
        for url in rule.non_resource_urls:
            yield PolicyRule((verb,), non_resource_urls=(url,))


def _covers_resource(owner: Sequence[str], resource: str) -> bool:
    if ALL in owner or resource in owner:
        return True
    _, slash, sub = resource.partition("/")
    return bool(slash) and f"*/{sub}" in owner


def _covers_url(owner: Sequence[str], url: str) -> bool:
    for u in owner:
        if u in (ALL, url):
            return True
        if u.endswith("*") and url.startswith(u[:-1]):
            return True
    return False


def _rule_covers(owner: PolicyRule, atom: PolicyRule) -> bool:
    if not (ALL in owner.verbs or atom.verbs[0] in owner.verbs):
        return False
    if atom.non_resource_urls:
        return _covers_url(owner.non_resource_urls, atom.non_resource_urls[0])
    if not (ALL in owner.api_groups or atom.api_groups[0] in owner.api_groups):
        return False
    if not _covers_resource(owner.resources, atom.resources[0]):
        return False
    if not owner.resource_names:
        return True
    return bool(atom.resource_names) and atom.resource_names[0] in owner.resource_names


def uncovered(owner: Sequence[PolicyRule], wanted: Iterable[PolicyRule]) -> list[PolicyRule]:
    """The atoms of ``wanted`` that no rule of ``owner`` covers (empty: no escalation)."""
    missing: list[PolicyRule] = []
    for rule in wanted:
        for atom in _atoms(rule):
            if not any(_rule_covers(o, atom) for o in owner):
                missing.append(atom)
    return missing
