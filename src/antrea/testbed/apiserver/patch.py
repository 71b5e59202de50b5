"""PATCH bodies as kube-apiserver applies them: JSON merge, JSON patch and strategic merge.

``kubectl apply``, ``label`` and ``annotate`` send strategic merge patches, whose list semantics
come from ``patchStrategy``/``patchMergeKey`` struct tags on the Go types (containers merge by
name, ports by containerPort, ...). We cannot read Go tags, so `_SCHEMAS` restates them for the
kinds the embedded server serves; any list not described is atomic (replaced), which is also
upstream's rule for untagged lists (NetworkPolicy's ingress/egress/from/to/ports/policyTypes are
all untagged). Custom resources have no Go type: like the real server we refuse strategic merge
for them with 415, and JSON merge / JSON patch work for every kind.

Errors carry the HTTP status the real server would answer: 400 for a malformed body, 415 for an
unsupported patch type, 422 when a well-formed JSON patch cannot be applied (failed ``test``,
missing path).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import orjson

from antrea.errors import AntreaError
from antrea.testbed.apiserver.limits import (
    MAX_DEPTH,
    MAX_JSON_PATCH_COPY_BYTES,
    MAX_JSON_PATCH_OPERATIONS,
    ShapeError,
    check_json,
    check_json_text,
    depth_of,
)

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class PatchError(AntreaError):
    """A patch the server refuses; ``code`` is the HTTP status (400, 415 or 422)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- strategic merge patch metadata ------------------------------------------------------


@dataclass(frozen=True)
class _F:
    """Patch metadata of one field: list merge strategy, merge key, and the item's fields."""

    merge: bool = False  # patchStrategy:"merge" on a list
    key: tuple[str, ...] = ()  # patchMergeKey (empty for a merged list of primitives)
    retain_keys: bool = False
    sub: dict[str, _F] = field(default_factory=dict)


_Schema = dict[str, _F]


def _merge_list(
    key: str | tuple[str, ...], sub: _Schema | None = None, *, retain: bool = False
) -> _F:
    keys = (key,) if isinstance(key, str) else key
    return _F(merge=True, key=keys, retain_keys=retain, sub=sub or {})


def _struct(sub: _Schema) -> _F:
    return _F(sub=sub)


_PRIMITIVE_SET = _F(merge=True)
_CONDITIONS = _merge_list("type")

_OBJECT_META: _Schema = {
    "ownerReferences": _merge_list("uid"),
    "finalizers": _PRIMITIVE_SET,
}

_CONTAINER: _Schema = {
    # Upstream's merge key is containerPort alone; matching also on protocol (defaulted to TCP)
    # keeps "80/TCP" and "80/UDP" apart, and falls back to containerPort when it is ambiguous.
    "ports": _merge_list(("containerPort", "protocol")),
    "env": _merge_list("name"),
    "volumeMounts": _merge_list("mountPath"),
    "volumeDevices": _merge_list("devicePath"),
}

_POD_SPEC: _Schema = {
    "volumes": _merge_list("name", retain=True),
    "initContainers": _merge_list("name", _CONTAINER),
    "containers": _merge_list("name", _CONTAINER),
    "ephemeralContainers": _merge_list("name", _CONTAINER),
    "imagePullSecrets": _merge_list("name"),
    "hostAliases": _merge_list("ip"),
    "topologySpreadConstraints": _merge_list("topologyKey"),
    "resourceClaims": _merge_list("name", retain=True),
    "schedulingGates": _merge_list("name"),
}

_POD_STATUS: _Schema = {
    "conditions": _CONDITIONS,
    "podIPs": _merge_list("ip"),
    "hostIPs": _merge_list("ip"),
    "resourceClaimStatuses": _merge_list("name", retain=True),
}

_POD_TEMPLATE = _struct({"metadata": _struct(_OBJECT_META), "spec": _struct(_POD_SPEC)})

_SCHEMAS: dict[str, _Schema] = {
    "Pod": {"spec": _struct(_POD_SPEC), "status": _struct(_POD_STATUS)},
    "Node": {
        "spec": _struct({"podCIDRs": _PRIMITIVE_SET}),
        "status": _struct({"conditions": _CONDITIONS, "addresses": _merge_list("type")}),
    },
    "Namespace": {"status": _struct({"conditions": _CONDITIONS})},
    "Service": {
        "spec": _struct({"ports": _merge_list(("port", "protocol"))}),
        "status": _struct({"conditions": _CONDITIONS}),
    },
    "ServiceAccount": {"secrets": _merge_list("name")},
    "Endpoints": {},
    "ConfigMap": {},
    "Secret": {},
    "Event": {},
    "NetworkPolicy": {},
    "Lease": {},
    "CustomResourceDefinition": {},
    "Deployment": {"spec": _struct({"template": _POD_TEMPLATE})},
    "DaemonSet": {"spec": _struct({"template": _POD_TEMPLATE})},
}

