"""Interned LabelSelectors of the compiler, and the group names derived from them.

A selector arrives as the decoded JSON of a ``metav1.LabelSelector``; `antrea.k8s.labels`
normalizes it (`normalize_selector`: ``matchLabels: {a: b}`` is the requirement ``a In (b)``,
values and requirements sorted) so that selectors that mean the same thing compare equal, which
is what lets identical selectors in different policies share one group. The normalized form is
also what the group name is derived from (see `group_name`).

Matching is on the hot path (every pod event, every new group scans its scope), so each selector
is compiled once (`antrea.k8s.labels.compile_matcher`), and the controller interns selectors so
that one object exists per distinct selector.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from json.encoder import encode_basestring as _encode_string

from antrea.k8s.labels import (
    EXISTS,
    IN,
    Labels,
    Requirement,
    compile_matcher,
)
from antrea.k8s.labels import Requirements as SelectorKey

__all__ = [
    "GROUP_NAME_NAMESPACE_HEX",
    "Selector",
    "SelectorKey",
    "group_key_text",
    "group_name",
    "group_text",
]

# The UUIDv5 namespace of group names: a fixed, arbitrary value of this project.
_GROUP_NAME_NAMESPACE = bytes.fromhex("7c1f4e9a3b6d4f0e9a5b2c8d1e0f3a47")


class Selector:
    """One interned, normalized LabelSelector.

    ``index_key`` is a label key every matching label set must carry (from an ``In`` or ``Exists``
    requirement), or ``None`` when the selector can match label sets without any particular key
    (empty selector, only ``NotIn``/``DoesNotExist``): indexes file the selector under that key.
    ``index_values`` narrows an ``In`` index key to its values.
    """

    __slots__ = ("index_key", "index_values", "key", "matches", "refs", "text")

    def __init__(self, key: SelectorKey) -> None:
        self.key = key
        self.text = _requirements_text(key)
        self.matches: Callable[[Labels], bool] = compile_matcher(key)
        self.refs = 0
        self.index_key: str | None = None
        self.index_values: tuple[str, ...] | None = None
        best: Requirement | None = None
        for req in key:
            better_in = req[1] == IN and (
                best is None or best[1] != IN or len(req[2]) < len(best[2])
            )
            if better_in or (req[1] == EXISTS and best is None):
                best = req
        if best is not None:
            self.index_key = best[0]
            self.index_values = best[2] if best[1] == IN else None

    @property
    def is_empty(self) -> bool:
        return not self.key

    def __repr__(self) -> str:
        return f"Selector({self.key!r})"


def _requirements_text(key: SelectorKey) -> str:
    return json.dumps([list(r) for r in key], separators=(",", ":"), ensure_ascii=False)


def group_text(namespace: str, pod: Selector, ns: Selector | None) -> str:
    """`group_key_text` from interned selectors (their JSON is computed once per selector)."""
    ns_text = "null" if ns is None else ns.text
    return f"[{_encode_string(namespace)},{pod.text},{ns_text}]"


def group_key_text(namespace: str, pod: SelectorKey, ns: SelectorKey | None) -> str:
    """The canonical text of a group selector: compact JSON ``[namespace, pod_reqs, ns_reqs]``.

    ``namespace`` is the policy namespace for a pod-only peer (or an applied-to selector) and
    ``""`` when a namespaceSelector is present; ``ns_reqs`` is ``null`` when there is no
    namespaceSelector. Requirements are ``[key, operator, [values...]]`` sorted as in
    `normalize_selector`; matchLabels become ``In`` requirements.
    """
    return json.dumps(
        [namespace, [list(r) for r in pod], None if ns is None else [list(r) for r in ns]],
        separators=(",", ":"),
        ensure_ascii=False,
    )


def group_name(text: str) -> str:
    """UUIDv5 (RFC 4122, SHA-1) of a canonical group text; same value as ``uuid.uuid5``.

    Spelled out on the hex digest because building ``uuid.UUID`` objects is several times slower
    and this runs once per group (125,000 times in the scale benchmark): the version nibble
    becomes 5 and the variant nibble 8-b.
    """
    h = hashlib.sha1(_GROUP_NAME_NAMESPACE + text.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
GROUP_NAME_NAMESPACE_HEX = _GROUP_NAME_NAMESPACE.hex()
