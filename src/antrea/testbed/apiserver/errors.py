"""Kubernetes API errors as `metav1.Status` bodies.

Clients (kubectl, client-go, kubernetes-asyncio) branch on ``reason`` and ``code``, not on the
message, so every failure the server returns goes through `APIError` with the reason the real
kube-apiserver would use. Messages follow the upstream wording because users read them in
kubectl's output.
"""

from __future__ import annotations

from typing import Any

from antrea.errors import AntreaError

JSON = dict[str, Any]


def status_body(
    *,
    code: int,
    reason: str,
    message: str,
    details: JSON | None = None,
) -> JSON:
    """A failure `Status` object."""
    body: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def success_status(*, name: str, group: str, resource: str, uid: str = "") -> JSON:
    """The `Status` a delete returns when there is no object left to show."""
    details: JSON = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    if uid:
        details["uid"] = uid
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


class APIError(AntreaError):
    """An error with a ready `Status` body; handlers raise it, the middleware renders it."""

    def __init__(self, body: JSON) -> None:
        super().__init__(body.get("message", ""))
        self.body = body

    @property
    def code(self) -> int:
        return int(self.body["code"])


def qualified(resource: str, group: str) -> str:
    """`pods` or `networkpolicies.networking.k8s.io`, as upstream messages name resources."""
    return f"{resource}.{group}" if group else resource


def _details(name: str, group: str, resource: str) -> JSON:
    details: JSON = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return details


def not_found(*, group: str, resource: str, name: str) -> APIError:
    return APIError(
        status_body(
            code=404,
            reason="NotFound",
            message=f'{qualified(resource, group)} "{name}" not found',
            details=_details(name, group, resource),
        )
    )


def already_exists(*, group: str, resource: str, name: str) -> APIError:
    return APIError(
        status_body(
            code=409,
            reason="AlreadyExists",
            message=f'{qualified(resource, group)} "{name}" already exists',
            details=_details(name, group, resource),
        )
    )


def conflict(*, group: str, resource: str, name: str, detail: str | None = None) -> APIError:
    why = detail or (
        "the object has been modified; please apply your changes to the latest version and try "
        "again"
    )
    return APIError(
        status_body(
            code=409,
            reason="Conflict",
            message=f"Operation cannot be fulfilled on {qualified(resource, group)} "
            f'"{name}": {why}',
            details=_details(name, group, resource),
        )
    )


def bad_request(message: str) -> APIError:
    return APIError(status_body(code=400, reason="BadRequest", message=message))


def unauthorized() -> APIError:
    return APIError(status_body(code=401, reason="Unauthorized", message="Unauthorized"))


def forbidden(message: str, *, group: str = "", resource: str = "", name: str = "") -> APIError:
    details = _details(name, group, resource) if resource else None
    return APIError(status_body(code=403, reason="Forbidden", message=message, details=details))


def gone(message: str) -> APIError:
    return APIError(status_body(code=410, reason="Expired", message=message))


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> APIError:
    return APIError(status_body(code=405, reason="MethodNotAllowed", message=message))


def unsupported_media_type(content_type: str) -> APIError:
    return APIError(
        status_body(
            code=415,
            reason="UnsupportedMediaType",
            message="the body of the request was in an unknown format - accepted media types "
            "include: "
            f"application/json-patch+json, application/merge-patch+json, "
            f"application/strategic-merge-patch+json (got {content_type!r})",
        )
    )


def invalid(*, group: str, kind: str, name: str, causes: list[JSON], message: str) -> APIError:
    details: JSON = {"name": name, "kind": kind, "causes": causes}
    if group:
        details["group"] = group
    return APIError(status_body(code=422, reason="Invalid", message=message, details=details))


def resource_not_found(path: str) -> APIError:
    """A URL that names no resource at all (upstream answers with a bare 404 Status)."""
    return APIError(
        status_body(
            code=404,
            reason="NotFound",
            message="the server could not find the requested resource",
            details={
                "causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]
            },
        )
    )


def internal(message: str) -> APIError:
    return APIError(status_body(code=500, reason="InternalError", message=message))


def service_unavailable(message: str) -> APIError:
    return APIError(status_body(code=503, reason="ServiceUnavailable", message=message))
