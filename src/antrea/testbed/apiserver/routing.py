"""URL layout of the Kubernetes REST API, parsed once per request.

``/api/v1/...`` is the core group, ``/apis/<group>/<version>/...`` every other group. After the
group/version come an optional legacy ``watch`` segment, then either
``namespaces/<ns>/<resource>[/<name>[/<subresource>]]`` or
``<resource>[/<name>[/<subresource>]]``. ``namespaces/<name>[/status|finalize]`` is the
namespace object itself, not a namespaced resource.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ResourcePath:
    group: str
    version: str
    resource: str
    namespace: str | None = None
    name: str | None = None
    subresource: str = ""
    watch: bool = False


@dataclass(frozen=True, slots=True)
class GroupVersionPath:
    """``/api/v1`` or ``/apis/<group>/<version>`` itself (a discovery document)."""

    group: str
    version: str


def parse_path(path: str) -> ResourcePath | GroupVersionPath | None:
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    if parts[0] == "api" and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return GroupVersionPath(group, version)
    watch = False
    if rest[0] == "watch":
        watch, rest = True, rest[1:]
        if not rest:
            return None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        if len(rest) > 5:
            return None
        return ResourcePath(
            group=group,
            version=version,
            namespace=rest[1],
            resource=rest[2],
            name=rest[3] if len(rest) > 3 else None,
            subresource=rest[4] if len(rest) > 4 else "",
            watch=watch,
        )
    if len(rest) > 3:
        return None
    return ResourcePath(
        group=group,
        version=version,
        resource=rest[0],
        name=rest[1] if len(rest) > 1 else None,
        subresource=rest[2] if len(rest) > 2 else "",
        watch=watch,
    )
