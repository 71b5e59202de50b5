"""Validation rejects what kube-apiserver rejects, with the same paths and messages."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antrea.k8s.names import is_valid_port_name
from antrea.testbed.apiserver.validation import (
    FieldError,
    field_errors_to_status,
    validate,
)
from antrea.testbed.apiserver.validation import networkpolicy as np_validation
from antrea.testbed.apiserver.validation.networkpolicy import validate_network_policy_spec

NP = "networking.k8s.io"


def _np(spec: dict[str, Any], name: str = "np") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def _msgs(
    group: str, kind: str, obj: dict[str, Any], old: dict[str, Any] | None = None
) -> list[str]:
    return [str(e) for e in validate(group, kind, obj, old)]


VALID_NP = _np(
    {
        "podSelector": {"matchLabels": {"app": "web"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {
                "from": [
                    {"podSelector": {}},
                    {"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {}},
                    {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                ],
                "ports": [
                    {"port": 80, "protocol": "TCP"},
                    {"port": "http"},
                    {"port": 1000, "endPort": 2000, "protocol": "UDP"},
                    {"protocol": "SCTP"},
                ],
            }
        ],
        "egress": [
            {
                "to": [
                    {
                        "podSelector": {
                            "matchExpressions": [
                                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                                {"key": "x.io/y", "operator": "DoesNotExist"},
                            ]
                        }
                    }
                ]
            },
            {},
        ],
    }
)


def test_valid_network_policy() -> None:
    """Every peer and port form of the API validates."""
    assert _msgs(NP, "NetworkPolicy", VALID_NP) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"podSelector": {}, "ingress": [{"ports": [{"port": 70000}]}]},
            "spec.ingress[0].ports[0].port: Invalid value: 70000: "
            "must be between 1 and 65535, inclusive",
        ),
        (
            {"podSelector": {}, "ingress": [{"ports": [{"port": 0}]}]},
            "spec.ingress[0].ports[0].port: Invalid value: 0: "
            "must be between 1 and 65535, inclusive",
        ),
        (
            {"podSelector": {}, "egress": [{"ports": [{"port": "Bad_Name"}]}]},
            'spec.egress[0].ports[0].port: Invalid value: "Bad_Name": '
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        ),
        (
            {"podSelector": {}, "egress": [{"ports": [{"port": "averyveryverylongname"}]}]},
            'spec.egress[0].ports[0].port: Invalid value: "averyveryverylongname": '
            "must be no more than 15 characters",
        ),
        (
            {"podSelector": {}, "egress": [{"ports": [{"port": "123"}]}]},
            'spec.egress[0].ports[0].port: Invalid value: "123": '
            "must contain at least one letter (a-z)",
        ),
        (
            {"podSelector": {}, "ingress": [{"ports": [{"port": 80, "protocol": "ICMP"}]}]},
            'spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP": '
            'supported values: "TCP", "UDP", "SCTP"',
        ),
        (
            {"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]},
            "spec.ingress[0].ports[0].endPort: Invalid value: 90: "
            "must be greater than or equal to `port`",
        ),
        (
            {"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 80}]}]},
            "spec.ingress[0].ports[0].endPort: Invalid value: 80: "
            "may not be specified when `port` is non-numeric",
        ),
        (
            {"podSelector": {}, "ingress": [{"ports": [{"endPort": 80}]}]},
            "spec.ingress[0].ports[0].endPort: Invalid value: 80: "
            "may not be specified when `port` is not specified",
        ),
        (
            {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]},
            'spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "10.0.0.0/33": '
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        ),
        (
            {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": ""}}]}]},
            "spec.ingress[0].from[0].ipBlock.cidr: Required value",
        ),
        (
            {
                "podSelector": {},
                "ingress": [
                    {"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}}]}
                ],
            },
            'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "10.1.0.0/24": '
            "must be a strict subset of `cidr`",
        ),
        (
            {
                "podSelector": {},
                "ingress": [
                    {"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/16"]}}]}
                ],
            },
            'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "10.0.0.0/16": '
            "must be a strict subset of `cidr`",
        ),
        (
            {
                "podSelector": {},
                "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}],
            },
            "spec.egress[0].to[0]: Forbidden: may not specify both ipBlock and another peer",
        ),
        (
            {"podSelector": {}, "egress": [{"to": [{}]}]},
            "spec.egress[0].to[0]: Required value: must specify a peer",
        ),
        (
            {"podSelector": {}, "policyTypes": ["Ingress", "Sideways"]},
            'spec.policyTypes[1]: Unsupported value: "Sideways": '
            'supported values: "Ingress", "Egress"',
        ),
        (
            {"podSelector": {}, "policyTypes": ["Ingress", "Ingress"]},
            'spec.policyTypes[1]: Duplicate value: "Ingress"',
        ),
        (
            {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}},
            "spec.podSelector.matchExpressions[0].values: Required value: "
            "must be specified when `operator` is 'In' or 'NotIn'",
        ),
        (
            {
                "podSelector": {
                    "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]
                }
            },
            "spec.podSelector.matchExpressions[0].values: Forbidden: "
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        ),
        (
            {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}},
            'spec.podSelector.matchExpressions[0].operator: Invalid value: "Near": '
            "not a valid selector operator",
        ),
        (
            {"podSelector": {"matchLabels": {"a": "b c"}}},
            'spec.podSelector.matchLabels: Invalid value: "b c": a valid label must be an empty '
            "string or consist of alphanumeric characters, '-', '_' or '.', and must start and "
            "end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
            "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ),
        (
            {
                "podSelector": {},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"-x": "y"}}}]}],
            },
            'spec.ingress[0].from[0].namespaceSelector.matchLabels: Invalid value: "-x": '
            "name part must consist of alphanumeric characters",
        ),
    ],
)
def test_invalid_network_policy(spec: dict[str, Any], expected: str) -> None:
    """Each invalid form is reported at its field path with upstream's wording."""
    msgs = _msgs(NP, "NetworkPolicy", _np(spec))
    assert any(m.startswith(expected) for m in msgs), msgs


