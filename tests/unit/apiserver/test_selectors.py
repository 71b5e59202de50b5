"""Label selectors (`antrea.k8s.labels`) and the API server's field selectors behave like
kube-apiserver's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antrea.k8s.labels import (
    EVERYTHING,
    SelectorError,
    label_selector_from_dict,
    parse_label_selector,
)
from antrea.testbed.apiserver.selectors import parse_field_selector

LABELS = {"app": "web", "tier": "front", "version": "3", "env": ""}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app = web", True),
        ("app=db", False),
        ("app!=db", True),
        ("app!=web", False),
        ("missing!=x", True),
        ("app in (web,db)", True),
        ("app in (db)", False),
        ("missing in (x)", False),
        ("app notin (db)", True),
        ("app notin (web)", False),
        ("missing notin (x)", True),
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("version>2", True),
        ("version<2", False),
        ("app>2", False),
        ("env=", True),
        ("env in (,x)", True),
        ("env in (x,)", True),
        ("app in (x,,web)", True),
        ("example.com/app", False),
    ],
)
def test_label_selector_matches(selector: str, expected: bool) -> None:
    """Each operator selects exactly what labels.Parse's selector selects."""
    assert parse_label_selector(selector).matches(LABELS) is expected


@pytest.mark.parametrize(
    "selector",
    [
        "app=",  # empty value is fine
        "a.b/c-d_e=x",
        "app in (a, b)",
        "  app  ",
    ],
)
def test_label_selector_valid(selector: str) -> None:
    """Valid selectors parse."""
    parse_label_selector(selector)


@pytest.mark.parametrize(
    ("selector", "fragment"),
    [
        ("app in ()", "values set can't be empty"),
        ("app=a b", "expected: ',' or 'end of string'"),
        ("app in (a", "expected"),
        ("app in a", "expected: '('"),
        ("app==", ""),
        ("-bad=x", "name part must consist of alphanumeric"),
        ("app=-bad", "a valid label must be an empty string"),
        ("app=" + "x" * 64, "must be no more than 63 characters"),
        ("a/b/c=x", "a qualified name must consist"),
        ("Bad_Prefix/app=x", "prefix part a lowercase RFC 1123 subdomain"),
        ("app,", "identifier after ','"),
        (",app", "expected: !, identifier, or 'end of string'"),
        ("app>x", "must be an integer"),
        ("!app=x", "expected: ',' or 'end of string'"),
        ("app foo", "expected: in, notin"),
    ],
)
def test_label_selector_invalid(selector: str, fragment: str) -> None:
    """Malformed selectors raise SelectorError with the server's wording."""
    if selector == "app==":
        assert parse_label_selector(selector).matches({"app": ""})
        return
    with pytest.raises(SelectorError) as info:
        parse_label_selector(selector)
    assert fragment in str(info.value)
    between = selector in ("app=a b", "app,", ",app", "!app=x")  # not inside a requirement
    assert str(info.value).startswith("unable to parse requirement") is not between


def test_label_selector_normalized() -> None:
    """Equivalent spellings normalize to one string and compare equal."""
    a = parse_label_selector("tier in (b,a),app==web")
    b = parse_label_selector("app=web, tier in (a,b)")
    assert a == b
    assert hash(a) == hash(b)
    assert str(a) == "app=web,tier in (a,b)"
    assert str(parse_label_selector("!x,y,v>1")) == "v>1,!x,y"


def test_label_selector_from_dict() -> None:
    """matchLabels and matchExpressions AND together; empty selects everything."""
    assert label_selector_from_dict({}) == EVERYTHING
    assert label_selector_from_dict({}).matches({})
    assert label_selector_from_dict({"matchLabels": {}, "matchExpressions": []}).empty
    sel = label_selector_from_dict(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "mid"]},
                {"key": "debug", "operator": "DoesNotExist"},
                {"key": "version", "operator": "Exists"},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
            ],
        }
    )
    assert sel.matches(LABELS)
    assert not sel.matches({**LABELS, "debug": "1"})
    assert not sel.matches({**LABELS, "tier": "back"})
    assert not sel.matches({**LABELS, "env": "prod"})
    assert not sel.matches({k: v for k, v in LABELS.items() if k != "version"})
    same = parse_label_selector("app=web,tier in (mid,front),!debug,version,env notin (prod)")
    assert sel == same


