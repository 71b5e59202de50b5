"""Tolerant accessors for decoded JSON shared by the per-kind validators.

Validation runs on whatever a client sent: a field of the wrong type reads as empty here and is
reported (or not) by the validator that owns it, never raised as a Python error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from antrea.testbed.apiserver.validation.errors import JSON

PROTOCOLS = ("TCP", "UDP", "SCTP")


def as_dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def dicts(value: Any) -> Iterator[tuple[int, JSON]]:
    """Index and item of a list of objects (non-objects read as empty objects)."""
    for i, item in enumerate(as_list(value)):
        yield i, as_dict(item)


def int_value(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value
