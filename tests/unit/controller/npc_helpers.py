"""Builders of decoded Kubernetes objects and checks shared by the compiler tests."""

from __future__ import annotations

from typing import Any

from antrea.apis.controlplane.types import AddressGroup, AppliedToGroup, Kind
from antrea.controller.networkpolicy import Change, NetworkPolicyController

Obj = dict[str, Any]


def namespace(name: str, **labels: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pod(
    ns: str,
    name: str,
    labels: dict[str, str] | None = None,
    *,
    node: str | None = "n1",
    ip: str | None = "10.0.0.1",
    phase: str = "Running",
    host_network: bool = False,
    ports: list[dict[str, Any]] | None = None,
) -> Obj:
    spec: Obj = {"containers": [{"name": "c", "image": "pause"}]}
    if ports:
        spec["containers"][0]["ports"] = ports
    if node:
        spec["nodeName"] = node
    if host_network:
        spec["hostNetwork"] = True
    status: Obj = {"phase": phase}
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "labels": labels or {}},
        "spec": spec,
        "status": status,
    }


def policy(ns: str, name: str, spec: Obj, *, uid: str | None = None, generation: int = 1) -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "namespace": ns,
            "name": name,
            "uid": uid or f"uid-{ns}-{name}",
            "generation": generation,
        },
        "spec": spec,
    }


def snapshot(controller: NetworkPolicyController) -> dict[Kind, dict[str, Any]]:
    return {
        kind: {name: controller.store.get(kind, name) for name in controller.store.names(kind)}
        for kind in Kind
    }


class Mirror:
    """Applies the change stream to a dict, checking each change against what came before.

    A consumer (the distribution server) only sees changes; this proves they are enough to keep
    an exact copy, that ``old``/``old_span`` describe what was there, and that patches are exact.
    """

    def __init__(self, controller: NetworkPolicyController) -> None:
        self.objects: dict[Kind, dict[str, Any]] = {kind: {} for kind in Kind}
        self.count = 0
        controller.subscribe(self.apply)

    def apply(self, change: Change) -> None:
        self.count += 1
        current = self.objects[change.kind].get(change.name)
        if change.old is None:
            assert current is None, f"ADDED over an existing object: {change}"
            assert not change.old_span
        else:
            assert current == (change.old, change.old_span), f"stale old in {change}"
        if change.patch is not None:
            assert change.old is not None and change.new is not None
            assert isinstance(change.old, AddressGroup | AppliedToGroup)
            assert isinstance(change.new, AddressGroup | AppliedToGroup)
            assert change.patch.added == change.new.members - change.old.members
            assert change.patch.removed == change.old.members - change.new.members
            assert change.patch.added or change.patch.removed
        elif isinstance(change.old, AddressGroup | AppliedToGroup) and isinstance(
            change.new, AddressGroup | AppliedToGroup
        ):
            assert change.old.members == change.new.members
        if change.new is None:
            assert not change.new_span
            del self.objects[change.kind][change.name]
        else:
            assert (change.old, change.old_span) != (change.new, change.new_span), "no-op change"
            self.objects[change.kind][change.name] = (change.new, change.new_span)


def feed_world(
    controller: NetworkPolicyController,
    namespaces: dict[str, dict[str, str]],
    pods: list[Obj],
    policies: list[Obj],
) -> None:
    with controller.batch():
        for name, labels in namespaces.items():
            controller.add_namespace(namespace(name, **labels))
        for p in pods:
            controller.add_pod(p)
        for np in policies:
            controller.add_network_policy(np)
