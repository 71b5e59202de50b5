"""PATCH semantics match kube-apiserver for the three patch types."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antrea.testbed.apiserver.patch import PatchError, apply_patch, merge_patch

SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSONP = "application/json-patch+json"


def _b(value: Any) -> bytes:
    return json.dumps(value).encode()


POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "p",
        "namespace": "x",
        "labels": {"app": "a", "tier": "t"},
        "finalizers": ["f1"],
    },
    "spec": {
        "containers": [
            {
                "name": "c1",
                "image": "i1",
                "ports": [
                    {"containerPort": 80, "protocol": "TCP"},
                    {"containerPort": 80, "protocol": "UDP"},
                    {"containerPort": 81},
                ],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            },
            {"name": "c2", "image": "i2"},
        ],
        "tolerations": [{"key": "k1"}, {"key": "k2"}],
    },
    "status": {
        "conditions": [{"type": "Ready", "status": "False"}],
        "podIPs": [{"ip": "10.0.0.1"}],
    },
}


def test_smp_does_not_mutate_input() -> None:
    """The caller's object is untouched."""
    before = copy.deepcopy(POD)
    apply_patch(
        POD, _b({"spec": {"containers": [{"name": "c1", "image": "new"}]}}), SMP, kind="Pod"
    )
    assert before == POD


def test_smp_labels_and_annotations() -> None:
    """kubectl label/annotate: maps merge, null deletes a key."""
    out = apply_patch(
        POD,
        _b({"metadata": {"labels": {"app": None, "new": "v"}, "annotations": {"a": "b"}}}),
        SMP,
        kind="Pod",
    )
    assert out["metadata"]["labels"] == {"tier": "t", "new": "v"}
    assert out["metadata"]["annotations"] == {"a": "b"}


def test_smp_containers_merge_by_name() -> None:
    """Containers merge by name; unmentioned ones stay; new ones are appended."""
    patch = {
        "spec": {"containers": [{"name": "c2", "image": "i2b"}, {"name": "c3", "image": "i3"}]}
    }
    out = apply_patch(POD, _b(patch), SMP, kind="Pod")
    cs = out["spec"]["containers"]
    assert [c["name"] for c in cs] == ["c1", "c2", "c3"]
    assert cs[1]["image"] == "i2b"
    assert cs[0] == POD["spec"]["containers"][0]


def test_smp_nested_ports_env_and_delete_directive() -> None:
    """Ports merge by containerPort(+protocol), env by name, `$patch: delete` removes one."""
    patch = {
        "spec": {
            "containers": [
                {
                    "name": "c1",
                    "ports": [
                        {"containerPort": 80, "protocol": "UDP", "name": "dns"},
                        {"containerPort": 81, "$patch": "delete"},
                        {"containerPort": 90},
                    ],
                    "env": [{"name": "B", "$patch": "delete"}, {"name": "A", "value": "9"}],
                }
            ]
        }
    }
    out = apply_patch(POD, _b(patch), SMP, kind="Pod")
    c1 = out["spec"]["containers"][0]
    assert c1["ports"] == [
        {"containerPort": 80, "protocol": "TCP"},
        {"containerPort": 80, "protocol": "UDP", "name": "dns"},
        {"containerPort": 90},
    ]
    assert c1["env"] == [{"name": "A", "value": "9"}]


def test_smp_atomic_list_replaced() -> None:
    """Untagged lists (tolerations) are replaced wholesale."""
    out = apply_patch(POD, _b({"spec": {"tolerations": [{"key": "k3"}]}}), SMP, kind="Pod")
    assert out["spec"]["tolerations"] == [{"key": "k3"}]


def test_smp_list_replace_directive() -> None:
    """`$patch: replace` in a merged list replaces it."""
    patch = {"spec": {"containers": [{"name": "only", "image": "x"}, {"$patch": "replace"}]}}
    out = apply_patch(POD, _b(patch), SMP, kind="Pod")
    assert out["spec"]["containers"] == [{"name": "only", "image": "x"}]


def test_smp_map_replace_and_delete_directives() -> None:
    """`$patch: replace` on a map replaces it; `$patch: delete` removes it."""
    out = apply_patch(
        POD, _b({"metadata": {"labels": {"z": "1", "$patch": "replace"}}}), SMP, kind="Pod"
    )
    assert out["metadata"]["labels"] == {"z": "1"}
    out = apply_patch(POD, _b({"status": {"$patch": "delete"}}), SMP, kind="Pod")
    assert "status" not in out


def test_smp_primitive_list_merge_and_delete() -> None:
    """Finalizers are a merged set; `$deleteFromPrimitiveList` removes entries."""
    out = apply_patch(POD, _b({"metadata": {"finalizers": ["f2", "f1"]}}), SMP, kind="Pod")
    assert out["metadata"]["finalizers"] == ["f1", "f2"]
    out = apply_patch(
        out, _b({"metadata": {"$deleteFromPrimitiveList/finalizers": ["f1"]}}), SMP, kind="Pod"
    )
    assert out["metadata"]["finalizers"] == ["f2"]


