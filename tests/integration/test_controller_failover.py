"""Two controller candidates, two node clients, the embedded API server, all in one process.

Checks the acceptance path without a lab: every node receives exactly the objects whose span
includes it (AppliedToGroups with only its own members), antctl sees the policy realized on
both nodes, and after the leader dies (no lease release: a crash) the standby takes over, the
clients reconnect by themselves and converge, including on changes made after the failover.
No root needed (loopback only).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from antrea.agent.controlplane_client import ControlPlaneClient, StreamMirror
from antrea.apis.controlplane.types import AppliedToGroup, Kind
from antrea.controller.config import ControllerConfig
from antrea.controller.controller import ControllerCandidate
from antrea.controller.distribution import iter_store, members_on
from antrea.k8s.resources import ApiClientResources, load_api_client
from antrea.testbed.apiserver.server import APIServer
from antrea.testbed.lab import identities

NODES = ("node1", "node2")


async def eventually(cond: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.05)


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.api = APIServer(port=0)
        self.candidates: dict[str, tuple[ControllerCandidate, asyncio.Task[None], Any]] = {}
        self.mirrors: dict[str, StreamMirror] = {}
        self.tasks: list[asyncio.Task[Any]] = []
        self.clients: list[Any] = []

    async def start(self) -> None:
        await self.api.start()
        # Agents run as the manifest's antrea-agent ServiceAccount, one bound token per node.
        self.api.ensure_objects(identities.manifest_identity_objects())
        self.api.ensure_objects(identities.manifest_crd_objects())
        for n in NODES:
            self.api.add_token(
                f"tok-{n}",
                user=identities.serviceaccount_user(identities.AGENT_SA),
                groups=identities.serviceaccount_groups(),
                extra={identities.NODE_NAME_EXTRA: [n]},
            )
            self.api.write_kubeconfig(self.tmp / f"{n}.kubeconfig", token=f"tok-{n}", user=n)
        self.api.write_kubeconfig(self.tmp / "admin.kubeconfig")
        self.admin = await self.client("admin")
        self.kube = ApiClientResources(self.admin)

    async def client(self, who: str) -> Any:
        c = await load_api_client(str(self.tmp / f"{who}.kubeconfig"))
        self.clients.append(c)
        return c

    async def create(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.kube.create(collection, body)

    async def add_node(self, name: str) -> None:
        await self.create(
            "/api/v1/nodes",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name},
                "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]},
            },
        )

    async def add_pod(self, ns: str, name: str, app: str, node: str, ip: str) -> None:
        pod = await self.create(
            f"/api/v1/namespaces/{ns}/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
            },
        )
        pod["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
        await self.kube.replace(f"/api/v1/namespaces/{ns}/pods/{name}/status", pod)

    async def start_candidate(self, node: str) -> None:
        cfg = ControllerConfig(
            node_name=node,
            controller_api_port=0,
            bind_address="127.0.0.1",
            advertise_address="127.0.0.1",
            lease_duration=3.0,
            renew_deadline=2.0,
            retry_period=0.5,
        )
        api_client = await self.client("admin")
        cand = ControllerCandidate(cfg, ApiClientResources(api_client), api_client)
        task = asyncio.get_running_loop().create_task(cand.run())
        self.candidates[node] = (cand, task, api_client)

    async def crash(self, node: str) -> None:
        """Kill a candidate without releasing its Lease (what SIGKILL does)."""
        cand, task, _ = self.candidates.pop(node)

        async def no_release() -> None:
            return None

        cand.elector._release = no_release  # type: ignore[method-assign]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def start_agent(self, node: str) -> None:
        api_client = await self.client(node)
        client = ControlPlaneClient(
            node, api_client, backoff_initial=0.1, backoff_max=0.5, idle_timeout=3.0
        )
        self.clients.append(client)
        mirror = StreamMirror(client)
        self.mirrors[node] = mirror
        self.tasks.append(asyncio.get_running_loop().create_task(mirror.run()))

    def leader(self) -> ControllerCandidate | None:
        leaders = [c for c, _, _ in self.candidates.values() if c.leading]
        assert len(leaders) <= 1
        return leaders[0] if leaders and leaders[0].serving() is None else None

    def expected(self, cand: ControllerCandidate, node: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for kind in Kind:
            for obj, span in iter_store(cand.store, kind):
                if node in span:
                    view = members_on(obj, node) if isinstance(obj, AppliedToGroup) else obj
                    out.setdefault(str(kind), {})[obj.name] = view
        return out

    def converged(self) -> bool:
        leader = self.leader()
        if leader is None:
            return False
        return all(
            m.bookmarks > 0
            and {k: v for k, v in m.objects.items() if v} == self.expected(leader, n)
            for n, m in self.mirrors.items()
        )

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for node in list(self.candidates):
            _, task, _ = self.candidates.pop(node)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for c in self.clients:
            with contextlib.suppress(Exception):
                await c.close()
        await self.api.stop()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        await c.start()
        yield c
    finally:
        await c.stop()


def antctl(*argv: str) -> tuple[int, str]:
    import io
    from contextlib import redirect_stdout

    from antrea.antctl.cli import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(list(argv))
    return rc, buf.getvalue()


async def test_span_distribution_and_failover(cluster: Cluster) -> None:
    for n in NODES:
        await cluster.add_node(n)
    await cluster.create(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "labels": {"ns": "x"}}},
    )
    await cluster.add_pod("x", "web1", "web", "node1", "10.244.1.2")
    await cluster.add_pod("x", "web2", "web", "node2", "10.244.2.2")
    await cluster.add_pod("x", "db1", "db", "node1", "10.244.1.3")
    await cluster.add_pod("x", "cli2", "cli", "node2", "10.244.2.3")
    # web: on both nodes, ingress from cli; db: only node1, ingress from web
    for name, target, peer in (("web", "web", "cli"), ("db", "db", "web")):
        await cluster.create(
            "/apis/networking.k8s.io/v1/namespaces/x/networkpolicies",
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": name, "namespace": "x"},
                "spec": {
                    "podSelector": {"matchLabels": {"app": target}},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": peer}}}]}],
                },
            },
        )
    for n in NODES:
        await cluster.start_candidate(n)
    for n in NODES:
        await cluster.start_agent(n)

    await eventually(cluster.converged, what="initial convergence")
    leader = cluster.leader()
    assert leader is not None
    m1, m2 = cluster.mirrors["node1"].objects, cluster.mirrors["node2"].objects
    assert len(m1["NetworkPolicy"]) == 2 and len(m2["NetworkPolicy"]) == 1  # db only on node1
    for node, mirror in (("node1", m1), ("node2", m2)):
        for atg in mirror["AppliedToGroup"].values():
            assert atg.members and all(m.node == node for m in atg.members)

    # antctl (admin kubeconfig, leader found through Endpoints): realized on both nodes
    admin_kc = str(cluster.tmp / "admin.kubeconfig")

    def web_realized() -> bool:
        return any(
            "K8sNetworkPolicy:x/web" in line and "2/2" in line
            for line in antctl("get", "netpol", "--kubeconfig", admin_kc)[1].splitlines()
        )

    for _ in range(100):
        if await asyncio.to_thread(web_realized):
            break
        await asyncio.sleep(0.1)
    assert await asyncio.to_thread(web_realized)
    rc, out = await asyncio.to_thread(antctl, "get", "ci", "--kubeconfig", admin_kc)
    assert rc == 0 and leader.cfg.node_name in out.splitlines()[1]

    # kill the leader: the standby takes over, clients follow Endpoints and converge
    old = leader.cfg.node_name
    await cluster.crash(old)
    await eventually(lambda: cluster.leader() is not None, what="takeover")
    new = cluster.leader()
    assert new is not None and new.cfg.node_name != old
    await eventually(
        lambda: all(m.bookmarks >= 2 for m in cluster.mirrors.values()) and cluster.converged(),
        what="reconnect and convergence after failover",
    )
    assert all(c.connections >= 2 for c in cluster.clients if isinstance(c, ControlPlaneClient))

    # changes after the failover reach the right node only
    await cluster.add_pod("x", "db2", "db", "node2", "10.244.2.4")
    await eventually(
        lambda: len(cluster.mirrors["node2"].objects.get("NetworkPolicy", {})) == 2,
        what="db policy reaching node2",
    )
    await eventually(cluster.converged, what="convergence on a new pod")