def test_ipv6_except() -> None:
    """IPv6 blocks work; an except of another family is not a subset."""
    ok: dict[str, Any] = {
        "podSelector": {},
        "ingress": [{"from": [{"ipBlock": {"cidr": "fd00::/8", "except": ["fd00::/16"]}}]}],
    }
    assert _msgs(NP, "NetworkPolicy", _np(ok)) == []
    bad = copy.deepcopy(ok)
    bad["ingress"][0]["from"][0]["ipBlock"]["except"] = ["10.0.0.0/8"]
    assert _msgs(NP, "NetworkPolicy", _np(bad))


def test_status_like_kube_apiserver() -> None:
    """The 422 Status has upstream's message, reason and causes."""
    spec = {
        "podSelector": {},
        "ingress": [{"ports": [{"port": 70000}, {"port": 80, "protocol": "ICMP"}]}],
    }
    errs = validate(NP, "NetworkPolicy", _np(spec, "foo"), None)
    status = field_errors_to_status("NetworkPolicy", "foo", errs, group=NP)
    assert status == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'NetworkPolicy.networking.k8s.io "foo" is invalid: ['
        "spec.ingress[0].ports[0].port: Invalid value: 70000: must be between 1 and 65535, "
        'inclusive, spec.ingress[0].ports[1].protocol: Unsupported value: "ICMP": '
        'supported values: "TCP", "UDP", "SCTP"]',
        "reason": "Invalid",
        "details": {
            "name": "foo",
            "group": "networking.k8s.io",
            "kind": "NetworkPolicy",
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": "Invalid value: 70000: must be between 1 and 65535, inclusive",
                    "field": "spec.ingress[0].ports[0].port",
                },
                {
                    "reason": "FieldValueNotSupported",
                    "message": 'Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"',
                    "field": "spec.ingress[0].ports[1].protocol",
                },
            ],
        },
        "code": 422,
    }


def test_status_single_error_core_group() -> None:
    """One error is not bracketed; the core group is omitted."""
    err = FieldError("metadata.name", "FieldValueRequired", "name or generateName is required")
    status = field_errors_to_status("Pod", "", [err])
    assert status["message"] == (
        'Pod "" is invalid: metadata.name: Required value: name or generateName is required'
    )
    assert "group" not in status["details"]


@pytest.mark.parametrize(
    ("kind", "name", "fragment"),
    [
        ("Namespace", "a.b", 'metadata.name: Invalid value: "a.b": a lowercase RFC 1123 label'),
        ("Pod", "Upper", 'metadata.name: Invalid value: "Upper": a lowercase RFC 1123 subdomain'),
        ("Service", "1abc", 'metadata.name: Invalid value: "1abc": a DNS-1035 label'),
        ("ConfigMap", "x" * 254, "must be no more than 253 characters"),
    ],
)
def test_names(kind: str, name: str, fragment: str) -> None:
    """Names follow each kind's rule."""
    obj: dict[str, Any] = {"metadata": {"name": name}}
    if kind != "Namespace":
        obj["metadata"]["namespace"] = "default"
    msgs = _msgs("", kind, obj)
    assert any(fragment in m for m in msgs), msgs


