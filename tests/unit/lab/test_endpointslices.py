"""The lab's EndpointSlice controller: Services + pods -> discovery.k8s.io/v1 slices."""

from __future__ import annotations

from typing import Any

from antrea.testbed.lab.endpointslices import desired_slices

JSON = dict[str, Any]


def pod(name: str, ip: str | None, *, ready: bool = True, port: int = 8080, **extra: Any) -> JSON:
    return {
        "metadata": {"name": name, "namespace": "x", "uid": f"u-{name}", "labels": {"app": "web"}}
        | extra,
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": port}]}],
        },
        "status": {
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def service(target: int | str = "http", selector: JSON | None = None) -> JSON:
    return {
        "metadata": {"name": "web", "namespace": "x", "uid": "s"},
        "spec": {
            "selector": {"app": "web"} if selector is None else selector,
            "ports": [{"name": "h", "port": 80, "protocol": "TCP", "targetPort": target}],
        },
    }


def test_named_port_resolves_per_pod_into_one_slice_per_port_set() -> None:
    pods = [pod("a", "10.0.0.2"), pod("b", "10.0.0.3", port=9090), pod("c", "10.0.0.4")]
    slices = desired_slices(service(), pods)
    assert len(slices) == 2
    by_port = {s["ports"][0]["port"]: s for s in slices.values()}
    assert sorted(by_port) == [8080, 9090]
    assert [e["addresses"] for e in by_port[8080]["endpoints"]] == [["10.0.0.2"], ["10.0.0.4"]]
    assert by_port[9090]["endpoints"][0]["targetRef"]["name"] == "b"
    for s in slices.values():
        assert s["metadata"]["labels"]["kubernetes.io/service-name"] == "web"
        assert s["metadata"]["name"].startswith("web-")


def test_conditions_and_skipped_pods() -> None:
    pods = [
        pod("ready", "10.0.0.2"),
        pod("notready", "10.0.0.3", ready=False),
        pod("noip", None),
        pod("going", "10.0.0.5", deletionTimestamp="2026-01-01T00:00:00Z"),
    ]
    (s,) = desired_slices(service(8080), pods).values()
    conds = {e["targetRef"]["name"]: e["conditions"] for e in s["endpoints"]}
    assert conds == {
        "ready": {"ready": True, "serving": True, "terminating": False},
        "notready": {"ready": False, "serving": False, "terminating": False},
        "going": {"ready": False, "serving": True, "terminating": True},
    }
    assert s["ports"] == [{"name": "h", "port": 8080, "protocol": "TCP"}]


def test_no_selector_no_slices_and_no_pods_an_empty_slice() -> None:
    assert desired_slices(service(selector={}), [pod("a", "10.0.0.2")]) == {}
    (s,) = desired_slices(service(), []).values()
    assert s["endpoints"] == [] and s["ports"] == []
