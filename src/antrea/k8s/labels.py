"""Kubernetes label selectors: one normalized form, one parser, one matcher (pure, no I/O).

A selector is a tuple of requirements ``(key, operator, values)``, normalized so that selectors
that mean the same thing are equal: values sorted and deduplicated, requirements sorted and
deduplicated; ``matchLabels: {a: b}``, the query form ``a=b`` and ``a in (b)`` are all the
requirement ``("a", "In", ("b",))`` (and ``a!=b`` is ``("a", "NotIn", ("b",))``). Operators are
metav1's names, plus ``Gt``/``Lt`` (query syntax only) and ``Invalid``.

Two ways in:
- `normalize_selector` reads a ``metav1.LabelSelector`` dict without judging it: the controller's
  compiler gets objects the API server has already validated, and an operator it does not know
  becomes ``Invalid``, which matches nothing (fail closed). Its output is what the controller's
  group names are derived from, so its form must not change.
- `validated_selector` (the same dict) and `parse_selector` (the ``?labelSelector=`` syntax of
  ``k8s.io/apimachinery/pkg/labels``: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``,
  ``a notin (x)``, ``a``, ``!a``, ``a>1``, ``a<1``, comma meaning AND) validate like
  kube-apiserver and raise `SelectorError` with its wording. For valid input
  `validated_selector` returns exactly what `normalize_selector` does.

`compile_matcher` turns requirements into the cheapest test for their shape (closures over
constants: matching is on the controller's hot path). `selector_text` prints the query syntax
(`parse_selector` reads it back). `LabelSelector` bundles requirements and their matcher for the
embedded API server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from antrea.errors import AntreaError
from antrea.k8s.names import is_qualified_name, is_valid_label_value

__all__ = [
    "DOES_NOT_EXIST",
    "EVERYTHING",
    "EXISTS",
    "GT",
    "IN",
    "INVALID",
    "LT",
    "NOT_IN",
    "LabelSelector",
    "Labels",
    "Requirement",
    "Requirements",
    "SelectorError",
    "compile_matcher",
    "label_selector_from_dict",
    "normalize_selector",
    "parse_label_selector",
    "parse_selector",
    "selector_text",
    "validated_selector",
]

IN = "In"
NOT_IN = "NotIn"
EXISTS = "Exists"
DOES_NOT_EXIST = "DoesNotExist"
GT = "Gt"  # query syntax only (``a>1``)
LT = "Lt"  # query syntax only (``a<1``)
INVALID = "Invalid"  # an operator metav1 does not know: matches nothing

Requirement = tuple[str, str, tuple[str, ...]]
Requirements = tuple[Requirement, ...]
Labels = Mapping[str, str]

_SET_OPERATORS = {IN: IN, NOT_IN: NOT_IN, EXISTS: EXISTS, DOES_NOT_EXIST: DOES_NOT_EXIST}


class SelectorError(AntreaError, ValueError):
    """A selector that kube-apiserver would refuse (400 Bad Request)."""


# --- the normalized form -----------------------------------------------------------------


def normalize_selector(selector: Mapping[str, Any] | None) -> Requirements:
    """Normalized requirements of a LabelSelector dict; ``None`` and ``{}`` select everything.

    Lenient: no validation; an unknown operator becomes an ``Invalid`` requirement.
    """
    if not selector:
        return ()
    reqs: list[Requirement] = []
    match_labels = selector.get("matchLabels")
    if match_labels:
        for key, value in match_labels.items():
            reqs.append((key, IN, (str(value),)))
    expressions = selector.get("matchExpressions")
    if expressions:
        for expr in expressions:
            op = expr.get("operator")
            key = expr.get("key", "")
            if op in (IN, NOT_IN):
                reqs.append((key, op, tuple(sorted({str(v) for v in expr.get("values") or ()}))))
            elif op in (EXISTS, DOES_NOT_EXIST):
                reqs.append((key, op, ()))
            else:
                reqs.append((key, INVALID, (str(op),)))
    if len(reqs) == 1:
        return (reqs[0],)
    return tuple(sorted(set(reqs)))


def _normalized(reqs: Iterable[Requirement]) -> Requirements:
    out = list(reqs)
    if len(out) <= 1:
        return tuple(out)
    return tuple(sorted(set(out)))


def compile_matcher(reqs: Requirements) -> Callable[[Labels], bool]:
    """The cheapest matcher for normalized requirements (no per-call setup)."""
    if not reqs:
        return lambda labels: True
    if any(op == INVALID for _, op, _ in reqs):
        return lambda labels: False
    if len(reqs) == 1:
        key, op, values = reqs[0]
        if op == IN and len(values) == 1:
            only = values[0]
            return lambda labels: labels.get(key) == only
        if op == IN:
            allowed = frozenset(values)
            return lambda labels: labels.get(key) in allowed
        if op == EXISTS:
            return lambda labels: key in labels
        if op == DOES_NOT_EXIST:
            return lambda labels: key not in labels
    if all(op == IN and len(values) == 1 for _, op, values in reqs):
        pairs = tuple((key, values[0]) for key, _, values in reqs)

        def match_all_equal(labels: Labels) -> bool:
            return all(labels.get(key) == value for key, value in pairs)

        return match_all_equal
    checks = tuple(
        (key, op, frozenset(values), int(values[0]) if op in (GT, LT) else 0)
        for key, op, values in reqs
    )

    def match_general(labels: Labels) -> bool:
        for key, op, values, bound in checks:
            value = labels.get(key)
            if op == IN:
                if value is None or value not in values:
                    return False
            elif op == NOT_IN:
                if value is not None and value in values:
                    return False
            elif op == EXISTS:
                if value is None:
                    return False
            elif op == DOES_NOT_EXIST:
                if value is not None:
                    return False
            elif not _compares(value, op, bound):
                return False
        return True

    return match_general


def _compares(value: str | None, op: str, bound: int) -> bool:
    """``Gt``/``Lt``: the label exists, is an integer, and compares strictly."""
    if value is None:
        return False
    try:
        have = int(value)
    except ValueError:
        return False
    return have > bound if op == GT else have < bound


def selector_text(reqs: Requirements) -> str:
    """The query syntax of normalized requirements (`parse_selector` reads it back)."""
    return ",".join(_requirement_text(r) for r in reqs)


def _requirement_text(req: Requirement) -> str:
    key, op, values = req
    if op == EXISTS:
        return key
    if op == DOES_NOT_EXIST:
        return f"!{key}"
    if op == GT:
        return f"{key}>{values[0]}"
    if op == LT:
        return f"{key}<{values[0]}"
    if op in (IN, NOT_IN):
        if len(values) == 1:
            return f"{key}{'=' if op == IN else '!='}{values[0]}"
        return f"{key} {'in' if op == IN else 'notin'} ({','.join(values)})"
    raise ValueError(f"requirement {req!r} has no query syntax")


# --- validation (kube-apiserver's rules and wording) ----------------------------------------


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _validated(key: str, op: str, values: Iterable[str], *, exact: bool = False) -> Requirement:
    """Validate like ``labels.NewRequirement``; ``exact``: written ``=``, ``==`` or ``!=``."""
    vals = sorted(set(values))
    key_errs = is_qualified_name(key)
    if key_errs:
        raise SelectorError(f"key: Invalid value: {_quote(key)}: {'; '.join(key_errs)}")
    if exact:
        if len(vals) != 1:
            raise SelectorError(
                "values: Invalid value: exact-match compatibility requires one single value"
            )
    elif op in (IN, NOT_IN):
        if not vals:
            raise SelectorError(
                "values: Invalid value: []string{}: "
                "for 'in', 'notin' operators, values set can't be empty"
            )
    elif op in (EXISTS, DOES_NOT_EXIST):
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
    if op not in (GT, LT):
        for i, value in enumerate(vals):
            value_errs = is_valid_label_value(value)
            if value_errs:
                raise SelectorError(
                    f"values[{i}][{key}]: Invalid value: {_quote(value)}: {'; '.join(value_errs)}"
                )
    return (key, op, tuple(vals))


def validated_selector(selector: Mapping[str, Any]) -> Requirements:
    """`normalize_selector` of a ``metav1.LabelSelector`` kube-apiserver would accept; else
    `SelectorError`. (A *missing* selector means "nothing" in some APIs and "everything" in
    others, so callers decide what None means; this takes a mapping.)"""
    reqs: list[Requirement] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        reqs.append(_validated(str(key), IN, [str(value)], exact=True))
    for expr in selector.get("matchExpressions") or ():
        operator = expr.get("operator")
        if operator not in _SET_OPERATORS:
            raise SelectorError(f'"{operator}" is not a valid label selector operator')
        values = [str(v) for v in expr.get("values") or ()]
        reqs.append(_validated(str(expr.get("key", "")), _SET_OPERATORS[operator], values))
    return _normalized(reqs)


# --- the query syntax (``?labelSelector=``) ------------------------------------------------

_IDENT, _END = "identifier", "end of string"
_SPECIAL = frozenset({"==", "!=", "=", "!", "(", ")", ",", ">", "<"})
_SPECIAL_CHARS = frozenset("=!(),><")
_EXACT = {"=": IN, "==": IN, "!=": NOT_IN, ">": GT, "<": LT}


def _lex(s: str) -> list[tuple[str, str]]:
    """Tokens as ``labels.Lexer`` produces them, as (kind, literal): kind is the literal for
    operators and punctuation; keywords are resolved by the parser."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c.isspace():
            i += 1
        elif c in _SPECIAL_CHARS:
            two = s[i : i + 2]
            tok = two if two in ("==", "!=") else c
            out.append((tok, tok))
            i += len(tok)
        else:
            j = i
            while j < n and not s[j].isspace() and s[j] not in _SPECIAL_CHARS:
                j += 1
            out.append((_IDENT, s[i:j]))
            i = j
    out.append((_END, ""))
    return out


