"""Authorization for the embedded API server: Node authorizer, RBAC, escalation checks.

`Authorization` is the server's authorizer (kube-apiserver's ``--authorization-mode=Node,RBAC``
plus the ``system:masters`` shortcut): a request is allowed when the requester is in
``system:masters``, or the Node authorizer allows it, or an RBAC binding does; the Node
authorizer can also refuse outright (a node writing another node's object or a pod not bound
to it), which RBAC cannot override. Writes of Roles and bindings go through `admit`, which
refuses to grant permissions the writer does not hold unless it may ``escalate``/``bind``.

Modules: `rules` (rule matching and coverage), `rbac` (bindings -> rules, from the store),
`node` (node identities), `defaults` (bootstrapped roles), `reviews` (access reviews).
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from antrea.testbed.apiserver import errors
from antrea.testbed.apiserver.auth import Identity, RequestAttributes
from antrea.testbed.apiserver.authz import defaults
from antrea.testbed.apiserver.authz.node import Decision, NodeAuthorizer
from antrea.testbed.apiserver.authz.rbac import (
    CLUSTERROLEBINDINGS,
    CLUSTERROLES,
    RBAC_GROUP,
    RBACAuthorizer,
)
from antrea.testbed.apiserver.authz.rules import PolicyRule, Request, rules_from_json, uncovered
from antrea.testbed.apiserver.query import is_true
from antrea.testbed.apiserver.routing import ResourcePath
from antrea.testbed.apiserver.store import Store

JSON = dict[str, Any]
MASTERS = "system:masters"

# Who is making the current request; unset for the server's own writes (bootstrap, lab setup).
CURRENT_IDENTITY: contextvars.ContextVar[Identity | None] = contextvars.ContextVar(
    "apiserver_identity", default=None
)


def resource_attributes(
    method: str, target: ResourcePath, query: Any, path: str
) -> RequestAttributes:
    """kube-apiserver's RequestInfo for a resource URL: verb, namespace, name."""
    verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch"}.get(
        method, method.lower()
    )
    watch = target.watch or is_true(query.get("watch"))
    name = target.name or ""
    if method == "GET" and (target.name is None or watch):
        verb = "watch" if watch else "list"
        if not name:
            name = _name_from_field_selector(query.get("fieldSelector", ""))
    elif method == "DELETE":
        verb = "delete" if target.name is not None else "deletecollection"
    namespace = target.namespace or ""
    if target.group == "" and target.resource == "namespaces" and target.name:
        namespace = target.name  # the namespace object itself is in its own namespace
    return RequestAttributes(
        verb=verb,
        group=target.group,
        resource=target.resource,
        subresource=target.subresource,
        namespace=namespace,
        name=name,
        path=path,
    )


def _name_from_field_selector(selector: str) -> str:
    for term in selector.split(","):
        for op in ("==", "="):
            key, sep, value = term.partition(op)
            if sep and key.strip() == "metadata.name" and not key.endswith("!"):
                return unquote(value.strip())
    return ""


def non_resource_attributes(method: str, path: str) -> RequestAttributes:
    return RequestAttributes(verb=method.lower(), path=path)


def forbidden(identity: Identity, attrs: RequestAttributes, reason: str = "") -> errors.APIError:
    """403 with kube-apiserver's message (``pods "x" is forbidden: User "u" cannot get ...``)."""
    if not attrs.resource:
        message = f'forbidden: User "{identity.user}" cannot {attrs.verb} path "{attrs.path}"'
        if reason:
            message += f": {reason}"
        return errors.forbidden(message)
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    where = f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
    what = errors.qualified(attrs.resource, attrs.group)
    if attrs.name:
        what += f' "{attrs.name}"'
    message = (
        f'{what} is forbidden: User "{identity.user}" cannot {attrs.verb} resource '
        f'"{resource}" in API group "{attrs.group}"{where}'
    )
    if reason:
        message += f": {reason}"
    return errors.forbidden(message, group=attrs.group, resource=attrs.resource, name=attrs.name)


SA_PREFIX = "system:serviceaccount:"


def _impersonation_attrs(user: str) -> RequestAttributes:
    if user.startswith(SA_PREFIX) and user.count(":") == 3:
        _, _, ns, name = user.split(":")
        return RequestAttributes(
            verb="impersonate", resource="serviceaccounts", namespace=ns, name=name
        )
    return RequestAttributes(verb="impersonate", resource="users", name=user)


