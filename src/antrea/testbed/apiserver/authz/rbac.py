"""The RBAC authorizer: Roles, ClusterRoles and their bindings, read from the store.

Evaluated per request from the stored objects (there are tens of them, not thousands), so a
written binding takes effect on the next request, as in kube-apiserver. A ClusterRole with an
``aggregationRule`` holds its own rules plus those of every ClusterRole its selectors match
(computed when evaluated rather than written back by a controller).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from antrea.k8s.labels import SelectorError, label_selector_from_dict
from antrea.testbed.apiserver.auth import Identity
from antrea.testbed.apiserver.authz.rules import PolicyRule, Request, rule_allows, rules_from_json
from antrea.testbed.apiserver.store import Store

JSON = dict[str, Any]
RBAC_GROUP = "rbac.authorization.k8s.io"
CLUSTERROLES = (RBAC_GROUP, "clusterroles")
CLUSTERROLEBINDINGS = (RBAC_GROUP, "clusterrolebindings")
ROLES = (RBAC_GROUP, "roles")
ROLEBINDINGS = (RBAC_GROUP, "rolebindings")
SERVICEACCOUNT_PREFIX = "system:serviceaccount:"


def subject_matches(subject: Any, identity: Identity, binding_namespace: str) -> bool:
    if not isinstance(subject, dict):
        return False
    kind, name = subject.get("kind"), subject.get("name")
    if not isinstance(name, str) or not name:
        return False
    if kind == "User":
        return identity.user == name
    if kind == "Group":
        return name in identity.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_namespace
        return identity.user == f"{SERVICEACCOUNT_PREFIX}{ns}:{name}"
    return False


def describe_subject(subject: JSON, binding_namespace: str) -> str:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "ServiceAccount":
        return f'ServiceAccount "{subject.get("namespace") or binding_namespace}/{name}"'
    return f'{kind} "{name}"'


@dataclass(frozen=True, slots=True)
class Grant:
    """Rules that reach an identity through one binding (for allow reasons)."""

    binding_kind: str
    binding: str
    binding_namespace: str
    role_kind: str
    role: str
    subject: str
    rules: tuple[PolicyRule, ...]

    def reason(self) -> str:
        where = f' in namespace "{self.binding_namespace}"' if self.binding_namespace else ""
        binding = (
            f"{self.binding_namespace}/{self.binding}" if self.binding_namespace else self.binding
        )
        return (
            f'RBAC: allowed by {self.binding_kind} "{binding}" of {self.role_kind} '
            f'"{self.role}" to {self.subject}{where}'
        )


class RBACAuthorizer:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- role resolution ------------------------------------------------------------------

    def cluster_role_rules(
        self, name: str, _seen: frozenset[str] = frozenset()
    ) -> tuple[PolicyRule, ...] | None:
        role = self.store.get(CLUSTERROLES, "", name)
        if role is None:
            return None
        rules = rules_from_json(role.get("rules"))
        aggregation = role.get("aggregationRule")
        if isinstance(aggregation, dict):
            seen = _seen | {name}
            rules.extend(self._aggregated(seen, aggregation.get("clusterRoleSelectors")))
        return tuple(rules)

    def _aggregated(self, seen: frozenset[str], selectors: Any) -> list[PolicyRule]:
        """Rules of the ClusterRoles the selectors match (aggregated ones included)."""
        if not isinstance(selectors, list):
            return []
        parsed = []
        for sel in selectors:
            if not isinstance(sel, dict):
                continue
            try:
                parsed.append(label_selector_from_dict(sel))
            except (SelectorError, TypeError, ValueError):
                continue
        out: list[PolicyRule] = []
        for other in self.store.list(CLUSTERROLES):
            meta = other["metadata"]
            other_name = meta.get("name")
            if not isinstance(other_name, str) or other_name in seen:
                continue
            labels = meta.get("labels") or {}
            if any(s.matches(labels) for s in parsed):
                out.extend(self.cluster_role_rules(other_name, seen) or ())
        return out

    def role_ref_rules(self, ref: Any, namespace: str) -> tuple[PolicyRule, ...] | None:
        """The rules a roleRef names (None: the role does not exist or the ref is bad)."""
        if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
            return None
        if ref.get("kind") == "ClusterRole":
            return self.cluster_role_rules(ref["name"])
        if ref.get("kind") == "Role" and namespace:
            role = self.store.get(ROLES, namespace, ref["name"])
            return None if role is None else tuple(rules_from_json(role.get("rules")))
        return None

    def grants(self, identity: Identity, namespace: str) -> Iterator[Grant]:
        """Every binding that gives ``identity`` rules, cluster-wide then in ``namespace``."""
        for binding in self.store.list(CLUSTERROLEBINDINGS):
            yield from self._grants_of(binding, identity, "ClusterRoleBinding", "")
        if namespace:
            for binding in self.store.list(ROLEBINDINGS, namespace):
                yield from self._grants_of(binding, identity, "RoleBinding", namespace)

    def _grants_of(
        self, binding: JSON, identity: Identity, kind: str, namespace: str
    ) -> Iterator[Grant]:
        subjects = binding.get("subjects")
        if not isinstance(subjects, list):
            return
        subject = next((s for s in subjects if subject_matches(s, identity, namespace)), None)
        if subject is None:
            return
        ref = binding.get("roleRef")
        if kind == "ClusterRoleBinding" and not (
            isinstance(ref, dict) and ref.get("kind") == "ClusterRole"
        ):
            return
        rules = self.role_ref_rules(ref, namespace)
        if rules is None:
            return
        assert isinstance(ref, dict)
        yield Grant(
            binding_kind=kind,
            binding=binding["metadata"]["name"],
            binding_namespace=namespace,
            role_kind=str(ref.get("kind")),
            role=str(ref.get("name")),
            subject=describe_subject(subject, namespace),
            rules=rules,
        )

    def rules_for(self, identity: Identity, namespace: str) -> list[PolicyRule]:
        """All rules ``identity`` holds in ``namespace`` ("" = cluster-wide only)."""
        return [r for g in self.grants(identity, namespace) for r in g.rules]

    # -- decisions ------------------------------------------------------------------------

    def decide(self, identity: Identity, req: Request, namespace: str) -> tuple[bool, str]:
        for grant in self.grants(identity, namespace):
            if any(rule_allows(r, req) for r in grant.rules):
                return True, grant.reason()
        return False, ""
