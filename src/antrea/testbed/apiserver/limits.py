"""The server's size and shape limits, as kube-apiserver enforces them.

kube-apiserver reads at most 3 MiB of request body (``--max-request-body-bytes``; more is 413
``RequestEntityTooLarge``), caps a JSON patch at 10000 operations (413) and the bytes its
``copy`` operations may add at 3 MiB (``JSONPatchMaxCopyBytes``; the patch then fails, 422).
We apply the same numbers, plus two limits of our own that keep every stored object servable:
a nesting depth (our JSON encoder writes at most 255 levels and every response wraps the
object in a few more; kube-apiserver's decoder stops at 10000, deeper than any real object) and
a stored size equal to the body limit. A decoded value must also be plain JSON: string keys,
integers that fit in 64 bits, finite numbers.
"""

from __future__ import annotations

import itertools
import math
import operator
from typing import Any

import orjson
from aiohttp import web

from antrea.errors import AntreaError
from antrea.testbed.apiserver import errors

MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024
MAX_OBJECT_BYTES = MAX_REQUEST_BODY_BYTES
MAX_JSON_PATCH_OPERATIONS = 10000
MAX_JSON_PATCH_COPY_BYTES = 3 * 1024 * 1024
# Objects and arrays inside one decoded body. A List response adds two levels, a snapshot line
# three, and the encoder stops at 255.
MAX_DEPTH = 100
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
# `check_json_text`: every byte but brackets deleted, braces made brackets; then '[' -> 2 and
# ']' -> 0, so that the running sum of (byte - 1) is the nesting depth.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_AS_BRACKETS = bytes.maketrans(b"{}", b"[]")
_AS_STEPS = bytes.maketrans(b"[]", b"\x02\x00")
_PEEL_PASSES = 16


def too_large(message: str) -> errors.APIError:
    return errors.APIError(
        errors.status_body(
            code=413,
            reason="RequestEntityTooLarge",
            message=f"Request entity too large: {message}",
        )
    )


async def read_body(request: web.Request) -> bytes:
    """The request body, refused with 413 beyond `MAX_REQUEST_BODY_BYTES`."""
    if (request.content_length or 0) > MAX_REQUEST_BODY_BYTES:
        raise too_large(f"limit is {MAX_REQUEST_BODY_BYTES}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > MAX_REQUEST_BODY_BYTES:
            raise too_large(f"limit is {MAX_REQUEST_BODY_BYTES}")
        chunks.append(chunk)
    return b"".join(chunks)


class ShapeError(AntreaError, ValueError):
    """A decoded value that is not plain JSON within `MAX_DEPTH`."""


def check_json(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise `ShapeError` unless ``value`` is plain JSON nested at most ``max_depth`` deep.

    Iterative, so a hostile depth cannot exhaust the interpreter's stack. Strings, the bulk
    of any body, are recognized by their exact type first.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth >= max_depth:
                raise ShapeError(f"exceeded max depth of {max_depth}")
            for key, sub in item.items():
                if type(key) is not str and not isinstance(key, str):
                    raise ShapeError(f"object key {key!r} is not a string")
                kind = type(sub)
                if kind is str:
                    continue
                if kind is dict or kind is list or isinstance(sub, dict | list):
                    stack.append((sub, depth + 1))
                else:
                    _check_scalar(sub)
        elif isinstance(item, list):
            if depth >= max_depth:
                raise ShapeError(f"exceeded max depth of {max_depth}")
            for sub in item:
                kind = type(sub)
                if kind is str:
                    continue
                if kind is dict or kind is list or isinstance(sub, dict | list):
                    stack.append((sub, depth + 1))
                else:
                    _check_scalar(sub)
        else:
            _check_scalar(item)


def check_json_text(raw: bytes, *, max_depth: int = MAX_DEPTH) -> None:
    """`check_json` for the value ``orjson.loads(raw)`` returned, read from the text.

    orjson yields plain JSON only (string keys, integers within 64 bits, larger ones as
    floats, and it refuses non-finite numbers), so only the depth is left to check, and the
    text tells it at C speed: escaped backslashes and quotes dropped, then string contents
    (between the remaining quotes), then everything but brackets. Each pass of removing
    the empty pairs ``[]`` peels exactly one level; after a few, the rest is measured as the
    highest running sum (linear however deep the text is).
    """
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return  # not enough containers to nest that deep
    text = raw
    if b"\\" in text:
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    if b'"' in text:
        text = b"".join(text.split(b'"')[::2])
    rest = text.translate(_AS_BRACKETS, _NOT_BRACKETS)
    peeled = 0
    while rest and peeled < _PEEL_PASSES:
        rest = rest.replace(b"[]", b"")
        peeled += 1
    depth = peeled
    if rest:
        steps = rest.translate(_AS_STEPS)
        depth += max(map(operator.sub, itertools.accumulate(steps), itertools.count(1)))
    if depth > max_depth:
        raise ShapeError(f"exceeded max depth of {max_depth}")


def _check_scalar(value: Any) -> None:
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise ShapeError(f"number {value} is out of range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ShapeError(f"number {value} is not finite")
        return
    raise ShapeError(f"a {type(value).__name__} is not a JSON value")


def depth_of(value: Any) -> int:
    """How many objects/arrays deep ``value`` nests (a scalar is 0)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            subs = item.values() if isinstance(item, dict) else item
            stack.extend((sub, depth) for sub in subs)
    return deepest


def encode_stored(obj: Any) -> bytes:
    """``obj`` as it will be stored and served: 413 beyond `MAX_OBJECT_BYTES`, 400 if it
    cannot be encoded at all (it then must not be stored)."""
    try:
        raw = orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise errors.bad_request(f"the object cannot be stored: {exc}") from None
    if len(raw) > MAX_OBJECT_BYTES:
        raise too_large(f"the object is {len(raw)} bytes, limit is {MAX_OBJECT_BYTES}")
    return raw