#: merge key fields whose absence means a default value (protocol is defaulted to TCP).
_KEY_DEFAULTS = {"protocol": "TCP"}


def strategic_merge_supported(kind: str) -> bool:
    """Whether strategic merge patch is available (built-in kinds only, as upstream)."""
    return kind in _SCHEMAS


def _schema_for(kind: str) -> _Schema:
    return {"metadata": _struct(_OBJECT_META), **_SCHEMAS[kind]}


# --- entry point --------------------------------------------------------------------------


def apply_patch(obj: JSON, body: bytes, content_type: str, *, kind: str) -> JSON:
    """Return ``obj`` with the patch applied (``obj`` itself is left untouched)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == STRATEGIC_MERGE_PATCH and not strategic_merge_supported(kind):
        raise PatchError(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            f"{JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}",
        )
    if media not in (MERGE_PATCH, JSON_PATCH, STRATEGIC_MERGE_PATCH):
        raise PatchError(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            f"{JSON_PATCH}, {MERGE_PATCH}"
            + (f", {STRATEGIC_MERGE_PATCH}" if strategic_merge_supported(kind) else ""),
        )
    try:
        patch = orjson.loads(body or b"null")
        check_json_text(body)
    except (orjson.JSONDecodeError, ShapeError) as exc:
        raise PatchError(400, f"error decoding patch: {exc}") from None
    if media == JSON_PATCH:
        result = json_patch(obj, patch)
    elif media == MERGE_PATCH:
        if not isinstance(patch, dict):
            raise PatchError(400, "Invalid JSON Patch")
        result = merge_patch(obj, patch)
    else:
        if not isinstance(patch, dict):
            raise PatchError(400, "unable to find api field in struct for the patch: not an object")
        result = strategic_merge_patch(obj, patch, kind=kind)
    if not isinstance(result, dict):
        raise PatchError(422, "the patched object is not a JSON object")
    try:
        check_json(result)
    except ShapeError as exc:
        raise PatchError(422, f"the patched object cannot be stored: {exc}") from None
    return result


# --- RFC 7386 -----------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; returns a new value."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# --- RFC 6902 -----------------------------------------------------------------------------


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise PatchError(400, f"invalid JSON pointer: {path!r}")
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(422, f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if allow_end and token == "-":
        return len(container)
    if not (token.isascii() and token.isdigit()) or (token.startswith("0") and token != "0"):
        raise PatchError(422, f"invalid array index: {token!r}")
    idx = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if idx > limit:
        raise PatchError(422, f"array index out of bounds: {idx}")
    return idx


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    cur = doc
    for tok in tokens[:-1]:
        if isinstance(cur, dict):
            if tok not in cur:
                raise PatchError(422, f"doc is missing path: {path!r}")
            cur = cur[tok]
        elif isinstance(cur, list):
            cur = cur[_index(cur, tok, allow_end=False)]
        else:
            raise PatchError(422, f"doc is missing path: {path!r}")
    return cur


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(422, f"doc is missing path: {path!r}")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, allow_end=False)]
    raise PatchError(422, f"doc is missing path: {path!r}")


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError(422, "cannot remove the document root")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(422, f"unable to remove nonexistent key: {last}: missing value")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, allow_end=False))
    raise PatchError(422, f"doc is missing path: {path!r}")


def _add(doc: Any, path: str, value: Any, *, replace: bool = False) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(422, f"replace operation does not apply: doc is missing key: {path}")
        parent[last] = value
    elif isinstance(parent, list):
        if replace:
            parent[_index(parent, last, allow_end=False)] = value
        else:
            parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise PatchError(422, f"doc is missing path: {path!r}")
    return doc


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: unlike Python's ``==``, ``true`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def json_patch(obj: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test); returns a new value."""
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise PatchError(400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise PatchError(
            413,
            f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, "
            f"got {len(ops)}",
        )
    doc = copy.deepcopy(obj)
    copied = 0
    for op in ops:
        name = op.get("op")
        path = op.get("path")
        if name in ("add", "replace", "test") and "value" not in op:
            raise PatchError(422, f"missing value for {name} operation")
        if name == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif name == "replace":
            doc = _add(doc, path, copy.deepcopy(op["value"]), replace=True)
        elif name == "remove":
            doc, _ = _remove(doc, path)
        elif name == "move":
            if isinstance(path, str) and path.startswith(str(op.get("from")) + "/"):
                raise PatchError(422, "cannot move a value into one of its children")
            doc, value = _remove(doc, op.get("from"))
            doc = _add(doc, path, value)
        elif name == "copy":
            value = _get(doc, op.get("from"))
            # Copies are the one way a small patch builds a huge object: budget them, and
            # keep the result within the depth every stored object must respect.
            copied += len(orjson.dumps(value))
            if copied > MAX_JSON_PATCH_COPY_BYTES:
                raise PatchError(
                    422,
                    f"Unable to copy, would exceed limit of {MAX_JSON_PATCH_COPY_BYTES} bytes",
                )
            if len(_pointer(path)) + depth_of(value) > MAX_DEPTH:
                raise PatchError(422, f"Unable to copy, exceeded max depth of {MAX_DEPTH}")
            doc = _add(doc, path, copy.deepcopy(value))
        elif name == "test":
            if not _json_equal(_get(doc, path), op["value"]):
                raise PatchError(422, f"testing value {path} failed: test failed")
        else:
            raise PatchError(400, f"Unexpected kind: {name}")
    return doc


# --- strategic merge patch ----------------------------------------------------------------

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"
_SET_ORDER = "$setElementOrder/"


def strategic_merge_patch(obj: JSON, patch: JSON, *, kind: str) -> JSON:
    """Apply a strategic merge patch to an object of a built-in ``kind``; returns a new dict."""
    if not strategic_merge_supported(kind):
        raise PatchError(415, f"strategic merge patch is not supported for {kind}")
    return _merge_map(copy.deepcopy(obj), patch, _schema_for(kind))


def _merge_map(original: JSON, patch: JSON, schema: _Schema) -> JSON:
    directive = patch.get(_DIRECTIVE)
    if directive is not None:
        if directive == "replace":
            replaced: JSON = _strip({k: v for k, v in patch.items() if k != _DIRECTIVE})
            return replaced
        if directive == "delete":
            return {}
        if directive != "merge":
            raise PatchError(400, f"Unknown patch type: {directive} in map: {patch}")
    retain = patch.get(_RETAIN_KEYS)
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError(400, "invalid patch: $retainKeys must be a list")
        for key in patch:
            if not key.startswith("$") and key not in retain and patch[key] is not None:
                raise PatchError(422, "The $retainKeys list contains no field that is in the patch")
        for key in list(original):
            if key not in retain:
                del original[key]
    # Order: deletions from primitive lists first, then merges, then element ordering.
    for key, value in patch.items():
        if key.startswith(_DELETE_PRIMITIVE):
            fld = key[len(_DELETE_PRIMITIVE) :]
            if not isinstance(value, list):
                raise PatchError(400, f"invalid patch: {key} must be a list")
            cur = original.get(fld)
            if isinstance(cur, list):
                original[fld] = [v for v in cur if v not in value]
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        meta = schema.get(key)
        if value is None:
            original.pop(key, None)
            continue
        cur = original.get(key)
        if isinstance(value, dict):
            sub = meta.sub if meta else {}
            if isinstance(cur, dict):
                merged = _merge_map(cur, value, sub)
            else:
                merged = _merge_map({}, value, sub)
            if value.get(_DIRECTIVE) == "delete":
                original.pop(key, None)
            else:
                original[key] = merged
        elif isinstance(value, list):
            if meta is not None and meta.merge:
                original[key] = _merge_list_value(cur if isinstance(cur, list) else [], value, meta)
            else:
                original[key] = _strip(value)
        else:
            original[key] = value
    for key, value in patch.items():
        if key.startswith(_SET_ORDER):
            fld = key[len(_SET_ORDER) :]
            meta = schema.get(fld)
            cur = original.get(fld)
            if isinstance(cur, list) and isinstance(value, list):
                original[fld] = _order(cur, value, meta.key if meta else ())
    return original


def _strip(value: Any) -> Any:
    """Drop directives and nulls from a value taken verbatim (new keys, atomic lists)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and _DIRECTIVE in v)]
    return value


def _item_key(item: Any, keys: tuple[str, ...]) -> tuple[Any, ...] | None:
    if not isinstance(item, dict) or keys[0] not in item:
        return None
    return tuple(item.get(k, _KEY_DEFAULTS.get(k)) for k in keys)


def _hkey(value: Any) -> str | bytes | tuple[str | bytes, ...]:
    """A hashable identity with JSON equality (``true`` is not ``1``): strings stand for
    themselves, anything else is its canonical JSON (bytes, never equal to a string)."""
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        return tuple(_hkey(v) for v in value)  # type: ignore[misc]
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


_GONE = object()


class _KeyedList:
    """A list merged by merge key, indexed so each patch item costs O(1), not O(len).

    Large lists (3 MiB of finalizers or ports) against a large patch would otherwise take
    minutes; matching follows upstream's rules: the full merge key, or, when the patch item
    omits a secondary key (kubectl sends ``containerPort`` alone in deletions), the primary.
    """

    def __init__(self, items: list[Any], keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.items: list[Any] = []
        self.full: dict[Any, list[int]] = {}
        self.primary: dict[Any, list[int]] = {}
        for item in items:
            self.append(item)

    def append(self, item: Any) -> None:
        i = len(self.items)
        self.items.append(item)
        key = _item_key(item, self.keys)
        if key is not None:
            self.full.setdefault(_hkey(key), []).append(i)
            self.primary.setdefault(_hkey(item[self.keys[0]]), []).append(i)

    def _live(self, positions: list[int]) -> list[int]:
        return [i for i in positions if self.items[i] is not _GONE]

    def _partial(self, item: JSON) -> bool:
        return len(self.keys) > 1 and not all(k in item for k in self.keys[1:])

    def find(self, item: JSON) -> int:
        """Position of the first element matching ``item``, or -1."""
        want = _item_key(item, self.keys)
        if want is None:
            return -1
        full = self._live(self.full.get(_hkey(want), []))
        if full:
            return full[0]
        if self._partial(item):
            primary = self._live(self.primary.get(_hkey(item[self.keys[0]]), []))
            if primary:
                return primary[0]
        return -1

    def delete(self, item: JSON) -> None:
        """Remove every element matching ``item`` by full key (or primary, if partial)."""
        want = _item_key(item, self.keys)
        if want is None:
            return
        doomed = self._live(self.full.get(_hkey(want), []))
        if self._partial(item):
            doomed += self._live(self.primary.get(_hkey(item[self.keys[0]]), []))
        for i in doomed:
            self.items[i] = _GONE

    def result(self) -> list[Any]:
        return [item for item in self.items if item is not _GONE]


def _merge_list_value(original: list[Any], patch: list[Any], meta: _F) -> list[Any]:
    replace = any(isinstance(p, dict) and p.get(_DIRECTIVE) == "replace" for p in patch)
    if replace:
        return [_strip(p) for p in patch if not (isinstance(p, dict) and _DIRECTIVE in p)]
    if not meta.key:
        # A merged list of primitives: set union, original order first.
        out = list(original)
        seen = {_hkey(o) for o in out}
        for p in patch:
            if isinstance(p, dict) and _DIRECTIVE in p:
                continue
            key = _hkey(p)
            if key not in seen:
                seen.add(key)
                out.append(p)
        return out
    merged = _KeyedList(original, meta.key)
    for p in patch:
        if not isinstance(p, dict):
            raise PatchError(400, f"invalid patch: list item {p!r} is not an object")
        directive = p.get(_DIRECTIVE)
        if directive == "delete":
            merged.delete(p)
            continue
        if directive not in (None, "merge"):
            raise PatchError(400, f"Unknown patch type: {directive} in list item: {p}")
        if meta.key[0] not in p:
            raise PatchError(400, f"map: {p} does not contain declared merge key: {meta.key[0]}")
        idx = merged.find(p)
        sub = meta.sub
        if idx >= 0 and isinstance(merged.items[idx], dict):
            merged.items[idx] = _merge_map(merged.items[idx], p, sub)
        else:
            merged.append(_merge_map({}, p, sub))
    return merged.result()


def _order(items: list[Any], order: list[Any], keys: tuple[str, ...]) -> list[Any]:
    """Apply ``$setElementOrder``: listed items in that order, others stay after their
    original predecessor (in one pass: lists may be long)."""

    def ident(item: Any) -> Any:
        if keys and isinstance(item, dict):
            return _hkey(_item_key(item, keys))
        return _hkey(item)

    rank = {ident(o): i for i, o in enumerate(order)}
    head: list[Any] = []  # unlisted items before the first listed one
    after: dict[int, list[Any]] = {}  # listed item's position -> unlisted items following it
    listed: list[int] = []
    last: int | None = None
    for i, it in enumerate(items):
        key = ident(it)
        if key in rank:
            last = i
            listed.append(i)
            after[i] = []
        elif last is None:
            head.append(it)
        else:
            after[last].append(it)
    listed.sort(key=lambda i: rank[ident(items[i])])
    out = head
    for i in listed:
        out.append(items[i])
        out.extend(after[i])
    return out