def test_smp_set_element_order() -> None:
    """`$setElementOrder` reorders the merged list as kubectl apply asks."""
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "c2"}, {"name": "c1"}],
            "containers": [{"name": "c2", "image": "z"}],
        }
    }
    out = apply_patch(POD, _b(patch), SMP, kind="Pod")
    assert [c["name"] for c in out["spec"]["containers"]] == ["c2", "c1"]


def test_smp_retain_keys() -> None:
    """`$retainKeys` clears fields not listed (volume source switch)."""
    pod = copy.deepcopy(POD)
    pod["spec"]["volumes"] = [{"name": "v", "emptyDir": {}}]
    patch = {
        "spec": {
            "volumes": [
                {"name": "v", "hostPath": {"path": "/x"}, "$retainKeys": ["hostPath", "name"]}
            ]
        }
    }
    out = apply_patch(pod, _b(patch), SMP, kind="Pod")
    assert out["spec"]["volumes"] == [{"name": "v", "hostPath": {"path": "/x"}}]


def test_smp_status_conditions_by_type() -> None:
    """Pod conditions merge by type, podIPs by ip; node addresses by type."""
    patch = {
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Scheduled", "status": "True"},
            ],
            "phase": "Running",
        }
    }
    out = apply_patch(POD, _b(patch), SMP, kind="Pod")
    assert out["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "Scheduled", "status": "True"},
    ]
    node = {"status": {"addresses": [{"type": "InternalIP", "address": "1.1.1.1"}]}}
    patch = {"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}}
    out = apply_patch(node, _b(patch), SMP, kind="Node")
    assert [a["type"] for a in out["status"]["addresses"]] == ["InternalIP", "Hostname"]


def test_smp_networkpolicy_lists_are_atomic() -> None:
    """NetworkPolicy rules are replaced, never merged (no patchStrategy upstream)."""
    np = {
        "spec": {
            "podSelector": {"matchLabels": {"a": "b"}},
            "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 80}]}],
            "policyTypes": ["Ingress"],
        }
    }
    patch = {"spec": {"ingress": [{"ports": [{"port": 81}]}], "policyTypes": ["Egress"]}}
    out = apply_patch(np, _b(patch), SMP, kind="NetworkPolicy")
    assert out["spec"]["ingress"] == [{"ports": [{"port": 81}]}]
    assert out["spec"]["policyTypes"] == ["Egress"]
    assert out["spec"]["podSelector"] == {"matchLabels": {"a": "b"}}


def test_smp_kubectl_apply_shape() -> None:
    """A patch shaped like kubectl apply's (last-applied annotation + setElementOrder)."""
    patch = {
        "metadata": {
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "labels": {"tier": None},
        },
        "spec": {
            "$setElementOrder/containers": [{"name": "c1"}, {"name": "c2"}],
            "containers": [
                {
                    "$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 81}],
                    "name": "c1",
                    "ports": [{"containerPort": 80, "protocol": "UDP", "$patch": "delete"}],
                }
            ],
        },
    }
    out = apply_patch(POD, _b(patch), SMP, kind="Pod")
    c1 = out["spec"]["containers"][0]
    assert c1["ports"] == [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 81}]
    assert out["metadata"]["labels"] == {"app": "a"}


def test_smp_custom_resource_refused() -> None:
    """Strategic merge on a custom resource is a 415, as upstream."""
    with pytest.raises(PatchError) as info:
        apply_patch({}, b"{}", SMP, kind="Widget")
    assert info.value.code == 415


def test_unknown_content_type() -> None:
    """Other media types are a 415."""
    with pytest.raises(PatchError) as info:
        apply_patch({}, b"{}", "application/json", kind="Pod")
    assert info.value.code == 415


def test_malformed_bodies() -> None:
    """Bodies that are not JSON, or of the wrong shape, are 400."""
    for ctype in (SMP, MERGE, JSONP):
        with pytest.raises(PatchError) as info:
            apply_patch({}, b"{nope", ctype, kind="Pod")
        assert info.value.code == 400
    with pytest.raises(PatchError) as info:
        apply_patch({}, b"[]", MERGE, kind="Pod")
    assert info.value.code == 400
    with pytest.raises(PatchError) as info:
        apply_patch({}, b"{}", JSONP, kind="Pod")
    assert info.value.code == 400


def test_merge_patch_rfc7386_examples() -> None:
    """The RFC 7386 appendix examples."""
    cases: list[tuple[dict[str, Any], Any, Any]] = [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ]
    for target, patch, expected in cases:
        assert apply_patch(target, _b(patch), MERGE, kind="Widget") == expected


