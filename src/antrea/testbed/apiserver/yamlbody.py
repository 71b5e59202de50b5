"""YAML request bodies, decoded the way kube-apiserver's YAML-to-JSON step does.

Two things differ from a plain ``yaml.safe_load``:

- **Aliases are budgeted before anything is built.** A few hundred bytes of nested aliases
  ("billion laughs") expand to gigabytes once the object is serialized. Like the YAML library
  kube-apiserver uses, we refuse a document whose expansion comes mostly from aliases once it
  is large (``excessive aliasing``), and a document nested deeper than `limits.MAX_DEPTH`
  even through aliases. The count runs over parser events, which the parser produces without
  recursion, so the check itself is cheap and bounded by the body size.
- **Only JSON comes out.** Timestamps stay strings, non-string keys become strings (as the
  YAML-to-JSON conversion does), and anything JSON cannot hold is refused.
"""

from __future__ import annotations

from typing import Any

import yaml

from antrea.errors import AntreaError
from antrea.testbed.apiserver.limits import MAX_DEPTH, ShapeError, check_json

# Up to this many expanded nodes any alias use is fine; beyond it, aliases may contribute at
# most as many nodes as the document spells out itself.
ALIAS_FREE_NODES = 100_000

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _JSONLoader(_BaseLoader):  # type: ignore[misc]
    """SafeLoader without the timestamp resolver: ``2024-01-01`` stays a string."""


_JSONLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


class YAMLRefused(AntreaError, ValueError):
    """A YAML body that is malformed or exceeds a limit."""


def _check_events(raw: bytes) -> None:
    # Per open collection: [expanded node count, deepest expanded nesting below it, anchor].
    stack: list[list[Any]] = []
    anchors: dict[str, tuple[int, int]] = {}
    spelled = 0  # nodes written out in the document
    expanded = 0  # nodes after alias expansion

    def add(count: int, depth: int) -> None:
        if stack:
            top = stack[-1]
            top[0] += count
            top[1] = max(top[1], depth)

    for event in yaml.parse(raw, Loader=_BaseLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            spelled += 1
            stack.append([1, 0, event.anchor])
            if len(stack) > MAX_DEPTH:
                raise YAMLRefused(f"exceeded max depth of {MAX_DEPTH}")
        elif isinstance(event, yaml.CollectionEndEvent):
            count, below, anchor = stack.pop()
            if anchor is not None:
                anchors[anchor] = (count, below + 1)
            add(count, below + 1)
            if not stack:
                expanded += count
        elif isinstance(event, yaml.ScalarEvent):
            spelled += 1
            if event.anchor is not None:
                anchors[event.anchor] = (1, 0)
            add(1, 0)
            if not stack:
                expanded += 1
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:
                raise YAMLRefused(f"unknown anchor {event.anchor!r} referenced")
            count, depth = anchors[event.anchor]
            if len(stack) + depth > MAX_DEPTH:
                raise YAMLRefused(f"exceeded max depth of {MAX_DEPTH}")
            add(count, depth)
            if not stack:
                expanded += count
        else:
            continue
        current = expanded + sum(frame[0] for frame in stack)
        if current > ALIAS_FREE_NODES and current - spelled > spelled:
            raise YAMLRefused("yaml: document contains excessive aliasing")


def _to_json(value: Any) -> Any:
    """Non-string keys as strings (``1``, ``true``, ``null``), recursively (depth is bounded)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            if isinstance(key, bool):
                name = "true" if key else "false"
            elif key is None:
                name = "null"
            elif isinstance(key, int | float | str):
                name = str(key)
            else:
                raise YAMLRefused(f"unsupported map key of type {type(key).__name__}")
            out[name] = _to_json(sub)
        return out
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    return value


def load(raw: bytes) -> Any:
    """Decode one YAML document into plain JSON values, or raise `YAMLRefused`."""
    try:
        _check_events(raw)
        value = _to_json(yaml.load(raw, Loader=_JSONLoader))
        check_json(value)
    except ShapeError as exc:
        raise YAMLRefused(str(exc)) from None
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise YAMLRefused(f"error converting YAML to JSON: {exc}") from None
    return value