class _Parser:
    def __init__(self, s: str) -> None:
        self.toks = _lex(s)
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        return self.toks[self.pos]

    def take(self) -> tuple[str, str]:
        tok = self.toks[self.pos]
        if tok[0] != _END:
            self.pos += 1
        return tok

    def fail(self, found: str, expected: str, *, in_requirement: bool = True) -> SelectorError:
        """Upstream prefixes errors raised while parsing one requirement, not between them."""
        prefix = "unable to parse requirement: " if in_requirement else ""
        return SelectorError(f"{prefix}found '{found}', expected: {expected}")

    def parse(self) -> Requirements:
        reqs: list[Requirement] = []
        if self.peek()[0] == _END:
            return ()
        while True:
            tok, lit = self.peek()
            if tok not in (_IDENT, "!"):
                raise self.fail(lit, "!, identifier, or 'end of string'", in_requirement=False)
            reqs.append(self.requirement())
            tok, lit = self.take()
            if tok == _END:
                return _normalized(reqs)
            if tok != ",":
                raise self.fail(lit, "',' or 'end of string'", in_requirement=False)
            tok, lit = self.peek()
            if tok not in (_IDENT, "!"):
                raise self.fail(lit, "identifier after ','", in_requirement=False)

    def requirement(self) -> Requirement:
        negate = False
        tok, lit = self.take()
        if tok == "!":
            negate = True
            tok, lit = self.take()
        if tok != _IDENT:
            raise self.fail(lit, "identifier")
        key = lit
        nxt, _ = self.peek()
        if negate or nxt in (_END, ","):
            # "!a" ends the requirement whatever follows; the caller checks for ',' or the end.
            return _checked(key, DOES_NOT_EXIST if negate else EXISTS, ())
        tok, lit = self.take()
        if tok == _IDENT and lit in ("in", "notin"):
            return _checked(key, IN if lit == "in" else NOT_IN, self.value_set())
        if tok not in _EXACT:
            raise self.fail(lit, "in, notin, =, ==, !=, gt, lt")
        return _checked(key, _EXACT[tok], self.exact_value(), exact=tok in ("=", "==", "!="))

    def exact_value(self) -> list[str]:
        tok, _ = self.peek()
        if tok in (_END, ","):
            return [""]
        tok, lit = self.take()
        if tok == _IDENT:
            return [lit]
        raise self.fail(lit, "identifier")

    def value_set(self) -> list[str]:
        tok, lit = self.take()
        if tok != "(":
            raise self.fail(lit, "'('")
        values: list[str] = []
        tok, lit = self.peek()
        if tok == ")":
            self.take()
            return values
        if tok not in (_IDENT, ","):
            raise self.fail(lit, "',', ')' or identifier")
        # Identifiers separated by commas; an empty slot (``(a,)`` or ``(,a)``) is "".
        expect_value = True
        while True:
            tok, lit = self.take()
            if tok == _IDENT and expect_value:
                values.append(lit)
                expect_value = False
            elif tok == ",":
                if expect_value:
                    values.append("")
                expect_value = True
            elif tok == ")":
                if expect_value:
                    values.append("")
                return values
            else:
                raise self.fail(lit, "',', or identifier")


