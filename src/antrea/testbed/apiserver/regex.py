"""CRD `pattern` matching as kube-apiserver does it: RE2 syntax, linear time.

kube-apiserver evaluates OpenAPI `pattern`s with Go's `regexp` (RE2), whose run time is linear
in the input. Python's `re` backtracks: a pattern such as `^(a+)+$` against a crafted value blocks
the event loop (and every other request) for minutes. Patterns therefore go through Google's RE2
binding, which also refuses the constructs Go refuses (look-behind, back-references).
"""

from __future__ import annotations

import functools
from typing import Any

import re2  # type: ignore[import-untyped]

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


@functools.lru_cache(maxsize=1024)
def _compile(pattern: str) -> Any | None:
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error:
        return None


def valid(pattern: str) -> bool:
    """Whether `pattern` is a regular expression kube-apiserver would accept (RE2 syntax)."""
    return _compile(pattern) is not None


def matches(pattern: str, value: str) -> bool | None:
    """Whether `value` contains a match of `pattern`; None when the pattern is not valid RE2."""
    compiled = _compile(pattern)
    if compiled is None:
        return None
    return compiled.search(value) is not None
