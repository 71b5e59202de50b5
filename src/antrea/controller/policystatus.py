"""``.status`` of Antrea-native policies, written by the leading controller.

Every ClusterNetworkPolicy / Antrea NetworkPolicy gets, as upstream:

    status: {phase, observedGeneration, currentNodesRealized, desiredNodesRealized}

computed from the agents' realization reports (`StatusAggregator`) for the compiled policy's
current generation and span:

- ``Pending``: the controller has not compiled this generation yet;
- ``Realizing``: fewer nodes than the span have reported it realized;
- ``Realized``: every node of the span has (also when the span is empty: nothing to do);
- ``Failed``: a node of the span reported a failure for this generation.

Policies whose status may have changed are marked (a report, a policy change); the writer
flushes the marked ones in batches, writing ``/status`` only when it differs from what the
object holds (a 409 or any error leaves the policy marked for the next round). Only the leader
writes; a new leader starts with every Antrea-native policy marked.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

import structlog

from antrea.apis.controlplane.types import Kind, NetworkPolicy
from antrea.controller.status import StatusAggregator
from antrea.k8s.resources import KubeError, KubeResources

log = structlog.get_logger(__name__)

JSON = dict[str, Any]
CRD_GV = "/apis/crd.antrea.io/v1beta1"
RESOURCES = {
    "AntreaClusterNetworkPolicy": "clusternetworkpolicies",
    "AntreaNetworkPolicy": "networkpolicies",
}


class PolicyStore(Protocol):
    def get(self, kind: Kind, name: str) -> tuple[Any, frozenset[str]] | None: ...

    def names(self, kind: Kind) -> Any: ...


def status_path(policy: NetworkPolicy) -> str | None:
    ref = policy.source_ref
    resource = RESOURCES.get(ref.type)
    if resource is None:
        return None
    if resource == "networkpolicies":
        return f"{CRD_GV}/namespaces/{ref.namespace}/{resource}/{ref.name}/status"
    return f"{CRD_GV}/{resource}/{ref.name}/status"


def desired_status(
    policy: NetworkPolicy, span: frozenset[str], aggregator: StatusAggregator, generation: int
) -> JSON:
    """The status for the source object at ``generation`` (its metadata.generation)."""
    if policy.generation < generation:
        return {
            "phase": "Pending",
            "observedGeneration": generation,
            "currentNodesRealized": 0,
            "desiredNodesRealized": 0,
        }
    st = aggregator.status(policy.name, policy.generation, span)
    return {
        "phase": st.phase,
        "observedGeneration": policy.generation,
        "currentNodesRealized": st.current,
        "desiredNodesRealized": st.desired,
    }


class PolicyStatusWriter:
    def __init__(
        self,
        kube: KubeResources,
        store: PolicyStore,
        aggregator: StatusAggregator,
        *,
        interval: float = 0.5,
    ) -> None:
        self.kube = kube
        self.store = store
        self.aggregator = aggregator
        self.interval = interval
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self.writes = 0

    def mark(self, name: str) -> None:
        self._dirty.add(name)
        self._wake.set()

    def mark_all(self) -> None:
        for name in self.store.names(Kind.NETWORK_POLICY):
            self._dirty.add(name)
        self._wake.set()

    async def run(self) -> None:
        """Leader duty: flush marked policies until cancelled."""
        self.mark_all()
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.interval)  # batch reports arriving together
            batch, self._dirty = self._dirty, set()
            retry: set[str] = set()
            for name in batch:
                try:
                    await self._flush(name)
                except KubeError as exc:
                    log.info("policy_status_write_failed", policy=name, error=str(exc))
                    retry.add(name)
                except Exception:  # never lose the writer to one bad object
                    log.exception("policy_status_write_error", policy=name)
                    retry.add(name)
            if retry:
                self._dirty |= retry
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await asyncio.Event().wait()
                self._wake.set()

    async def _flush(self, name: str) -> None:
        got = self.store.get(Kind.NETWORK_POLICY, name)
        if got is None:
            return
        policy, span = got
        if not isinstance(policy, NetworkPolicy):
            return
        path = status_path(policy)
        if path is None:
            return
        obj = await self.kube.get(path.removesuffix("/status"))
        if obj is None:
            return
        meta = obj.get("metadata") or {}
        if meta.get("uid") and meta.get("uid") != policy.source_ref.uid:
            return  # a re-created object of the same name: its own policy will come
        generation = int(meta.get("generation") or 0)
        want = desired_status(policy, span, self.aggregator, generation)
        if obj.get("status") == want:
            return
        await self.kube.replace(path, {**obj, "status": want})
        self.writes += 1
