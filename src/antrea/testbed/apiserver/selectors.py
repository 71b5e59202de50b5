"""Field selectors (``?fieldSelector=``) with kube-apiserver's syntax and matching rules.

Only a few fields per kind are supported, exactly like the real server, which answers "field
label not supported: X" for anything else. Label selectors (``?labelSelector=`` and
``metav1.LabelSelector``) are `antrea.k8s.labels`, shared with the controller's compiler; both
kinds raise its `SelectorError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from antrea.k8s.labels import SelectorError

__all__ = ["FieldSelector", "FieldTerm", "SelectorError", "parse_field_selector"]


# --- field selectors -------------------------------------------------------------------------


def _path(*keys: str, default: str = "") -> Callable[[Mapping[str, Any]], str]:
    def get(obj: Mapping[str, Any]) -> str:
        cur: Any = obj
        for k in keys:
            if not isinstance(cur, Mapping):
                return default
            cur = cur.get(k)
        if cur is None:
            return default
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return str(cur)

    return get


def _pod_ip(obj: Mapping[str, Any]) -> str:
    status = obj.get("status") or {}
    ips = status.get("podIPs") or []
    if ips and isinstance(ips[0], Mapping):
        return str(ips[0].get("ip", ""))
    return str(status.get("podIP") or "")


_FieldGetter = Callable[[Mapping[str, Any]], str]
_META: dict[str, _FieldGetter] = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}
_KIND_FIELDS: dict[str, dict[str, _FieldGetter]] = {
    "pod": {
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "spec.hostNetwork": _path("spec", "hostNetwork", default="false"),
        "status.phase": _path("status", "phase"),
        "status.podIP": _pod_ip,
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    "node": {"spec.unschedulable": _path("spec", "unschedulable", default="false")},
    "namespace": {"status.phase": _path("status", "phase")},
    "secret": {"type": _path("type")},
    "service": {"spec.clusterIP": _path("spec", "clusterIP"), "spec.type": _path("spec", "type")},
    "event": {
        **{
            f"involvedObject.{f}": _path("involvedObject", f)
            for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion")
        },
        "involvedObject.fieldPath": _path("involvedObject", "fieldPath"),
        "reason": _path("reason"),
        "reportingComponent": _path("reportingComponent"),
        "source": _path("source", "component"),
        "type": _path("type"),
    },
}
_PLURALS = {
    "pods": "pod",
    "nodes": "node",
    "namespaces": "namespace",
    "secrets": "secret",
    "services": "service",
    "events": "event",
}


def _kind_key(kind: str) -> str:
    k = kind.lower()
    return _PLURALS.get(k, k)


@dataclass(frozen=True, slots=True)
class FieldTerm:
    field: str
    value: str
    negate: bool
    getter: _FieldGetter

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return (self.getter(obj) == self.value) != self.negate


@dataclass(frozen=True, slots=True)
class FieldSelector:
    terms: tuple[FieldTerm, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.terms

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(t.matches(obj) for t in self.terms)

    def __str__(self) -> str:
        return ",".join(f"{t.field}{'!=' if t.negate else '='}{t.value}" for t in self.terms)


def _split_unescaped(s: str, sep: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            cur.append(s[i : i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence in {value!r}")
            out.append(value[i + 1])
            i += 2
            continue
        if c in ",=":
            raise SelectorError(f"invalid field selector: unescaped {c!r} in {value!r}")
        out.append(c)
        i += 1
    return "".join(out)


def _split_term(term: str) -> tuple[str, str, str] | None:
    i = 0
    while i < len(term):
        if term[i] == "\\":
            i += 2
            continue
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
        i += 1
    return None


def parse_field_selector(s: str, kind: str) -> FieldSelector:
    """Parse ``fieldSelector`` for objects of ``kind`` (``Pod`` or ``pods`` alike)."""
    supported = {**_META, **_KIND_FIELDS.get(_kind_key(kind), {})}
    terms: list[FieldTerm] = []
    for part in sorted(_split_unescaped(s, ",")):
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise SelectorError(f"invalid selector: '{s}'; can't understand '{part}'")
        field, op, raw = split
        value = _unescape(raw)
        getter = supported.get(field)
        if getter is None:
            raise SelectorError(f"field label not supported: {field}")
        terms.append(FieldTerm(field, value, op == "!=", getter))
    return FieldSelector(tuple(terms))