@pytest.mark.parametrize(
    "sel",
    [
        {"matchExpressions": [{"key": "a", "operator": "Bogus"}]},
        {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
        {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
        {"matchLabels": {"a": "not valid"}},
        {"matchLabels": {"-a": "x"}},
    ],
)
def test_label_selector_from_dict_invalid(sel: dict[str, object]) -> None:
    """Invalid operators, value sets, keys and values are rejected."""
    with pytest.raises(SelectorError):
        label_selector_from_dict(sel)


_key = st.sampled_from(["a", "b", "x.io/c"])
_val = st.sampled_from(["", "1", "2", "v"])
_labels = st.dictionaries(_key, _val, max_size=3)


@given(
    reqs=st.lists(
        st.tuples(
            _key, st.sampled_from(["=", "!=", "in", "notin", "", "!"]), st.sets(_val, min_size=1)
        ),
        max_size=4,
    ),
    labels=_labels,
)
def test_label_selector_semantics(
    reqs: list[tuple[str, str, set[str]]], labels: dict[str, str]
) -> None:
    """A parsed selector agrees with a direct reading of the operators' definitions."""
    parts: list[str] = []
    expected = True
    for key, op, values in reqs:
        one = sorted(values)[0]
        if op in ("=", "!="):
            parts.append(f"{key}{op}{one}")
            ok = (labels.get(key) == one) if op == "=" else (labels.get(key) != one)
        elif op in ("in", "notin"):
            rendered = ",".join(sorted(values)) if values != {""} else ","
            parts.append(f"{key} {op} ({rendered})")
            inside = key in labels and labels[key] in values
            ok = inside if op == "in" else not inside
        elif op == "":
            parts.append(key)
            ok = key in labels
        else:
            parts.append(f"!{key}")
            ok = key not in labels
        expected = expected and ok
    sel = parse_label_selector(",".join(parts))
    assert sel.matches(labels) is expected
    assert parse_label_selector(str(sel)) == sel


POD = {
    "metadata": {"name": "p1", "namespace": "ns1"},
    "spec": {"nodeName": "node1"},
    "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}]},
}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", True),
        ("metadata.name=p1", True),
        ("metadata.name==p1", True),
        ("metadata.name!=p1", False),
        ("metadata.namespace=ns1,spec.nodeName=node1", True),
        ("spec.nodeName=node2", False),
        ("spec.nodeName!=", True),
        ("spec.nodeName=", False),
        ("status.phase=Running", True),
        ("status.phase!=Running,status.phase!=Pending", False),
        ("status.podIP=10.0.0.1", True),
        ("spec.hostNetwork=false", True),
    ],
)
def test_field_selector_pods(selector: str, expected: bool) -> None:
    """Pod field selectors support the fields kubelet and kubectl use."""
    assert parse_field_selector(selector, "pods").matches(POD) is expected
    assert parse_field_selector(selector, "Pod").matches(POD) is expected


def test_field_selector_unsupported() -> None:
    """Unknown fields get the server's exact message."""
    with pytest.raises(SelectorError, match=r"^field label not supported: spec\.nodeName$"):
        parse_field_selector("spec.nodeName=x", "Namespace")
    with pytest.raises(SelectorError, match=r"field label not supported: metadata\.uid"):
        parse_field_selector("metadata.uid=x", "pods")
    with pytest.raises(SelectorError, match="can't understand"):
        parse_field_selector("metadata.name", "pods")


def test_field_selector_other_kinds() -> None:
    """Cluster-scoped objects have an empty namespace; escaped values are unescaped."""
    node = {"metadata": {"name": "a,b"}}
    assert parse_field_selector(r"metadata.name=a\,b", "nodes").matches(node)
    assert parse_field_selector("metadata.namespace=", "Node").matches(node)
    ev = {"involvedObject": {"kind": "Pod", "name": "p"}, "type": "Normal"}
    assert parse_field_selector("involvedObject.kind=Pod,type=Normal", "events").matches(ev)
    assert parse_field_selector("metadata.name=x", "widgets.example.com").matches(
        {"metadata": {"name": "x"}}
    )


@given(st.text(alphabet="ab=!(),<> inotx.-/_1", max_size=20))
def test_label_parser_total(s: str) -> None:
    """Any string parses or raises SelectorError; what parses round-trips through str()."""
    try:
        sel = parse_label_selector(s)
    except SelectorError:
        return
    assert parse_label_selector(str(sel)) == sel


@given(st.text(alphabet="ab=!,\\.metadn", max_size=20))
def test_field_parser_total(s: str) -> None:
    """Any string parses or raises SelectorError."""
    try:
        parse_field_selector(s, "pods").matches(POD)
    except SelectorError:
        pass
