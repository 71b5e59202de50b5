"""The default roles and bindings kube-apiserver bootstraps (label
``kubernetes.io/bootstrapping: rbac-defaults``), written at every start.

Like kube-apiserver's reconciliation, a missing default is created, and one still annotated
``rbac.authorization.kubernetes.io/autoupdate: "true"`` is reset to the default when it was
changed; an operator who sets the annotation to ``"false"`` keeps their edits.
"""

from __future__ import annotations

from typing import Any

from antrea.testbed.apiserver.authz.node import NODE_RULES
from antrea.testbed.apiserver.authz.rules import PolicyRule

JSON = dict[str, Any]
RBAC_V1 = "rbac.authorization.k8s.io/v1"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"
READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")

_VIEW_CORE = (
    "configmaps",
    "endpoints",
    "persistentvolumeclaims",
    "persistentvolumeclaims/status",
    "pods",
    "replicationcontrollers",
    "replicationcontrollers/scale",
    "serviceaccounts",
    "services",
    "services/status",
    "bindings",
    "events",
    "limitranges",
    "namespaces/status",
    "pods/log",
    "pods/status",
    "replicationcontrollers/status",
    "resourcequotas",
    "resourcequotas/status",
    "namespaces",
)


def _rule(verbs: tuple[str, ...], groups: tuple[str, ...], resources: tuple[str, ...]) -> JSON:
    return PolicyRule(verbs, groups, resources).to_json()


def _urls(verbs: tuple[str, ...], urls: tuple[str, ...]) -> JSON:
    return PolicyRule(verbs, non_resource_urls=urls).to_json()


def _meta(name: str, labels: dict[str, str] | None = None) -> JSON:
    return {
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults", **(labels or {})},
        "annotations": {AUTOUPDATE: "true"},
    }


def _cluster_role(
    name: str, rules: list[JSON], *, labels: dict[str, str] | None = None, aggregate: str = ""
) -> JSON:
    role: JSON = {
        "apiVersion": RBAC_V1,
        "kind": "ClusterRole",
        "metadata": _meta(name, labels),
        "rules": rules,
    }
    if aggregate:
        role["aggregationRule"] = {
            "clusterRoleSelectors": [{"matchLabels": {f"{AGGREGATE}{aggregate}": "true"}}]
        }
    return role


def _binding(name: str, role: str, groups: tuple[str, ...]) -> JSON:
    return {
        "apiVersion": RBAC_V1,
        "kind": "ClusterRoleBinding",
        "metadata": _meta(name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g} for g in groups
        ],
    }


def cluster_roles() -> list[JSON]:
    view_rules = [
        _rule(READ, ("",), _VIEW_CORE),
        _rule(READ, ("apps",), ("daemonsets", "deployments", "replicasets", "statefulsets")),
        _rule(READ, ("networking.k8s.io",), ("ingresses", "networkpolicies")),
        _rule(READ, ("discovery.k8s.io",), ("endpointslices",)),
        _rule(READ, ("coordination.k8s.io",), ("leases",)),
    ]
    edit_rules = [
        _rule(
            WRITE,
            ("",),
            (
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "pods",
                "replicationcontrollers",
                "services",
                "serviceaccounts",
                "secrets",
                "events",
            ),
        ),
        _rule(READ, ("",), ("secrets",)),
        _rule(WRITE, ("apps",), ("daemonsets", "deployments", "replicasets", "statefulsets")),
        _rule(WRITE, ("networking.k8s.io",), ("ingresses", "networkpolicies")),
        _rule(WRITE, ("discovery.k8s.io",), ("endpointslices",)),
        _rule(WRITE, ("coordination.k8s.io",), ("leases",)),
    ]
    admin_rules = [
        _rule(READ + WRITE, ("rbac.authorization.k8s.io",), ("roles", "rolebindings")),
        _rule(("create",), ("authorization.k8s.io",), ("localsubjectaccessreviews",)),
    ]
    return [
        _cluster_role("cluster-admin", [_rule(("*",), ("*",), ("*",)), _urls(("*",), ("*",))]),
        _cluster_role(
            "system:discovery",
            [
                _urls(
                    ("get",),
                    (
                        "/api",
                        "/api/*",
                        "/apis",
                        "/apis/*",
                        "/healthz",
                        "/livez",
                        "/openapi",
                        "/openapi/*",
                        "/readyz",
                        "/version",
                        "/version/",
                    ),
                )
            ],
        ),
        _cluster_role(
            "system:public-info-viewer",
            [_urls(("get",), ("/healthz", "/livez", "/readyz", "/version", "/version/"))],
        ),
        _cluster_role(
            "system:basic-user",
            [
                _rule(
                    ("create",),
                    ("authorization.k8s.io",),
                    ("selfsubjectaccessreviews", "selfsubjectrulesreviews"),
                ),
                _rule(("create",), ("authentication.k8s.io",), ("selfsubjectreviews",)),
            ],
        ),
        _cluster_role(
            "system:monitoring",
            [
                _urls(
                    ("get",),
                    (
                        "/healthz",
                        "/healthz/*",
                        "/livez",
                        "/livez/*",
                        "/metrics",
                        "/metrics/slis",
                        "/readyz",
                        "/readyz/*",
                    ),
                )
            ],
        ),
        _cluster_role("system:node", [r.to_json() for r in NODE_RULES]),
        _cluster_role(
            "system:auth-delegator",
            [
                _rule(("create",), ("authentication.k8s.io",), ("tokenreviews",)),
                _rule(("create",), ("authorization.k8s.io",), ("subjectaccessreviews",)),
            ],
        ),
        _cluster_role("view", [], aggregate="view", labels={f"{AGGREGATE}edit": "true"}),
        _cluster_role("edit", [], aggregate="edit", labels={f"{AGGREGATE}admin": "true"}),
        _cluster_role("admin", [], aggregate="admin"),
        _cluster_role("system:aggregate-to-view", view_rules, labels={f"{AGGREGATE}view": "true"}),
        _cluster_role("system:aggregate-to-edit", edit_rules, labels={f"{AGGREGATE}edit": "true"}),
        _cluster_role(
            "system:aggregate-to-admin", admin_rules, labels={f"{AGGREGATE}admin": "true"}
        ),
    ]


def cluster_role_bindings() -> list[JSON]:
    authenticated = ("system:authenticated",)
    return [
        _binding("cluster-admin", "cluster-admin", ("system:masters",)),
        _binding("system:discovery", "system:discovery", authenticated),
        _binding("system:basic-user", "system:basic-user", authenticated),
        _binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            ("system:authenticated", "system:unauthenticated"),
        ),
        _binding("system:monitoring", "system:monitoring", ("system:monitoring",)),
    ]