class Authorization:
    """The server's authorizer (``authorize``/``decide``) and RBAC write admission (``admit``)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.node = NodeAuthorizer(store)
        self.rbac = RBACAuthorizer(store)

    # -- decisions ------------------------------------------------------------------------

    def decide(self, identity: Identity, attrs: RequestAttributes) -> tuple[bool, str]:
        """(allowed, reason)."""
        if MASTERS in identity.groups:
            return True, ""
        decision, reason = self.node.decide(identity, attrs)
        if decision is Decision.ALLOW:
            return True, reason
        if decision is Decision.DENY:
            return False, reason
        req = Request(
            verb=attrs.verb,
            resource_request=bool(attrs.resource),
            group=attrs.group,
            resource=attrs.resource,
            subresource=attrs.subresource,
            name=attrs.name,
            path=attrs.path,
        )
        allowed, rbac_reason = self.rbac.decide(identity, req, attrs.namespace)
        return allowed, rbac_reason if allowed else reason

    def authorize(self, identity: Identity, attrs: RequestAttributes) -> bool:
        return self.decide(identity, attrs)[0]

    def check(self, identity: Identity, attrs: RequestAttributes) -> None:
        allowed, reason = self.decide(identity, attrs)
        if not allowed:
            raise forbidden(identity, attrs, reason)

    def impersonate(self, identity: Identity, headers: Mapping[str, str]) -> Identity:
        """Apply ``Impersonate-*`` headers (``kubectl --as/--as-group``), as kube-apiserver does:
        each impersonated user, group, uid and extra needs the ``impersonate`` verb on it."""
        user = headers.get("Impersonate-User")
        groups = [v for k, v in headers.items() if k.lower() == "impersonate-group"]
        uid = headers.get("Impersonate-Uid")
        extra_prefix = "impersonate-extra-"
        extras: dict[str, list[str]] = {}
        for k, v in headers.items():
            if k.lower().startswith(extra_prefix):
                extras.setdefault(unquote(k[len(extra_prefix) :]).lower(), []).append(v)
        if user is None:
            if groups or uid or extras:
                raise errors.bad_request(
                    "requested impersonation of groups, uid or extra without impersonating a user"
                )
            return identity
        checks = [_impersonation_attrs(user)]
        checks += [RequestAttributes(verb="impersonate", resource="groups", name=g) for g in groups]
        if uid:
            checks.append(
                RequestAttributes(
                    verb="impersonate", group="authentication.k8s.io", resource="uids", name=uid
                )
            )
        for key, values in extras.items():
            checks += [
                RequestAttributes(
                    verb="impersonate",
                    group="authentication.k8s.io",
                    resource="userextras",
                    subresource=key,
                    name=v,
                )
                for v in values
            ]
        for attrs in checks:
            self.check(identity, attrs)
        all_groups = list(groups)
        if user.startswith(SA_PREFIX) and user.count(":") == 3:
            ns = user.split(":")[2]
            all_groups += ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]
        if user != "system:anonymous" and "system:authenticated" not in all_groups:
            all_groups.append("system:authenticated")
        return Identity(
            user=user,
            uid=uid or "",
            groups=tuple(dict.fromkeys(all_groups)),
            extra=tuple((k, tuple(v)) for k, v in sorted(extras.items())),
        )

    def rules_for(self, identity: Identity, namespace: str) -> list[PolicyRule]:
        return self.rbac.rules_for(identity, namespace)

    # -- admission ------------------------------------------------------------------------

    def admit(self, group: str, resource: str, obj: JSON, old: JSON | None) -> None:
        """Checks a write that authorization alone cannot judge (needs the object)."""
        identity = CURRENT_IDENTITY.get()
        if identity is None:
            return
        if old is None:
            reason = self.node.admit(identity, group, resource, obj)
            if reason:
                meta = obj.get("metadata") or {}
                raise errors.forbidden(
                    f'{errors.qualified(resource, group)} "{meta.get("name", "")}" is '
                    f"forbidden: {reason}",
                    group=group,
                    resource=resource,
                    name=str(meta.get("name", "")),
                )
        if group != RBAC_GROUP:
            return
        binding = resource in ("rolebindings", "clusterrolebindings")
        if binding and old is not None and old.get("roleRef") != obj.get("roleRef"):
            name = str((obj.get("metadata") or {}).get("name", ""))
            kind = "RoleBinding" if resource == "rolebindings" else "ClusterRoleBinding"
            raise errors.invalid(
                group=RBAC_GROUP,
                kind=kind,
                name=name,
                message=f'{kind}.{RBAC_GROUP} "{name}" is invalid: roleRef: Invalid value: '
                "cannot change roleRef",
                causes=[
                    {
                        "reason": "FieldValueInvalid",
                        "message": "Invalid value: cannot change roleRef",
                        "field": "roleRef",
                    }
                ],
            )
        if MASTERS in identity.groups:
            return
        if resource in ("roles", "clusterroles"):
            self._admit_role(identity, resource, obj, old)
        elif resource in ("rolebindings", "clusterrolebindings"):
            self._admit_binding(identity, resource, obj, old)

    def _escalation_error(
        self, identity: Identity, resource: str, obj: JSON, detail: str
    ) -> errors.APIError:
        name = str((obj.get("metadata") or {}).get("name", ""))
        groups = " ".join(f'"{g}"' for g in identity.groups)
        return errors.forbidden(
            f'{errors.qualified(resource, RBAC_GROUP)} "{name}" is forbidden: user '
            f'"{identity.user}" (groups=[{groups}]) {detail}',
            group=RBAC_GROUP,
            resource=resource,
            name=name,
        )

    def _admit_role(self, identity: Identity, resource: str, obj: JSON, old: JSON | None) -> None:
        if (
            old is not None
            and old.get("rules") == obj.get("rules")
            and (old.get("aggregationRule") == obj.get("aggregationRule"))
        ):
            return
        meta = obj.get("metadata") or {}
        ns = str(meta.get("namespace") or "")
        escalate = RequestAttributes(
            verb="escalate",
            group=RBAC_GROUP,
            resource=resource,
            namespace=ns,
            name=str(meta.get("name", "")),
        )
        if self.authorize(identity, escalate):
            return
        if obj.get("aggregationRule"):
            raise self._escalation_error(
                identity,
                resource,
                obj,
                "must have cluster-admin privileges to use the aggregationRule",
            )
        self._confirm_no_escalation(identity, resource, obj, ns, rules_from_json(obj.get("rules")))

    def _confirm_no_escalation(
        self, identity: Identity, resource: str, obj: JSON, ns: str, wanted: list[PolicyRule]
    ) -> None:
        missing = uncovered(self.rbac.rules_for(identity, ns), wanted)
        if missing:
            raise self._escalation_error(
                identity,
                resource,
                obj,
                "is attempting to grant RBAC permissions not currently held:\n"
                + "\n".join(r.describe() for r in missing),
            )

    def _admit_binding(
        self, identity: Identity, resource: str, obj: JSON, old: JSON | None
    ) -> None:
        ref = obj.get("roleRef")
        if old is not None and old.get("subjects") == obj.get("subjects"):
            return
        meta = obj.get("metadata") or {}
        ns = str(meta.get("namespace") or "") if resource == "rolebindings" else ""
        if not isinstance(ref, dict):
            raise self._escalation_error(identity, resource, obj, "has no valid roleRef")
        role_resource = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
        bind = RequestAttributes(
            verb="bind",
            group=RBAC_GROUP,
            resource=role_resource,
            namespace=ns,
            name=str(ref.get("name", "")),
        )
        if self.authorize(identity, bind):
            return
        rules = self.rbac.role_ref_rules(ref, ns)
        if rules is None:
            raise self._escalation_error(
                identity,
                resource,
                obj,
                f'is attempting to bind {ref.get("kind")} "{ref.get("name")}", which does not '
                "exist",
            )
        self._confirm_no_escalation(identity, resource, obj, ns, list(rules))

    # -- bootstrap ------------------------------------------------------------------------

    def default_objects(self) -> list[tuple[tuple[str, str], JSON]]:
        return [(CLUSTERROLES, r) for r in defaults.cluster_roles()] + [
            (CLUSTERROLEBINDINGS, b) for b in defaults.cluster_role_bindings()
        ]
