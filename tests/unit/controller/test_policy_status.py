"""The leader's `.status` of Antrea-native policies from the agents' realization reports."""

from __future__ import annotations

import asyncio
from typing import Any

from antrea.apis.controlplane.types import (
    Kind,
    NetworkPolicy,
    NetworkPolicyNodeStatus,
    NetworkPolicyReference,
)
from antrea.controller.policystatus import PolicyStatusWriter
from antrea.controller.status import StatusAggregator
from antrea.k8s.resources import Conflict

JSON = dict[str, Any]
ACNP_PATH = "/apis/crd.antrea.io/v1beta1/clusternetworkpolicies/p"
ANNP_PATH = "/apis/crd.antrea.io/v1beta1/namespaces/ns/networkpolicies/q"


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[str, JSON] = {}
        self.writes: list[tuple[str, JSON]] = []
        self.conflicts = 0

    async def get(self, path: str) -> JSON | None:
        return self.objects.get(path)

    async def create(self, collection: str, body: JSON) -> JSON:
        raise NotImplementedError

    async def replace(self, path: str, body: JSON) -> JSON:
        if self.conflicts:
            self.conflicts -= 1
            raise Conflict(409, "conflict")
        assert path.endswith("/status")
        self.writes.append((path, body["status"]))
        self.objects[path.removesuffix("/status")] = body
        return body


class FakeStore:
    def __init__(self) -> None:
        self.entries: dict[str, tuple[Any, frozenset[str]]] = {}

    def get(self, kind: Kind, name: str) -> tuple[Any, frozenset[str]] | None:
        return self.entries.get(name)

    def names(self, kind: Kind) -> list[str]:
        return list(self.entries)


def policy(uid: str, typ: str, ns: str, name: str, generation: int) -> NetworkPolicy:
    return NetworkPolicy(
        name=uid,
        source_ref=NetworkPolicyReference(typ, ns, name, uid),
        rules=(),
        applied_to_groups=(),
        generation=generation,
        tier_priority=250,
        priority=1.0,
    )


def report(uid: str, node: str, generation: int, realized: bool = True) -> NetworkPolicyNodeStatus:
    return NetworkPolicyNodeStatus(
        policy=uid,
        node=node,
        generation=generation,
        realized=realized,
        message="" if realized else "boom",
    )


async def settle(writer: PolicyStatusWriter, kube: FakeKube, count: int) -> None:
    async with asyncio.timeout(10):
        while len(kube.writes) < count:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)


async def test_status_follows_reports_generation_and_failures() -> None:
    kube, store, agg = FakeKube(), FakeStore(), StatusAggregator()
    kube.objects[ACNP_PATH] = {"metadata": {"name": "p", "uid": "u1", "generation": 1}}
    kube.objects[ANNP_PATH] = {"metadata": {"name": "q", "uid": "u2", "generation": 3}}
    store.entries["u1"] = (
        policy("u1", "AntreaClusterNetworkPolicy", "", "p", 1),
        frozenset({"n1", "n2"}),
    )
    store.entries["u2"] = (policy("u2", "AntreaNetworkPolicy", "ns", "q", 2), frozenset({"n1"}))
    writer = PolicyStatusWriter(kube, store, agg, interval=0.01)
    agg.on_report = writer.mark
    task = asyncio.get_running_loop().create_task(writer.run())
    try:
        await settle(writer, kube, 2)
        got = dict(kube.writes)
        assert got[ACNP_PATH + "/status"] == {
            "phase": "Realizing", "observedGeneration": 1,
            "currentNodesRealized": 0, "desiredNodesRealized": 2,
        }  # fmt: skip
        # The ANNP's object is at generation 3, the compiled policy at 2: not compiled yet.
        assert got[ANNP_PATH + "/status"]["phase"] == "Pending"
        agg.report(report("u1", "n1", 1))
        await settle(writer, kube, 3)
        assert kube.writes[-1][1]["currentNodesRealized"] == 1
        agg.report(report("u1", "n2", 1))
        await settle(writer, kube, 4)
        assert kube.writes[-1][1] == {
            "phase": "Realized", "observedGeneration": 1,
            "currentNodesRealized": 2, "desiredNodesRealized": 2,
        }  # fmt: skip
        # A repeated report changes nothing: no write.
        agg.report(report("u1", "n2", 1))
        await asyncio.sleep(0.1)
        assert len(kube.writes) == 4
        # A failure on a node of the span; a write conflict is retried.
        kube.conflicts = 1
        agg.report(report("u1", "n1", 1, realized=False))
        await settle(writer, kube, 5)
        assert kube.writes[-1][1]["phase"] == "Failed"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_k8s_policies_and_recreated_objects_are_left_alone() -> None:
    kube, store, agg = FakeKube(), FakeStore(), StatusAggregator()
    kube.objects[ACNP_PATH] = {"metadata": {"name": "p", "uid": "other", "generation": 1}}
    store.entries["u1"] = (policy("u1", "AntreaClusterNetworkPolicy", "", "p", 1), frozenset())
    store.entries["k"] = (policy("k", "K8sNetworkPolicy", "ns", "k", 1), frozenset())
    writer = PolicyStatusWriter(kube, store, agg, interval=0.01)
    task = asyncio.get_running_loop().create_task(writer.run())
    try:
        await asyncio.sleep(0.2)
        assert kube.writes == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_in_progress_reports_are_realizing_not_failed() -> None:
    agg = StatusAggregator()
    agg.report(report("u", "n1", 1, realized=False))  # message "boom": a failure
    agg.report(NetworkPolicyNodeStatus("u", "n2", 1, realized=False, message="waiting for groups"))
    st = agg.status("u", 1, frozenset({"n1", "n2"}))
    assert st.failed == ("n1",) and st.phase == "Failed"
    st = agg.status("u", 1, frozenset({"n2"}))
    assert (st.current, st.desired, st.phase) == (0, 1, "Realizing")
