"""Review resources: answered from the request, never stored.

TokenReview lets other components (the controller's API) validate a bearer token;
SelfSubjectReview and SelfSubjectAccessReview back ``kubectl auth whoami`` and ``kubectl auth
can-i``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from antrea.testbed.apiserver import strategy
from antrea.testbed.apiserver.auth import (
    Authorizer,
    Identity,
    RequestAttributes,
    TokenAuthenticator,
)
from antrea.testbed.apiserver.limits import read_body
from antrea.testbed.apiserver.wire import json_response, read_object

JSON = dict[str, Any]


async def self_subject_review(request: web.Request, identity: Identity) -> web.Response:
    await read_body(request)
    user = {"username": identity.user, "uid": identity.uid, "groups": list(identity.groups)}
    return json_response(
        {
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": strategy.now_rfc3339()},
            "status": {"userInfo": user},
        },
        status=201,
    )


async def self_access_review(
    request: web.Request, identity: Identity, authorizer: Authorizer
) -> web.Response:
    body = await read_object(request)
    raw_spec = body.get("spec")
    spec: JSON = raw_spec if isinstance(raw_spec, dict) else {}
    ra = spec.get("resourceAttributes") or {}
    nra = spec.get("nonResourceAttributes") or {}
    attrs = RequestAttributes(
        verb=str(ra.get("verb") or nra.get("verb") or ""),
        group=str(ra.get("group") or ""),
        resource=str(ra.get("resource") or ""),
        subresource=str(ra.get("subresource") or ""),
        namespace=str(ra.get("namespace") or ""),
        name=str(ra.get("name") or ""),
        path=str(nra.get("path") or ""),
    )
    allowed = authorizer.authorize(identity, attrs)
    return json_response(
        {
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": {"allowed": allowed},
        },
        status=201,
    )


async def token_review(request: web.Request, authenticator: TokenAuthenticator) -> web.Response:
    body = await read_object(request)
    spec = body.get("spec") or {}
    token = spec.get("token") if isinstance(spec, dict) else None
    ident = authenticator.authenticate_token(token) if isinstance(token, str) else None
    status: JSON
    if ident is None:
        status = {"user": {}, "error": "invalid bearer token"}
    else:
        status = {
            "authenticated": True,
            "user": {
                "username": ident.user,
                "uid": ident.uid,
                "groups": list(ident.groups),
                **({"extra": {k: list(v) for k, v in ident.extra}} if ident.extra else {}),
            },
            "audiences": spec.get("audiences") or [],
        }
    return json_response(
        {
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": status,
        },
        status=201,
    )
