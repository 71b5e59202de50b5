"""Label and field selectors with kube-apiserver's syntax, validation and matching rules.

Label selectors come in two forms: the query-string syntax of ``?labelSelector=`` (parsed here
with the grammar of ``k8s.io/apimachinery/pkg/labels``: ``a=b``, ``a==b``, ``a!=b``,
``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``, ``a>1``, ``a<1``, comma meaning AND) and the
``metav1.LabelSelector`` object form (``matchLabels`` + ``matchExpressions``) found in
NetworkPolicies. Both compile to the same immutable `LabelSelector`, whose `str` is a normalized
form (requirements sorted by key, values sorted), so equal selectors compare and hash equal:
the policy controller keys shared groups by it.

Field selectors (``?fieldSelector=``) only support a few fields per kind, exactly like the real
server, which answers "field label not supported: X" for anything else.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from antrea.k8s.names import is_qualified_name, is_valid_label_value


class SelectorError(ValueError):
    """A selector that kube-apiserver would refuse (400 Bad Request)."""


class Op(enum.Enum):
    IN = "in"
    NOT_IN = "notin"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GT = "gt"
    LT = "lt"


_POSITIVE = frozenset({Op.IN, Op.EQUALS, Op.DOUBLE_EQUALS})
_NEGATIVE = frozenset({Op.NOT_IN, Op.NOT_EQUALS})


@dataclass(frozen=True, slots=True)
class Requirement:
    """One term of a selector: ``key op values`` (values sorted; empty for (Does)Exists)."""

    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.op
        if op in _POSITIVE:
            value = labels.get(self.key)
            return value is not None and value in self.values
        if op in _NEGATIVE:
            value = labels.get(self.key)
            return value is None or value not in self.values
        if op is Op.EXISTS:
            return self.key in labels
        if op is Op.DOES_NOT_EXIST:
            return self.key not in labels
        value = labels.get(self.key)
        if value is None:
            return False
        try:
            have = int(value)
        except ValueError:
            return False
        want = int(self.values[0])
        return have > want if op is Op.GT else have < want

    def __str__(self) -> str:
        op = self.op
        if op is Op.EXISTS:
            return self.key
        if op is Op.DOES_NOT_EXIST:
            return f"!{self.key}"
        if op in (Op.IN, Op.NOT_IN):
            # ("",) must print as "(,)": "()" would be an empty set, which is invalid.
            inner = ",".join(self.values) if self.values != ("",) else ","
            return f"{self.key} {op.value} ({inner})"
        if op is Op.GT:
            return f"{self.key}>{self.values[0]}"
        if op is Op.LT:
            return f"{self.key}<{self.values[0]}"
        return f"{self.key}{op.value}{self.values[0]}"


def make_requirement(key: str, op: Op, values: Iterable[str] = ()) -> Requirement:
    """Validate like ``labels.NewRequirement`` and build a normalized `Requirement`."""
    vals = sorted(set(values))
    key_errs = is_qualified_name(key)
    if key_errs:
        raise SelectorError(f"key: Invalid value: {_quote(key)}: {'; '.join(key_errs)}")
    if op in (Op.IN, Op.NOT_IN):
        if not vals:
            raise SelectorError(
                "values: Invalid value: []string{}: "
                "for 'in', 'notin' operators, values set can't be empty"
            )
    elif op in (Op.EQUALS, Op.DOUBLE_EQUALS, Op.NOT_EQUALS):
        if len(vals) != 1:
            raise SelectorError(
                "values: Invalid value: exact-match compatibility requires one single value"
            )
    elif op in (Op.EXISTS, Op.DOES_NOT_EXIST):
        if vals:
            raise SelectorError(
                "values: Invalid value: values set must be empty for exists and does not exist"
            )
    else:
        if len(vals) != 1:
            raise SelectorError(
                "values: Invalid value: for 'Gt', 'Lt' operators, exactly one value is required"
            )
        try:
            int(vals[0])
        except ValueError:
            raise SelectorError(
                f"values[0]: Invalid value: {_quote(vals[0])}: "
                "for 'Gt', 'Lt' operators, the value must be an integer"
            ) from None
    if op not in (Op.GT, Op.LT):
        for i, value in enumerate(vals):
            value_errs = is_valid_label_value(value)
            if value_errs:
                raise SelectorError(
                    f"values[{i}][{key}]: Invalid value: {_quote(value)}: {'; '.join(value_errs)}"
                )
    if op is Op.DOUBLE_EQUALS:
        op = Op.EQUALS  # same meaning; one spelling keeps the normalized form canonical
    return Requirement(key, op, tuple(vals))


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """An AND of requirements; no requirement at all selects everything."""

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def of(cls, requirements: Iterable[Requirement]) -> LabelSelector:
        """Normalize: sorted by key (then operator and values), duplicates dropped."""
        reqs = sorted(set(requirements), key=lambda r: (r.key, r.op.value, r.values))
        return cls(tuple(reqs))

    @property
    def empty(self) -> bool:
        """True when the selector selects every object."""
        return not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = LabelSelector()


# --- query-string syntax -------------------------------------------------------------------


class _Tok(enum.Enum):
    IDENT = "identifier"
    END = "end of string"
    COMMA = ","
    OPEN = "("
    CLOSE = ")"
    EQ = "="
    DEQ = "=="
    NEQ = "!="
    BANG = "!"
    GT = ">"
    LT = "<"
    IN = "in"
    NOTIN = "notin"


_SPECIAL = {
    "==": _Tok.DEQ,
    "!=": _Tok.NEQ,
    "=": _Tok.EQ,
    "!": _Tok.BANG,
    "(": _Tok.OPEN,
    ")": _Tok.CLOSE,
    ",": _Tok.COMMA,
    ">": _Tok.GT,
    "<": _Tok.LT,
}
_SPECIAL_CHARS = frozenset("=!(),><")


def _lex(s: str) -> list[tuple[_Tok, str]]:
    """Tokens as ``labels.Lexer`` produces them; keywords are resolved by the parser."""
    out: list[tuple[_Tok, str]] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c.isspace():
            i += 1
        elif c in _SPECIAL_CHARS:
            two = s[i : i + 2]
            if two in ("==", "!="):
                out.append((_SPECIAL[two], two))
                i += 2
            else:
                out.append((_SPECIAL[c], c))
                i += 1
        else:
            j = i
            while j < n and not s[j].isspace() and s[j] not in _SPECIAL_CHARS:
                j += 1
            out.append((_Tok.IDENT, s[i:j]))
            i = j
    out.append((_Tok.END, ""))
    return out


class _Parser:
    def __init__(self, s: str) -> None:
        self.toks = _lex(s)
        self.pos = 0

    def peek(self) -> tuple[_Tok, str]:
        return self.toks[self.pos]

    def take(self) -> tuple[_Tok, str]:
        tok = self.toks[self.pos]
        if tok[0] is not _Tok.END:
            self.pos += 1
        return tok

    def fail(self, found: str, expected: str, *, in_requirement: bool = True) -> SelectorError:
        """Upstream prefixes errors raised while parsing one requirement, not between them."""
        prefix = "unable to parse requirement: " if in_requirement else ""
        return SelectorError(f"{prefix}found '{found}', expected: {expected}")

    def parse(self) -> LabelSelector:
        reqs: list[Requirement] = []
        tok, lit = self.peek()
        if tok is _Tok.END:
            return EVERYTHING
        while True:
            tok, lit = self.peek()
            if tok not in (_Tok.IDENT, _Tok.BANG):
                raise self.fail(lit, "!, identifier, or 'end of string'", in_requirement=False)
            reqs.append(self.requirement())
            tok, lit = self.take()
            if tok is _Tok.END:
                return LabelSelector.of(reqs)
            if tok is not _Tok.COMMA:
                raise self.fail(lit, "',' or 'end of string'", in_requirement=False)
            tok, lit = self.peek()
            if tok not in (_Tok.IDENT, _Tok.BANG):
                raise self.fail(lit, "identifier after ','", in_requirement=False)

    def requirement(self) -> Requirement:
        negate = False
        tok, lit = self.take()
        if tok is _Tok.BANG:
            negate = True
            tok, lit = self.take()
        if tok is not _Tok.IDENT:
            raise self.fail(lit, "identifier")
        key = lit
        nxt, _ = self.peek()
        if negate or nxt in (_Tok.END, _Tok.COMMA):
            # "!a" ends the requirement whatever follows; the caller checks for ',' or the end.
            return _checked(key, Op.DOES_NOT_EXIST if negate else Op.EXISTS, ())
        tok, lit = self.take()
        ops = {
            _Tok.EQ: Op.EQUALS,
            _Tok.DEQ: Op.DOUBLE_EQUALS,
            _Tok.NEQ: Op.NOT_EQUALS,
            _Tok.GT: Op.GT,
            _Tok.LT: Op.LT,
        }
        if tok is _Tok.IDENT and lit in ("in", "notin"):
            op = Op.IN if lit == "in" else Op.NOT_IN
            return _checked(key, op, self.value_set())
        if tok not in ops:
            raise self.fail(lit, "in, notin, =, ==, !=, gt, lt")
        return _checked(key, ops[tok], self.exact_value())

    def exact_value(self) -> list[str]:
        tok, _ = self.peek()
        if tok in (_Tok.END, _Tok.COMMA):
            return [""]
        tok, lit = self.take()
        if tok is _Tok.IDENT:
            return [lit]
        raise self.fail(lit, "identifier")

    def value_set(self) -> list[str]:
        tok, lit = self.take()
        if tok is not _Tok.OPEN:
            raise self.fail(lit, "'('")
        values: list[str] = []
        tok, lit = self.peek()
        if tok is _Tok.CLOSE:
            self.take()
            return values
        if tok not in (_Tok.IDENT, _Tok.COMMA):
            raise self.fail(lit, "',', ')' or identifier")
        # Identifiers separated by commas; an empty slot (``(a,)`` or ``(,a)``) is "".
        expect_value = True
        while True:
            tok, lit = self.take()
            if tok is _Tok.IDENT and expect_value:
                values.append(lit)
                expect_value = False
            elif tok is _Tok.COMMA:
                if expect_value:
                    values.append("")
                expect_value = True
            elif tok is _Tok.CLOSE:
                if expect_value:
                    values.append("")
                return values
            else:
                raise self.fail(lit, "',', or identifier")


def _checked(key: str, op: Op, values: Iterable[str]) -> Requirement:
    try:
        return make_requirement(key, op, values)
    except SelectorError as exc:
        raise SelectorError(f"unable to parse requirement: {exc}") from None


def parse_label_selector(s: str) -> LabelSelector:
    """Parse the ``labelSelector`` query syntax; raises `SelectorError` like the server's 400."""
    return _Parser(s).parse()


def label_selector_from_dict(sel: Mapping[str, Any]) -> LabelSelector:
    """Compile a ``metav1.LabelSelector`` object (empty selects everything).

    A *missing* selector (None) means "nothing" in most APIs and "everything" in some, so the
    caller decides what None means; this function only takes a mapping.
    """
    reqs: list[Requirement] = []
    for key, value in (sel.get("matchLabels") or {}).items():
        reqs.append(make_requirement(str(key), Op.EQUALS, [str(value)]))
    ops = {"In": Op.IN, "NotIn": Op.NOT_IN, "Exists": Op.EXISTS, "DoesNotExist": Op.DOES_NOT_EXIST}
    for expr in sel.get("matchExpressions") or ():
        operator = expr.get("operator")
        if operator not in ops:
            raise SelectorError(f'"{operator}" is not a valid label selector operator')
        values = [str(v) for v in expr.get("values") or ()]
        reqs.append(make_requirement(str(expr.get("key", "")), ops[operator], values))
    return LabelSelector.of(reqs)


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