def test_metadata_rules() -> None:
    """Namespace presence, generateName, labels and annotations."""
    assert _msgs("", "ConfigMap", {"metadata": {"name": "a"}}) == [
        "metadata.namespace: Required value"
    ]
    assert _msgs("", "Node", {"metadata": {"name": "n", "namespace": "x"}}) == [
        "metadata.namespace: Forbidden: not allowed on this type"
    ]
    assert _msgs("", "ConfigMap", {"metadata": {"generateName": "a-", "namespace": "d"}}) == []
    assert _msgs("", "ConfigMap", {"metadata": {"namespace": "d"}}) == [
        "metadata.name: Required value: name or generateName is required"
    ]
    msgs = _msgs(
        "",
        "ConfigMap",
        {
            "metadata": {
                "name": "a",
                "namespace": "d",
                "labels": {"ok": "v", "k": "-bad"},
                "annotations": {"Example.COM/Key": "anything at all", "bad key": "x"},
            }
        },
    )
    assert len(msgs) == 2
    assert msgs[0].startswith('metadata.labels: Invalid value: "-bad"')
    assert msgs[1].startswith('metadata.annotations: Invalid value: "bad key"')


def test_update_immutable_metadata() -> None:
    """name, namespace and uid cannot change on update."""
    old = {"metadata": {"name": "a", "namespace": "d", "uid": "1"}}
    new = {"metadata": {"name": "a", "namespace": "d", "uid": "2"}}
    assert _msgs("", "ConfigMap", new, old) == [
        'metadata.uid: Invalid value: "2": field is immutable'
    ]
    assert _msgs("", "ConfigMap", {"metadata": {"name": "a", "namespace": "d"}}, old) == []


def _pod(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "containers": [
            {
                "name": "c",
                "image": "lab/workload",
                "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}],
            }
        ]
    }
    base.update(spec)
    return {"metadata": {"name": "p", "namespace": "x"}, "spec": base}


def test_pods() -> None:
    """Pod basics: containers, ports, names, protocols, spec immutability."""
    assert _msgs("", "Pod", _pod()) == []
    assert _msgs("", "Pod", _pod(containers=[])) == ["spec.containers: Required value"]
    bad = _pod(
        containers=[
            {
                "name": "c",
                "image": "i",
                "ports": [
                    {"containerPort": 70000},
                    {"containerPort": 81, "name": "a", "protocol": "ICMP"},
                    {"containerPort": 82, "name": "a"},
                    {"containerPort": 83, "name": "Bad"},
                ],
            },
            {"name": "c"},
        ]
    )
    assert _msgs("", "Pod", bad) == [
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: "
        "must be between 1 and 65535, inclusive",
        'spec.containers[0].ports[1].protocol: Unsupported value: "ICMP": '
        'supported values: "SCTP", "TCP", "UDP"',
        'spec.containers[0].ports[2].name: Duplicate value: "a"',
        'spec.containers[0].ports[3].name: Invalid value: "Bad": '
        "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        'spec.containers[1].name: Duplicate value: "c"',
        "spec.containers[1].image: Required value",
    ]
    old = _pod(nodeName="node1")
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "other"
    new["metadata"]["labels"] = {"a": "b"}
    assert _msgs("", "Pod", new, old) == []
    new["spec"]["nodeName"] = "node2"
    assert _msgs("", "Pod", new, old)[0].startswith(
        "spec: Forbidden: pod updates may not change fields other than"
    )