def test_json_patch_ops() -> None:
    """add/remove/replace/move/copy/test, escaping and '-' append."""
    doc = {"metadata": {"labels": {"a/b": "1"}}, "list": [1, 2]}
    ops = [
        {"op": "test", "path": "/metadata/labels/a~1b", "value": "1"},
        {"op": "add", "path": "/list/-", "value": 3},
        {"op": "add", "path": "/list/0", "value": 0},
        {"op": "replace", "path": "/metadata/labels/a~1b", "value": "2"},
        {"op": "copy", "from": "/list/3", "path": "/copied"},
        {"op": "move", "from": "/copied", "path": "/moved"},
        {"op": "remove", "path": "/list/1"},
    ]
    out = apply_patch(doc, _b(ops), JSONP, kind="Pod")
    assert out == {"metadata": {"labels": {"a/b": "2"}}, "list": [0, 2, 3], "moved": 3}
    assert doc == {"metadata": {"labels": {"a/b": "1"}}, "list": [1, 2]}


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/a", "value": 2}],
        [{"op": "test", "path": "/a", "value": True}],
        [{"op": "remove", "path": "/missing"}],
        [{"op": "replace", "path": "/missing", "value": 1}],
        [{"op": "add", "path": "/x/y", "value": 1}],
        [{"op": "add", "path": "/l/5", "value": 1}],
    ],
)
def test_json_patch_failures_are_422(ops: list[dict[str, Any]]) -> None:
    """A JSON patch that does not apply is a 422 and changes nothing."""
    doc = {"a": 1, "l": []}
    with pytest.raises(PatchError) as info:
        apply_patch(doc, _b(ops), JSONP, kind="Pod")
    assert info.value.code == 422
    assert doc == {"a": 1, "l": []}


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from("abc"), kids, max_size=3)
    ),
    max_leaves=10,
)
_obj = st.dictionaries(st.sampled_from("abc"), _json, max_size=3)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(target=_obj, patch=_obj)
def test_merge_patch_properties(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Merge patch is idempotent and never leaves a patched null behind."""
    once = merge_patch(target, patch)
    assert merge_patch(once, patch) == once
    for key, value in patch.items():
        if value is None:
            assert key not in once


_any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet="ab$/-0", max_size=4),
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "a",
                    "spec",
                    "containers",
                    "name",
                    "ports",
                    "containerPort",
                    "$patch",
                    "$retainKeys",
                    "$setElementOrder/containers",
                    "$deleteFromPrimitiveList/finalizers",
                    "metadata",
                    "finalizers",
                    "op",
                    "path",
                    "value",
                    "from",
                ]
            ),
            kids,
            max_size=4,
        )
    ),
    max_leaves=15,
)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=300)
@given(body=_any_json, ctype=st.sampled_from([SMP, MERGE, JSONP]))
def test_patch_never_crashes(body: Any, ctype: str) -> None:
    """Any JSON body yields a dict or a PatchError (never a server error), input untouched."""
    before = copy.deepcopy(POD)
    try:
        out = apply_patch(POD, _b(body), ctype, kind="Pod")
    except PatchError as exc:
        assert exc.code in (400, 415, 422)
    else:
        assert isinstance(out, dict)
    assert before == POD


# -- indexed list merge: same results as the straightforward quadratic merge ------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from antrea.testbed.apiserver import patch as patch_module  # noqa: E402

_KEYS = ("containerPort", "protocol")


def _naive_key(item: Any) -> Any:
    if not isinstance(item, dict) or _KEYS[0] not in item:
        return None
    return tuple(item.get(k, "TCP" if k == "protocol" else None) for k in _KEYS)


def _naive_find(items: list[Any], item: Any) -> int:
    want = _naive_key(item)
    if want is None:
        return -1
    for i, cand in enumerate(items):
        if _naive_key(cand) == want:
            return i
    if "protocol" not in item:
        for i, cand in enumerate(items):
            if isinstance(cand, dict) and cand.get(_KEYS[0]) == item[_KEYS[0]]:
                return i
    return -1


def _naive_merge(original: list[Any], patch: list[Any]) -> list[Any]:
    out = list(original)
    for p in patch:
        if p.get("$patch") == "delete":
            out = [o for o in out if _naive_find([o], p) < 0]
            continue
        idx = _naive_find(out, p)
        if idx >= 0:
            out[idx] = {**out[idx], **p}
        else:
            out.append(dict(p))
    return out


_port = st.fixed_dictionaries(
    {"containerPort": st.integers(1, 4)},
    optional={"protocol": st.sampled_from(["TCP", "UDP"]), "name": st.sampled_from(["a", "b"])},
)
_patch_item = _port | _port.map(lambda p: {**p, "$patch": "delete"})


@settings(max_examples=300, deadline=None)
@given(st.lists(_port, max_size=8), st.lists(_patch_item, max_size=8))
def test_indexed_keyed_merge_matches_the_quadratic_one(
    original: list[dict[str, Any]], patch: list[dict[str, Any]]
) -> None:
    meta = patch_module._merge_list(_KEYS)
    got = patch_module._merge_list_value([dict(o) for o in original], patch, meta)
    assert got == _naive_merge(original, patch)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c", 1, True, 1.0]), max_size=8),
    st.lists(st.sampled_from(["a", "b", "d", 1, True, 2]), max_size=8),
)
def test_indexed_primitive_merge_is_a_json_set_union(original: list[Any], patch: list[Any]) -> None:
    got = patch_module._merge_list_value(list(original), patch, patch_module._PRIMITIVE_SET)
    assert got[: len(original)] == original
    added = got[len(original) :]
    for p in patch:
        assert any(patch_module._json_equal(p, g) for g in got)
    assert len({patch_module._hkey(a) for a in added}) == len(added)
