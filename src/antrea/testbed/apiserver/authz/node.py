"""The Node authorizer and node restriction: what a kubelet identity may touch.

A node identity is user ``system:node:<name>`` in group ``system:nodes``. As in kube-apiserver
(Node authorizer + NodeRestriction admission), it may:

- read Secrets, ConfigMaps and PersistentVolumeClaims only when a pod bound to it references
  them (volumes, projected sources, env, envFrom, imagePullSecrets), one at a time by name;
- read Nodes, Pods and Services (what a kubelet lists), create Events, and review tokens and
  access;
- write only its own Node (and ``nodes/status``), its own Lease in ``kube-node-lease``, the
  status of pods bound to it, and create/delete (mirror) pods bound to it.

Everything else is left to RBAC (where no default binding gives ``system:nodes`` anything), so a
node's token is refused on other nodes' objects, other pods, Secrets it has no pod for,
Endpoints, policies, bindings.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

from antrea.testbed.apiserver.auth import Identity, RequestAttributes
from antrea.testbed.apiserver.authz.rules import PolicyRule, Request, rules_allow
from antrea.testbed.apiserver.store import Store

JSON = dict[str, Any]
NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
NODE_LEASE_NAMESPACE = "kube-node-lease"
PODS = ("", "pods")
LEASE_ONLY = "can only access node lease with the same name as the requesting node"

# The system:node ClusterRole's rules (kube-apiserver bootstraps it; the Node authorizer
# applies them to node identities, narrowed below).
NODE_RULES: tuple[PolicyRule, ...] = (
    PolicyRule(("create",), ("authentication.k8s.io",), ("tokenreviews",)),
    PolicyRule(
        ("create",),
        ("authorization.k8s.io",),
        ("subjectaccessreviews", "localsubjectaccessreviews"),
    ),
    PolicyRule(("get", "list", "watch"), ("",), ("services",)),
    PolicyRule(("create", "get", "list", "watch"), ("",), ("nodes",)),
    PolicyRule(("update", "patch"), ("",), ("nodes/status",)),
    PolicyRule(("update", "patch"), ("",), ("nodes",)),
    PolicyRule(("create", "update", "patch"), ("", "events.k8s.io"), ("events",)),
    PolicyRule(("get", "list", "watch"), ("",), ("pods",)),
    PolicyRule(("create", "delete"), ("",), ("pods",)),
    PolicyRule(("update", "patch"), ("",), ("pods/status",)),
    PolicyRule(("create",), ("",), ("pods/eviction",)),
    PolicyRule(("get",), ("",), ("secrets", "configmaps")),
    PolicyRule(("get", "list", "watch"), ("",), ("persistentvolumeclaims", "persistentvolumes")),
    PolicyRule(("update", "patch"), ("",), ("persistentvolumeclaims/status",)),
    PolicyRule(("create",), ("",), ("serviceaccounts/token",)),
    PolicyRule(
        ("get", "create", "update", "patch", "delete"), ("coordination.k8s.io",), ("leases",)
    ),
)


class Decision(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    NO_OPINION = "no-opinion"


def node_name(identity: Identity) -> str | None:
    """The node an identity is, or None when it is not a node identity."""
    if NODES_GROUP not in identity.groups or not identity.user.startswith(NODE_PREFIX):
        return None
    name = identity.user[len(NODE_PREFIX) :]
    return name or None


def pod_references(pod: JSON) -> Iterator[tuple[str, str]]:
    """(resource, name) of every Secret, ConfigMap and PVC a pod uses."""
    spec = pod.get("spec") or {}
    for ref in spec.get("imagePullSecrets") or ():
        if isinstance(ref, dict) and ref.get("name"):
            yield "secrets", str(ref["name"])
    for vol in spec.get("volumes") or ():
        if not isinstance(vol, dict):
            continue
        if isinstance(vol.get("secret"), dict) and vol["secret"].get("secretName"):
            yield "secrets", str(vol["secret"]["secretName"])
        if isinstance(vol.get("configMap"), dict) and vol["configMap"].get("name"):
            yield "configmaps", str(vol["configMap"]["name"])
        pvc = vol.get("persistentVolumeClaim")
        if isinstance(pvc, dict) and pvc.get("claimName"):
            yield "persistentvolumeclaims", str(pvc["claimName"])
        projected = vol.get("projected")
        if isinstance(projected, dict):
            for src in projected.get("sources") or ():
                if not isinstance(src, dict):
                    continue
                for key, resource in (("secret", "secrets"), ("configMap", "configmaps")):
                    if isinstance(src.get(key), dict) and src[key].get("name"):
                        yield resource, str(src[key]["name"])
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or ():
            if not isinstance(c, dict):
                continue
            for env in c.get("env") or ():
                vf = env.get("valueFrom") if isinstance(env, dict) else None
                if not isinstance(vf, dict):
                    continue
                for key, resource in (
                    ("secretKeyRef", "secrets"),
                    ("configMapKeyRef", "configmaps"),
                ):
                    if isinstance(vf.get(key), dict) and vf[key].get("name"):
                        yield resource, str(vf[key]["name"])
            for env_from in c.get("envFrom") or ():
                if not isinstance(env_from, dict):
                    continue
                for key, resource in (("secretRef", "secrets"), ("configMapRef", "configmaps")):
                    if isinstance(env_from.get(key), dict) and env_from[key].get("name"):
                        yield resource, str(env_from[key]["name"])


_GRAPH_RESOURCES = ("secrets", "configmaps", "persistentvolumeclaims")


class NodeAuthorizer:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _pods_on(self, node: str, namespace: str | None = None) -> Iterator[JSON]:
        for pod in self.store.list(PODS, namespace):
            if (pod.get("spec") or {}).get("nodeName") == node:
                yield pod

    def _related(self, node: str, resource: str, namespace: str, name: str) -> bool:
        return any(
            (resource, name) in set(pod_references(pod)) for pod in self._pods_on(node, namespace)
        )

    def _pod_bound(self, node: str, namespace: str, name: str) -> bool:
        pod = self.store.get(PODS, namespace, name)
        return pod is not None and (pod.get("spec") or {}).get("nodeName") == node

    def decide(self, identity: Identity, attrs: RequestAttributes) -> tuple[Decision, str]:
        node = node_name(identity)
        if node is None:
            return Decision.NO_OPINION, ""
        if not attrs.resource:
            return Decision.NO_OPINION, ""
        verb, group, resource, sub = attrs.verb, attrs.group, attrs.resource, attrs.subresource
        ns, name = attrs.namespace, attrs.name
        no_relation = f"no relationship found between node '{node}' and this object"
        if group == "" and resource in _GRAPH_RESOURCES and not sub:
            if verb not in ("get", "list", "watch"):
                return Decision.NO_OPINION, "can only read resources of this type"
            if not name:
                return Decision.NO_OPINION, "can only get individual resources of this type"
            if self._related(node, resource, ns, name):
                return Decision.ALLOW, ""
            return Decision.NO_OPINION, no_relation
        if group == "coordination.k8s.io" and resource == "leases":
            lease_verbs = ("get", "create", "update", "patch", "delete")
            own = verb == "create" or name == node
            if ns == NODE_LEASE_NAMESPACE and verb in lease_verbs and own:
                return Decision.ALLOW, ""
            return Decision.NO_OPINION, LEASE_ONLY
        writes = ("update", "patch", "delete", "create")
        if group == "" and resource == "nodes" and verb in writes[:3] and name != node:
            return Decision.DENY, f"node '{node}' cannot modify node '{name}'"
        pod_write = group == "" and resource == "pods" and verb in writes and bool(name)
        if pod_write and not self._pod_bound(node, ns, name):
            return Decision.DENY, f"node '{node}' can only modify pods bound to it"
        req = Request(
            verb=verb,
            group=group,
            resource=resource,
            subresource=sub,
            name=name,
        )
        if rules_allow(NODE_RULES, req):
            return Decision.ALLOW, ""
        return Decision.NO_OPINION, ""

    def admit(self, identity: Identity, rt_group: str, rt_resource: str, obj: JSON) -> str | None:
        """NodeRestriction on creates: a node creates only its own Node/Lease and its pods."""
        node = node_name(identity)
        if node is None:
            return None
        meta = obj.get("metadata") or {}
        if rt_group == "" and rt_resource == "nodes" and meta.get("name") != node:
            return f'node "{node}" is not allowed to modify node "{meta.get("name")}"'
        if (
            rt_group == "coordination.k8s.io"
            and rt_resource == "leases"
            and meta.get("name") != node
        ):
            return LEASE_ONLY
        spec = obj.get("spec") or {}
        if rt_group == "" and rt_resource == "pods" and spec.get("nodeName") != node:
            return f'node "{node}" can only create pods with spec.nodeName set to itself'
        return None