def test_other_kinds() -> None:
    """Node CIDRs, Service ports, Endpoints IPs, ConfigMap keys, Lease, CRD."""
    node = {"metadata": {"name": "node1"}, "spec": {"podCIDR": "10.244.1.0/24"}}
    assert _msgs("", "Node", node) == []
    moved = copy.deepcopy(node)
    moved["spec"]["podCIDR"] = "10.244.2.0/24"
    assert _msgs("", "Node", moved, node) == [
        'spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid'
    ]
    svc = {
        "metadata": {"name": "s", "namespace": "d"},
        "spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 0, "name": "b"}]},
    }
    assert _msgs("", "Service", svc) == [
        "spec.ports[0].name: Required value",
        "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
    ]
    ep: dict[str, Any] = {
        "metadata": {"name": "antrea", "namespace": "kube-system"},
        "subsets": [
            {
                "addresses": [{"ip": "192.168.0.1"}],
                "ports": [{"port": 10349, "name": "https", "protocol": "TCP"}],
            }
        ],
    }
    assert _msgs("", "Endpoints", ep) == []
    ep["subsets"][0]["addresses"][0]["ip"] = "nope"
    assert _msgs("", "Endpoints", ep)[0].startswith(
        'subsets[0].addresses[0].ip: Invalid value: "nope"'
    )
    cm = {
        "metadata": {"name": "antrea-ca", "namespace": "kube-system"},
        "data": {"ca.crt": "x", "bad/key": "y"},
    }
    assert _msgs("", "ConfigMap", cm)[0].startswith('data[bad/key]: Invalid value: "bad/key"')
    lease = {"metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 0}}
    assert _msgs("coordination.k8s.io", "Lease", lease) == [
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"
    ]
    crd: dict[str, Any] = {
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "listKind": "WidgetList",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }
    assert _msgs("apiextensions.k8s.io", "CustomResourceDefinition", crd) == []
    crd["metadata"]["name"] = "widget.example.com"
    crd["spec"]["versions"][0]["storage"] = False
    assert _msgs("apiextensions.k8s.io", "CustomResourceDefinition", crd) == [
        'metadata.name: Invalid value: "widget.example.com": '
        'must be spec.names.plural+"."+spec.group',
        'spec.versions: Invalid value: []string{"v1"}: '
        "must have exactly one version marked as storage version",
    ]
    cr = {"metadata": {"name": "a/b", "namespace": "d"}}
    assert _msgs("example.com", "Widget", cr) == [
        "metadata.name: Invalid value: \"a/b\": may not contain '/'"
    ]


@given(st.text(alphabet="ab1-_", min_size=0, max_size=17))
def test_port_name_rule(name: str) -> None:
    """IANA_SVC_NAME: <=15 chars of [a-z0-9-], a letter, no '--', no edge '-'."""
    ok = (
        0 < len(name) <= 15
        and set(name) <= set("ab1-")
        and any(c in "ab" for c in name)
        and "--" not in name
        and not name.startswith("-")
        and not name.endswith("-")
    )
    assert (is_valid_port_name(name) == []) is ok


@given(st.integers(min_value=-5, max_value=70000), st.integers(min_value=-5, max_value=70000))
def test_port_range_rule(port: int, end: int) -> None:
    """A numeric port range is valid iff 1 <= port <= endPort <= 65535."""
    spec = {"podSelector": {}, "ingress": [{"ports": [{"port": port, "endPort": end}]}]}
    ok = 1 <= port <= end <= 65535
    assert (_msgs(NP, "NetworkPolicy", _np(spec)) == []) is ok


_junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4),
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "metadata",
                    "spec",
                    "name",
                    "namespace",
                    "labels",
                    "ingress",
                    "egress",
                    "from",
                    "to",
                    "ports",
                    "port",
                    "endPort",
                    "protocol",
                    "ipBlock",
                    "cidr",
                    "except",
                    "podSelector",
                    "matchExpressions",
                    "operator",
                    "values",
                    "containers",
                    "policyTypes",
                    "data",
                    "subsets",
                    "addresses",
                    "versions",
                    "names",
                    "group",
                ]
            ),
            kids,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(obj=st.dictionaries(st.sampled_from(["metadata", "spec", "data"]), _junk, max_size=3))
def test_validate_never_crashes(obj: dict[str, Any]) -> None:
    """Malformed objects produce field errors, never an exception (a 500)."""
    for group, kind in [
        ("networking.k8s.io", "NetworkPolicy"),
        ("", "Pod"),
        ("", "Service"),
        ("", "Endpoints"),
        ("", "ConfigMap"),
        ("", "Node"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("example.com", "Widget"),
    ]:
        errs = validate(group, kind, obj, None)
        for e in errs:
            str(e)
        validate(group, kind, obj, obj)


_PEERS = st.one_of(
    st.builds(lambda c: {"ipBlock": {"cidr": c}}, st.sampled_from(["10.0.0.0/8", "1.2.3.4/32"])),
    st.builds(
        lambda c: {"ipBlock": {"cidr": c}},
        st.sampled_from(["10.0.0.0/33", "01.2.3.4/8", "10.0.0.0", "", "fd00::/8", "x/8"]),
    ),
    st.just({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}),
    st.just({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}),
    st.just({"ipBlock": {"cidr": 7}}),
    st.just({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}),
    st.just({"ipBlock": None}),
    st.just({"podSelector": {"matchLabels": {"a": "b"}}}),
    st.just({}),
    st.just("peer"),
)


@given(
    st.lists(
        st.fixed_dictionaries(
            {"from": st.lists(_PEERS, max_size=3)},
            optional={"ports": st.just([{"port": 0}])},
        ),
        max_size=4,
    )
)
def test_plain_ip_block_rules_are_validated_like_any_rule(rules: list[dict[str, Any]]) -> None:
    """The shortcut for rules of plain valid ipBlocks reports exactly what the full walk does."""
    spec = {"podSelector": {}, "ingress": rules}
    fast = validate_network_policy_spec(spec)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(np_validation, "_plain_valid_ip_block", lambda peer: False)
        slow = validate_network_policy_spec(spec)
    assert fast == slow