def _checked(key: str, op: str, values: Iterable[str], *, exact: bool = False) -> Requirement:
    try:
        return _validated(key, op, values, exact=exact)
    except SelectorError as exc:
        raise SelectorError(f"unable to parse requirement: {exc}") from None


def parse_selector(s: str) -> Requirements:
    """Parse the ``labelSelector`` query syntax; raises `SelectorError` like the server's 400."""
    return _Parser(s).parse()


# --- a selector with its matcher (the embedded API server) -----------------------------------


class LabelSelector:
    """Normalized requirements (an AND; none selects everything) and their compiled matcher."""

    __slots__ = ("_match", "requirements")

    def __init__(self, requirements: Requirements = ()) -> None:
        self.requirements = requirements
        self._match = compile_matcher(requirements)

    @property
    def empty(self) -> bool:
        """True when the selector selects every object."""
        return not self.requirements

    def matches(self, labels: Labels | None) -> bool:
        return self._match(labels or {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelSelector) and other.requirements == self.requirements

    def __hash__(self) -> int:
        return hash(self.requirements)

    def __str__(self) -> str:
        return selector_text(self.requirements)

    def __repr__(self) -> str:
        return f"LabelSelector({self})"


EVERYTHING = LabelSelector()


def parse_label_selector(s: str) -> LabelSelector:
    """`parse_selector` with its matcher."""
    return LabelSelector(parse_selector(s))


def label_selector_from_dict(selector: Mapping[str, Any]) -> LabelSelector:
    """`validated_selector` with its matcher (an empty mapping selects everything)."""
    return LabelSelector(validated_selector(selector))
