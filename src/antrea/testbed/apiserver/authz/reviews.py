"""Access reviews (``authorization.k8s.io/v1``), answered by the server's authorizer.

- SubjectAccessReview: may user/groups do X? (what a controller asks on behalf of its clients)
- LocalSubjectAccessReview: the same, confined to the namespace in the URL
- SelfSubjectAccessReview: may I do X? (``kubectl auth can-i``)
- SelfSubjectRulesReview: what may I do in a namespace? (``kubectl auth can-i --list``)
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from antrea.testbed.apiserver import errors
from antrea.testbed.apiserver.auth import Identity, RequestAttributes
from antrea.testbed.apiserver.authz import Authorization
from antrea.testbed.apiserver.authz.node import node_name
from antrea.testbed.apiserver.wire import json_response, read_object

JSON = dict[str, Any]
GROUP = "authorization.k8s.io"
KINDS = {
    "subjectaccessreviews": "SubjectAccessReview",
    "localsubjectaccessreviews": "LocalSubjectAccessReview",
    "selfsubjectaccessreviews": "SelfSubjectAccessReview",
    "selfsubjectrulesreviews": "SelfSubjectRulesReview",
}


def _invalid(kind: str, field: str, detail: str) -> errors.APIError:
    return errors.invalid(
        group=GROUP,
        kind=kind,
        name="",
        message=f'{kind}.{GROUP} "" is invalid: {field}: {detail}',
        causes=[{"reason": "FieldValueInvalid", "message": detail, "field": field}],
    )


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def attributes_from_spec(kind: str, spec: JSON) -> RequestAttributes:
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (ra is None) == (nra is None) or not isinstance(ra or nra, dict):
        raise _invalid(
            kind,
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )
    if isinstance(ra, dict):
        return RequestAttributes(
            verb=_str(ra.get("verb")),
            group=_str(ra.get("group")),
            resource=_str(ra.get("resource")),
            subresource=_str(ra.get("subresource")),
            namespace=_str(ra.get("namespace")),
            name=_str(ra.get("name")),
        )
    assert isinstance(nra, dict)
    return RequestAttributes(verb=_str(nra.get("verb")), path=_str(nra.get("path")))


def _answer(kind: str, body: JSON, spec: JSON, status: JSON) -> web.Response:
    raw_meta = body.get("metadata")
    meta: JSON = raw_meta if isinstance(raw_meta, dict) else {}
    return json_response(
        {
            "kind": kind,
            "apiVersion": f"{GROUP}/v1",
            "metadata": {**meta, "creationTimestamp": None},
            "spec": spec,
            "status": status,
        },
        status=201,
    )


def _access_status(authz: Authorization, identity: Identity, attrs: RequestAttributes) -> JSON:
    allowed, reason = authz.decide(identity, attrs)
    status: JSON = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return status


async def handle(
    request: web.Request, resource: str, namespace: str, identity: Identity, authz: Authorization
) -> web.Response:
    kind = KINDS[resource]
    body = await read_object(request)
    spec = body.get("spec")
    if not isinstance(spec, dict):
        raise _invalid(kind, "spec", "Required value")
    if resource == "selfsubjectrulesreviews":
        ns = _str(spec.get("namespace"))
        rules = authz.rules_for(identity, ns)
        resource_rules = [r.to_json() for r in rules if r.resources or r.api_groups]
        non_resource = [r.to_json() for r in rules if r.non_resource_urls]
        masters = "system:masters" in identity.groups
        if masters and not any("*" in r.verbs and "*" in r.resources for r in rules):
            resource_rules.append({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
            non_resource.append({"verbs": ["*"], "nonResourceURLs": ["*"]})
        status: JSON = {
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource,
            # The Node authorizer's grants are not rules RBAC can list.
            "incomplete": node_name(identity) is not None,
        }
        return _answer(kind, body, spec, status)
    attrs = attributes_from_spec(kind, spec)
    if resource == "selfsubjectaccessreviews":
        return _answer(kind, body, spec, _access_status(authz, identity, attrs))
    user = _str(spec.get("user"))
    raw_groups = spec.get("groups")
    groups = (
        tuple(g for g in raw_groups if isinstance(g, str)) if isinstance(raw_groups, list) else ()
    )
    if not user and not groups:
        raise _invalid(kind, "spec.user", "at least one of user or group must be specified")
    local = resource == "localsubjectaccessreviews"
    if local and (not attrs.resource or attrs.namespace != namespace):
        raise _invalid(kind, "spec.resourceAttributes.namespace", "must match metadata.namespace")
    subject = Identity(user=user, uid=_str(spec.get("uid")), groups=groups)
    return _answer(kind, body, spec, _access_status(authz, subject, attrs))
