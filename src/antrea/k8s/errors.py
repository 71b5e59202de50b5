"""The one error tree of every Kubernetes client in antrea (informers, resources, the lab).

```
AntreaError
 ├── KubeError(status, message, reason)   an API call failed (status 0: server not reached)
 │    ├── Conflict                        409: exists already, or a stale resourceVersion
 │    └── WatchExpired                    410 Gone: the resourceVersion is too old; re-list
 └── KubeconfigError (also a ValueError)  missing, malformed or unsupported kubeconfig
```

`status_error` builds the right class from an HTTP status and the body of the server's answer
(a ``Status`` object, or any text).
"""

from __future__ import annotations

import json

from antrea.errors import AntreaError

__all__ = ["Conflict", "KubeError", "KubeconfigError", "WatchExpired", "status_error"]


class KubeError(AntreaError):
    """A Kubernetes API call failed with an HTTP status (0 when the server was not reached)."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}" if reason else f"{status}: {message}")
        self.status = status
        self.message = message
        self.reason = reason


class Conflict(KubeError):
    """409: the object exists (create) or its resourceVersion is stale (replace)."""


class WatchExpired(KubeError):
    """410 Gone: the resourceVersion asked for is no longer available; list again."""

    def __init__(self, status: int = 410, message: str = "Gone", reason: str = "Expired") -> None:
        super().__init__(status, message, reason)


class KubeconfigError(AntreaError, ValueError):
    """The kubeconfig is missing, malformed or uses an unsupported authentication method."""


def status_error(status: int, body: bytes | str) -> KubeError:
    """The error for an HTTP ``status`` whose body is ``body`` (a ``Status`` object or text)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    message, reason = text[:500], ""
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        message = str(decoded.get("message", message))
        reason = str(decoded.get("reason") or "")
    if status == 410:
        return WatchExpired(status, message, reason or "Expired")
    if status == 409:
        return Conflict(status, message, reason)
    return KubeError(status, message, reason)
