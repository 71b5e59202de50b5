"""JSON for the plugin's hot path without importing :mod:`json`.

``import json`` pulls in ``re``, ``enum``, ``functools`` and ``collections``: about 7 ms of a
~17 ms plugin start, paid on every pod ADD and DEL. The C accelerator ``_json`` that
:mod:`json` itself uses is loaded in well under a millisecond, so decoding goes straight to its
scanner and encoding is a small recursive function over the few types a CNI message holds.
Errors are ``ValueError``, like :func:`json.loads`. If the accelerator is missing (not CPython),
this falls back to :mod:`json`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_WS = " \t\n\r"
_INF = float("inf")

try:
    import _json as _c
except ImportError:  # pragma: no cover - every CPython has it
    _c = None  # type: ignore[assignment]


class _Context:
    """The attributes ``_json.make_scanner`` reads: what ``json.JSONDecoder()`` would set."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        # NaN and Infinity are not JSON; json.loads accepts them, Go (and libcni) do not.
        raise ValueError(f"invalid JSON constant {name}")


# The stub types the context as a scanner; any object with _Context's attributes works.
_scan: Callable[[str, int], tuple[object, int]] | None = (
    _c.make_scanner(_Context()) if _c is not None else None  # type: ignore[arg-type]
)


def loads(data: bytes | str) -> object:
    """Parse one JSON document (UTF-8 when given bytes)."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if _scan is None:  # pragma: no cover
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_WS))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        raise ValueError(f"Expecting value: char {exc.value}") from None
    except SystemError:
        # NOTE: the accelerator builds its error (json.decoder.JSONDecodeError) only if
        # json.decoder is already imported; otherwise it fails without an exception. Errors are
        # the slow path, so let the json module produce the real message.
        import json

        return json.loads(text)
    rest = text[end:]
    if rest.strip(_WS):
        raise ValueError(f"Extra data: char {end}")
    return value


def _quote(s: str) -> str:
    if _c is not None:
        return _c.encode_basestring_ascii(s)
    import json  # pragma: no cover

    return json.dumps(s)  # pragma: no cover


def _encode(obj: object, indent: int | None, level: int, out: list[str]) -> None:
    if isinstance(obj, str):
        out.append(_quote(obj))
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        out.append(int.__repr__(obj))
    elif isinstance(obj, float):
        if not -_INF < obj < _INF:  # NaN or infinite: not JSON
            raise ValueError(f"out of range float value {obj!r} is not JSON")
        out.append(float.__repr__(obj))
    elif isinstance(obj, dict):
        if not obj:
            out.append("{}")
            return
        inner, close, sep = _layout(indent, level)
        out.append("{" + inner)
        for i, (key, value) in enumerate(obj.items()):
            if not isinstance(key, str):
                raise TypeError(f"keys must be str, not {type(key).__name__}")
            if i:
                out.append(sep)
            out.append(_quote(key))
            out.append(": " if indent is not None else ":")
            _encode(value, indent, level + 1, out)
        out.append(close + "}")
    elif isinstance(obj, list | tuple):
        if not obj:
            out.append("[]")
            return
        inner, close, sep = _layout(indent, level)
        out.append("[" + inner)
        for i, value in enumerate(obj):
            if i:
                out.append(sep)
            _encode(value, indent, level + 1, out)
        out.append(close + "]")
    else:
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _layout(indent: int | None, level: int) -> tuple[str, str, str]:
    """(after the opening bracket, before the closing one, between items)."""
    if indent is None:
        return "", "", ","
    inner = "\n" + " " * (indent * (level + 1))
    return inner, "\n" + " " * (indent * level), "," + inner


def dumps(obj: object, *, indent: int | None = None) -> str:
    """Serialise like ``json.dumps(obj, indent=indent)`` (compact separators when None)."""
    out: list[str] = []
    _encode(obj, indent, 0, out)
    return "".join(out)
